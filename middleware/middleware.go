package middleware

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/textproto"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/corsauthz/corsauthz/internal/tracing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/corsauthz/corsauthz/decision"
	"github.com/corsauthz/corsauthz/internal/limits"
	"github.com/corsauthz/corsauthz/policy"
	corsauthzv1 "github.com/corsauthz/corsauthz/proto/gen/corsauthz/v1"
	"github.com/corsauthz/corsauthz/xdsconfig"
)

// Mode is how the middleware decides.
type Mode string

const (
	// ModeLocal decides in process with the configuration received over xDS.
	ModeLocal Mode = "local"
	// ModeRemote asks Decide over gRPC for each request.
	ModeRemote Mode = "remote"
)

// Defaults for [Options].
const (
	DefaultTimeout     = 250 * time.Millisecond
	DefaultStartupWait = 10 * time.Second
)

// Options configure a Middleware.
type Options struct {
	// Address is corsauthz's gRPC address, such as "127.0.0.1:9001".
	// Required unless Conn is set.
	Address string
	// Conn, when set, is used instead of dialling Address (for TLS or a
	// connection shared with other clients); Close leaves it open.
	Conn grpc.ClientConnInterface
	// DialOptions are added to New's own when dialling Address
	// (plaintext, and reconnection backoff from 100 ms to 5 s); later
	// options win.
	DialOptions []grpc.DialOption
	// Mode is ModeLocal (the default) or ModeRemote.
	Mode Mode
	// Policy, when set, names the policy every request is decided with,
	// as Envoy's cors_policy context extension does; otherwise the
	// configuration selects one by host and path.
	Policy string
	// Timeout bounds each Decide in remote mode (default DefaultTimeout);
	// past it the request is answered 503.
	Timeout time.Duration
	// StartupWait bounds how long New waits, in local mode, for the first
	// configuration (default DefaultStartupWait; negative: do not wait).
	// Past it New returns a middleware that answers 503 until one arrives.
	StartupWait time.Duration
	// NodeID names this gateway in corsauthz's logs (local mode).
	NodeID string
	// Logger gets the middleware's logs (nil: none).
	Logger *slog.Logger
	// Registerer gets the xDS subscription's metrics (nil: none).
	Registerer prometheus.Registerer
	// TracerProvider, when set, traces each request decided in local mode
	// (a span per decision and per authorizer call, joined to the
	// request's own trace); nil: no tracing.
	TracerProvider trace.TracerProvider
	// MaxConfigBytes bounds a configuration received over xDS (local
	// mode; default policy.DefaultMaxConfigBytes, the default of
	// corsauthz's --max-config-bytes): set it to corsauthz's
	// --max-config-bytes when that is larger. A larger configuration is
	// refused (NACKed) and the one in force stays; see
	// xdsconfig.SubscribeOptions.
	MaxConfigBytes int64
}

// Middleware decides CORS for the handlers it wraps. It is safe for
// concurrent use; one Middleware may wrap many handlers.
type Middleware struct {
	mode    Mode
	policy  string
	timeout time.Duration
	logger  *slog.Logger

	conn      grpc.ClientConnInterface
	ownConn   *grpc.ClientConn                  // dialled by New, closed by Close
	decisions corsauthzv1.DecisionServiceClient // remote mode
	checks    authv3.AuthorizationClient        // remote mode, for policies with an authorizer
	sub       *xdsconfig.Subscription           // local mode
	core      *decision.Core                    // local mode

	lastFailureLog  atomic.Int64 // UnixNano; failures are logged at most once a second
	lastNoPolicyLog atomic.Int64 // UnixNano; see warnNoPolicy
	failures        atomic.Int64 // since the last failure log line
}

// ErrNoAddress is returned by New without an Address or a Conn.
var ErrNoAddress = errors.New("middleware: no corsauthz address: set Options.Address (such as 127.0.0.1:9001) or Options.Conn")

// New connects to corsauthz and returns a Middleware. In local mode it
// waits for the first configuration for up to StartupWait (or until ctx is
// done, which is an error). The connection is made lazily and kept up by
// gRPC; New does not fail because corsauthz is not there yet.
func New(ctx context.Context, opts Options) (*Middleware, error) {
	m := &Middleware{
		mode:    opts.Mode,
		policy:  opts.Policy,
		timeout: opts.Timeout,
		logger:  opts.Logger,
		conn:    opts.Conn,
	}
	if m.mode == "" {
		m.mode = ModeLocal
	}
	if m.mode != ModeLocal && m.mode != ModeRemote {
		return nil, fmt.Errorf("middleware: mode %q: write %q or %q", opts.Mode, ModeLocal, ModeRemote)
	}
	if m.timeout <= 0 {
		m.timeout = DefaultTimeout
	}
	if m.logger == nil {
		// Not silent: a gateway's operator must hear of a corsauthz it
		// cannot reach.
		m.logger = slog.Default()
	}
	if m.conn == nil {
		if opts.Address == "" {
			return nil, ErrNoAddress
		}
		dial := []grpc.DialOption{
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			// gRPC's default waits up to 2 minutes between attempts; a
			// gateway wants corsauthz back within seconds.
			grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{
				BaseDelay: xdsconfig.DefaultMinBackoff, Multiplier: 1.6, Jitter: 0.2, MaxDelay: xdsconfig.DefaultMaxBackoff,
			}}),
		}
		cc, err := grpc.NewClient(opts.Address, append(dial, opts.DialOptions...)...)
		if err != nil {
			return nil, fmt.Errorf("middleware: corsauthz address %q: %w", opts.Address, err)
		}
		m.conn, m.ownConn = cc, cc
	}
	if m.mode == ModeRemote {
		m.decisions = corsauthzv1.NewDecisionServiceClient(m.conn)
		m.checks = authv3.NewAuthorizationClient(m.conn)
		return m, nil
	}

	// The core follows the subscription: each configuration's authorizer
	// clients are built before it is put in force (a configuration whose
	// clients cannot be built is NACKed and the last good one stays).
	engines := subscriptionEngines{}
	var tracer trace.Tracer
	if opts.TracerProvider != nil {
		tracer = opts.TracerProvider.Tracer(tracing.ScopeName)
	}
	m.core = decision.New(&engines, decision.Options{Logger: m.logger, Tracer: tracer})
	m.sub = xdsconfig.Subscribe(context.Background(), m.conn, xdsconfig.SubscribeOptions{
		NodeID: opts.NodeID, Address: opts.Address, Registerer: opts.Registerer, Logger: m.logger,
		Prepare: m.core.Sync, MaxConfigBytes: opts.MaxConfigBytes,
	})
	engines.sub = m.sub
	wait := opts.StartupWait
	if wait == 0 {
		wait = DefaultStartupWait
	}
	if wait > 0 {
		timer := time.NewTimer(wait)
		defer timer.Stop()
		select {
		case <-m.sub.Ready():
		case <-timer.C:
			m.logger.Warn("no configuration from corsauthz yet: answering 503 until one arrives",
				slog.String("address", opts.Address), slog.Duration("waited", wait))
		case <-ctx.Done():
			m.Close()
			return nil, fmt.Errorf("middleware: waiting for the configuration from %s: %w", opts.Address, ctx.Err())
		}
	}
	return m, nil
}

// Ready is closed once the middleware can decide: at once in remote mode,
// once a configuration is in force in local mode.
func (m *Middleware) Ready() <-chan struct{} {
	if m.sub != nil {
		return m.sub.Ready()
	}
	closed := make(chan struct{})
	close(closed)
	return closed
}

// Engine returns the configuration in force in local mode (nil before the
// first, and in remote mode).
func (m *Middleware) Engine() *policy.Engine {
	if m.sub == nil {
		return nil
	}
	return m.sub.Engine()
}

// Close ends the xDS stream and closes the connection New dialled. A
// request after Close is answered 503 in remote mode and with the last
// configuration in local mode.
func (m *Middleware) Close() error {
	if m.sub != nil {
		m.sub.Close()
	}
	if m.core != nil {
		m.core.Close()
	}
	if m.ownConn != nil {
		return m.ownConn.Close()
	}
	return nil
}

// Wrap returns next with CORS decided in front of it.
func (m *Middleware) Wrap(next http.Handler) http.Handler {
	call := func(w http.ResponseWriter, r *http.Request) error {
		next.ServeHTTP(w, r)
		return nil
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = m.Serve(w, r, call)
	})
}

// Serve decides r and either answers it (a preflight, a 403 in reject
// mode, a 503 when it cannot decide) or calls next with a ResponseWriter
// that puts the CORS headers on next's response; it returns next's error.
// It is Wrap for gateways whose handlers return errors (Caddy).
func (m *Middleware) Serve(w http.ResponseWriter, r *http.Request, next func(http.ResponseWriter, *http.Request) error) error {
	if m.mode == ModeRemote {
		return m.serveRemote(w, r, next)
	}
	return m.serveLocal(w, r, next)
}

// request reads the facts CORS depends on from r, as Envoy describes them
// in a CheckRequest: repeated headers joined with ",", the path as on the
// request line.
func (m *Middleware) request(r *http.Request) policy.Request {
	path := requestPath(r)
	origin, originPresent := r.Header[policy.HeaderOrigin]
	req := policy.Request{
		Method:        r.Method,
		Host:          r.Host,
		Path:          path,
		Policy:        m.policy,
		Origin:        joined(origin),
		OriginPresent: originPresent, // an empty Origin is still a CORS request
	}
	if r.Method == http.MethodOptions { // only a preflight reads the others
		req.RequestMethod = headerValue(r.Header, policy.HeaderRequestMethod)
		req.RequestHeaders = headerValue(r.Header, policy.HeaderRequestHeaders)
		req.RequestPrivateNetwork = headerValue(r.Header, policy.HeaderRequestPrivateNetwork)
	}
	return req
}

// requestPath is the path and query as on r's request line.
func requestPath(r *http.Request) string {
	if path := r.RequestURI; strings.HasPrefix(path, "/") {
		return path
	}
	return r.URL.RequestURI() // absolute-form, or a request built by hand
}

// headerValue is the header's values joined with ",", as Envoy joins
// repeated request headers.
func headerValue(h http.Header, name string) string { return joined(h[name]) }

func joined(v []string) string {
	switch len(v) {
	case 0:
		return ""
	case 1:
		return v[0]
	default:
		return strings.Join(v, ",")
	}
}

// failClosed answers a request that could not be decided: 503, empty body,
// as Envoy's status_on_error in the shipped configuration.
func (m *Middleware) failClosed(w http.ResponseWriter, r *http.Request, err error) {
	removeAccessControl(w.Header())
	w.WriteHeader(http.StatusServiceUnavailable)
	n := m.failures.Add(1)
	now := time.Now().UnixNano()
	last := m.lastFailureLog.Load()
	if now-last < int64(time.Second) || !m.lastFailureLog.CompareAndSwap(last, now) {
		return
	}
	m.failures.Add(-n)
	m.logger.LogAttrs(r.Context(), slog.LevelWarn, "corsauthz could not decide: answered 503",
		slog.String("mode", string(m.mode)), slog.String("error", err.Error()), slog.Int64("requests", n))
}

// respond writes a direct answer: status, headers and body (an
// authorizer's denial or failure; none for a CORS answer).
func respond(w http.ResponseWriter, status int, headers []policy.Header, body []byte) {
	h := w.Header()
	removeAccessControl(h) // headers an outer handler set: one answer only
	applyHeaders(h, headers)
	w.WriteHeader(status)
	if len(body) > 0 {
		_, _ = w.Write(body)
	}
}

// applyHeaders adds headers to h as Envoy applies response_headers_to_add:
// Append ones (Vary) as one more entry, the others replacing every value.
// Names are put in canonical form, as Header.Set does: a gRPC authorizer's
// are lower case, and a lower-case key beside the handler's canonical one
// would send both where Envoy's case-insensitive map replaces. The new
// values share one allocation.
func applyHeaders(h http.Header, headers []policy.Header) {
	if len(headers) == 0 {
		return
	}
	backing := make([]string, 0, len(headers))
	for _, hd := range headers {
		name := textproto.CanonicalMIMEHeaderKey(hd.Name) // no copy when already canonical
		if hd.Append {
			if old := h[name]; len(old) > 0 {
				h[name] = append(old, hd.Value)
				continue
			}
		}
		i := len(backing)
		backing = append(backing, hd.Value)
		h[name] = backing[i : i+1 : i+1] // an append to it copies
	}
}

// removeAccessControl deletes the Access-Control-* headers from h, as the
// shipped Envoy route's response_headers_to_remove does to the upstream's,
// and the trailers named so: set with http.TrailerPrefix, or declared in a
// Trailer header. One pass over h, which is walked for every request. It
// reports whether there was any Access-Control-* header.
func removeAccessControl(h http.Header) (removed bool) {
	if len(h) == 0 {
		return false
	}
	trailer := false
	for name := range h {
		switch {
		case isAccessControl(name):
			delete(h, name)
			removed = true
		case isAccessControlTrailer(name):
			delete(h, name)
		case name == "Trailer":
			trailer = true
		}
	}
	if trailer {
		removeAccessControlTrailers(h)
	}
	return removed
}

// isAccessControl reports whether name is an Access-Control-* header name,
// in any case.
func isAccessControl(name string) bool {
	return len(name) > len(accessControlPrefix) && name[0]|0x20 == 'a' &&
		strings.EqualFold(name[:len(accessControlPrefix)], accessControlPrefix)
}

// isAccessControlTrailer reports whether name sets an Access-Control-*
// trailer (http.TrailerPrefix and the trailer's name).
func isAccessControlTrailer(name string) bool {
	if len(name) <= len(http.TrailerPrefix) || name[0] != 'T' {
		return false
	}
	rest, ok := strings.CutPrefix(name, http.TrailerPrefix)
	return ok && isAccessControl(rest)
}

const accessControlPrefix = "Access-Control-"

// warnNoPolicy is, for a request no policy selected, the warning the
// writer gives when it removes the handler's own Access-Control-* headers
// (one CORS answer only: corsauthz's, here none): at most once a minute,
// naming the host and path, so that a host missing from corsauthz's
// configuration shows in the gateway's log.
func (m *Middleware) warnNoPolicy(r *http.Request) {
	now := time.Now().UnixNano()
	last := m.lastNoPolicyLog.Load()
	if now-last < int64(time.Minute) || !m.lastNoPolicyLog.CompareAndSwap(last, now) {
		return
	}
	m.logger.LogAttrs(r.Context(), slog.LevelWarn,
		"no corsauthz policy selects this request: the handler's own Access-Control-* headers were removed; add a policy (or default_policy) for this host and path to corsauthz's configuration",
		slog.String("host", limits.Cut(r.Host)), slog.String("path", limits.Cut(requestPath(r))))
}

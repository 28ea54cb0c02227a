package server

import (
	"context"
	"crypto/tls"
	"log"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/corsauthz/corsauthz/authorizer"
	"github.com/corsauthz/corsauthz/httpauthz"
	"github.com/corsauthz/corsauthz/internal/limits"
	"github.com/corsauthz/corsauthz/policy"
)

// DefaultHTTPAddr is the address of the HTTP authorization listener that
// `corsauthz serve` uses unless told otherwise. The zero Options have no
// HTTP listener.
const DefaultHTTPAddr = "127.0.0.1:9003"

// httpDecider is the HTTP front end's Decider: the ext_authz engine path
// (the same engine, decision log and its rate limits), counted with
// front_end="http", and the same authorizers as Check (authorize.go).
type httpDecider struct {
	a *Authz
	// checks is the Authz whose authorizer pool the listener shares: the
	// pool follows reloads there (syncAuthorizers).
	checks *Authz
}

var _ httpauthz.Decider = httpDecider{}

// newHTTPDecider returns a decider sharing authz's engine, logger, metrics,
// log limits and authorizers (not its fast path's shared answers, which
// the HTTP listener does not use).
func newHTTPDecider(authz *Authz) httpDecider {
	return httpDecider{a: &Authz{
		engines:  authz.engines,
		logger:   authz.logger,
		metrics:  authz.metrics,
		frontEnd: FrontEndHTTP,
		log:      authz.log,
	}, checks: authz}
}

// Decide decides r and, exactly as Check does, returns the Ask of the
// authorizer the decision's policy names (none for a preflight or a
// reject_disallowed_origins refusal), bound to the engine that decided,
// so that a reload in between never leaves a request unasked.
func (d httpDecider) Decide(ctx context.Context, r *policy.Request) (policy.Decision, httpauthz.Ask, error) {
	dec, e, _, err := d.a.decideOrFail(ctx, r, time.Now())
	if err != nil || e == nil {
		return dec, nil, err
	}
	name := e.AuthorizerFor(&dec)
	if name == "" {
		return dec, nil, nil
	}
	return dec, func(ctx context.Context, dec *policy.Decision, r *authorizer.Request) authorizer.Outcome {
		return d.checks.merge(ctx, e, name, dec, r)
	}, nil
}

// Refused counts a request the HTTP listener would not decide as an
// InvalidArgument, and logs it within the rate limit of every request
// log line (the message quotes nothing the client sent; cut all the same).
func (d httpDecider) Refused(ctx context.Context, err *httpauthz.RequestError) {
	d.a.count(codes.InvalidArgument, time.Now())
	d.a.log.log(ctx, slog.LevelWarn, "http check refused: unreadable request",
		slog.Int("status", err.Status), slog.String("error", limits.Cut(err.Message)))
}

// httpTLSConfig is the TLS configuration of the HTTP listener: the gRPC
// listener's certificate (and client CA), reloaded the same way.
func (c *certReloader) httpTLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: c.configForClient}
}

// netHTTPLog is the HTTP listener's net/http error log (TLS handshake
// failures, malformed connections): each message a warning, cut
// (limits.Cut), within a request log rate limit of its own, since a
// client can cause one per connection. A refused TLS handshake is also
// counted in corsauthz_tls_handshake_failures_total, as the gRPC
// listener's are.
func netHTTPLog(logger *slog.Logger, metrics *Metrics, rate float64) *log.Logger {
	return log.New(&limitedLogWriter{metrics: metrics, log: newRequestLog(logger, metrics, rate)}, "", 0)
}

type limitedLogWriter struct {
	metrics *Metrics
	log     *requestLog
}

func (w *limitedLogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	// net/http's wording, as of Go 1.26: "http: TLS handshake error from
	// ADDR: ERR".
	if strings.HasPrefix(msg, "http: TLS handshake error") {
		w.metrics.tlsHandshakeFailed()
	}
	w.log.log(context.Background(), slog.LevelWarn, "HTTP listener: "+limits.Cut(msg), slog.String("listener", "http"))
	return len(p), nil
}

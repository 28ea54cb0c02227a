package httpauthz

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/corsauthz/corsauthz/decision"
	"github.com/corsauthz/corsauthz/internal/limits"
	"github.com/corsauthz/corsauthz/internal/tracing"
	"github.com/corsauthz/corsauthz/policy"
)

// HealthPath is where the handler answers a gateway's health probe: 200
// "ok" while Options.Ready reports nil, else 503 with its reason. It is
// answered only to a GET or HEAD that carries neither X-Forwarded-Uri nor
// X-Original-URI, so that it never shadows the check of a request for
// that path from NGINX (which always sends X-Original-URI in the shipped
// configuration); with Envoy, give the check requests a path_prefix.
const HealthPath = "/.corsauthz/healthz"

// Options configure a Handler. The zero value is usable.
type Options struct {
	// PathPrefix is removed from the request's own path when neither
	// X-Forwarded-Uri nor X-Original-URI is sent: Envoy's http_service
	// path_prefix, which Envoy puts before the original path. A request
	// whose path does not start with it, at a segment boundary, is a 400.
	// A trailing "/" is ignored.
	PathPrefix string
	// Ready reports whether the process should get traffic, for
	// HealthPath: nil when it should, else why not (nil func: always).
	Ready func() error
}

// Handler is the HTTP authorization front end: an http.Handler that reads
// each request as a description of a gateway's request, has the decision
// core decide it and writes the outcome as the gateway expects (see the
// package documentation). Its zero value is not usable: use New.
type Handler struct {
	core   *decision.Core
	prefix string
	ready  func() error
}

var _ http.Handler = (*Handler)(nil)

// New returns a Handler deciding with core.
func New(core *decision.Core, opts Options) (*Handler, error) {
	if core == nil {
		return nil, errors.New("httpauthz: nil decision core")
	}
	prefix := strings.TrimRight(opts.PathPrefix, "/")
	if prefix != "" && !strings.HasPrefix(prefix, "/") {
		return nil, fmt.Errorf("httpauthz: path prefix %q does not start with /", opts.PathPrefix)
	}
	return &Handler{core: core, prefix: prefix, ready: opts.Ready}, nil
}

// ServeHTTP implements http.Handler: read, decide, answer. Every step
// that can fail answers with its status and a one-line text body.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength != 0 {
		// The body is never read: the connection is closed after the
		// answer, and reading from it fails at once, so that net/http does
		// not wait for a body (a chunked one, say) to drain it.
		w.Header().Set("Connection", "close")
		_ = http.NewResponseController(w).SetReadDeadline(time.Now())
	}
	if h.isHealthProbe(r) {
		h.health(w)
		return
	}
	var req policy.Request
	if err := readRequest(r, h.prefix, &req); err != nil {
		h.core.Refused(r.Context(), decision.FrontEndHTTP, err.Message, slog.Int("status", err.Status))
		writeText(w, err.Status, err.Message)
		return
	}
	ctx := r.Context()
	if h.core.Tracing() {
		ctx = tracing.FromHeader(ctx, r.Header) // traceparent from the gateway
	}
	out := h.core.Decide(ctx, decision.FrontEndHTTP, &req, &httpSource{r: r, req: &req})
	writeOutcome(w, r, &out)
}

func (h *Handler) isHealthProbe(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		r.URL.Path == HealthPath &&
		r.Header.Get(headerForwardedURI) == "" && r.Header.Get(headerOriginalURI) == ""
}

func (h *Handler) health(w http.ResponseWriter) {
	if h.ready != nil {
		if err := h.ready(); err != nil {
			writeText(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
			return
		}
	}
	writeText(w, http.StatusOK, "ok")
}

// unavailableMessage is the 503 body for a failure of the core.
func unavailableMessage(f *decision.Failure) string {
	if upe, ok := errors.AsType[*policy.UnknownPolicyError](f.Err); ok {
		return fmt.Sprintf("X-Corsauthz-Policy names no configured policy: %q", limits.Cut(upe.Name))
	}
	return f.Message
}

// setOneLineEach sets headers on out, one line per name: values of a name
// given twice are joined, as a list-valued header may be (RFC 9110 §5.3),
// except Set-Cookie (an authorizer's denial may carry several), which
// keeps a line per cookie. It is linear in the number of headers, however
// many an authorizer's answer carries.
func setOneLineEach(out http.Header, headers []policy.Header) {
	// One backing array for every value: one allocation per answer.
	values := make([]string, len(headers))
	var set map[string]bool // names set here, when there are many
	if len(headers) > policy.MaxHeaders {
		set = make(map[string]bool, len(headers))
	}
	for i, hd := range headers {
		values[i] = hd.Value
		key := http.CanonicalHeaderKey(hd.Name)
		if key == "Set-Cookie" {
			out[key] = append(out[key], hd.Value)
			continue
		}
		seen := false
		if set != nil {
			seen = set[key]
			set[key] = true
		} else {
			seen = slices.ContainsFunc(headers[:i], func(h policy.Header) bool { return strings.EqualFold(h.Name, hd.Name) })
		}
		if seen {
			out[key][0] += ", " + hd.Value
			continue
		}
		out[key] = values[i : i+1 : i+1]
	}
}

// maxMessageLen bounds a one-line answer body, in bytes.
const maxMessageLen = 512

// writeText answers status with msg as a one-line plain-text body: line
// breaks and other control characters become spaces, and a message longer
// than maxMessageLen is cut, so that nothing a client sent can shape the
// answer.
func writeText(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	msg = strings.ToValidUTF8(msg, "\uFFFD")
	if len(msg) > maxMessageLen {
		msg = limits.Prefix(msg, maxMessageLen) + "…"
	}
	line := []byte(msg)
	for i, c := range line {
		if c < 0x20 || c == 0x7f {
			line[i] = ' '
		}
	}
	line = append(line, '\n')
	h.Set("Content-Length", strconv.Itoa(len(line)))
	w.WriteHeader(status)
	_, _ = w.Write(line)
}

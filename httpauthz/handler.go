package httpauthz

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/corsauthz/corsauthz/authorizer"
	"github.com/corsauthz/corsauthz/internal/limits"
	"github.com/corsauthz/corsauthz/policy"
)

// Decider decides the requests the handler reads. The server package's
// is the process's engine in force, counted in its metrics (with this
// front end as a label) and written to its rate-limited decision log.
type Decider interface {
	// Decide returns the decision for r and, when the decision's policy
	// names an authorizer to ask (contract §8: not for a preflight nor a
	// reject_disallowed_origins refusal), the Ask that asks it, bound to
	// the configuration that decided; nil otherwise. An error (a policy
	// named by X-Corsauthz-Policy that is not configured, no
	// configuration loaded) is answered 503 with the error's message.
	Decide(ctx context.Context, r *policy.Request) (policy.Decision, Ask, error)
	// Refused is told of every request the handler refused to decide
	// (400 or 431), to count and log it.
	Refused(ctx context.Context, err *RequestError)
}

// Ask asks an authorizer about the request described by r, decided as d,
// and returns its answer merged with d (authorizer.Merge): the handler
// writes that outcome instead of the decision.
type Ask func(ctx context.Context, d *policy.Decision, r *authorizer.Request) authorizer.Outcome

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
// each request as a description of a gateway's request, has the Decider
// decide it and writes the decision as the gateway expects (see the
// package documentation). Its zero value is not usable: use New.
type Handler struct {
	decider Decider
	prefix  string
	ready   func() error
}

var _ http.Handler = (*Handler)(nil)

// New returns a Handler deciding with d.
func New(d Decider, opts Options) (*Handler, error) {
	if d == nil {
		return nil, errors.New("httpauthz: nil Decider")
	}
	prefix := strings.TrimRight(opts.PathPrefix, "/")
	if prefix != "" && !strings.HasPrefix(prefix, "/") {
		return nil, fmt.Errorf("httpauthz: path prefix %q does not start with /", opts.PathPrefix)
	}
	return &Handler{decider: d, prefix: prefix, ready: opts.Ready}, nil
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
		h.decider.Refused(r.Context(), err)
		writeText(w, err.Status, err.Message)
		return
	}
	d, ask, err := h.decider.Decide(r.Context(), &req)
	if err != nil {
		writeText(w, http.StatusServiceUnavailable, unavailableMessage(err))
		return
	}
	if ask != nil {
		out := ask(r.Context(), &d, authorizerRequest(r, &req))
		writeOutcome(w, &out)
		return
	}
	writeDecision(w, &d)
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

// unavailableMessage is the 503 body for an error of Decide.
func unavailableMessage(err error) string {
	if upe, ok := errors.AsType[*policy.UnknownPolicyError](err); ok {
		return fmt.Sprintf("X-Corsauthz-Policy names no configured policy: %q", limits.Cut(upe.Name))
	}
	return err.Error()
}

// writeDecision writes d as the gateway expects it: a direct answer's
// status (204, 403) or 200, and the decision's headers, one line each. A
// report-only decision changes nothing: 200 without headers. Any decision
// the policy package makes maps here the same way; nothing depends on
// which row of the decision table it came from.
func writeDecision(w http.ResponseWriter, d *policy.Decision) {
	if d.ReportOnly {
		w.WriteHeader(http.StatusOK)
		return
	}
	status := http.StatusOK
	if d.Direct() {
		status = d.Status
	}
	var buf [policy.MaxHeaders]policy.Header
	setOneLineEach(w.Header(), d.AppendHeaders(buf[:0]))
	w.WriteHeader(status)
}

// setOneLineEach sets headers on out, one line per name: values of a name
// given twice are joined, as a list-valued header may be (RFC 9110 §5.3),
// except Set-Cookie (an authorizer's denial may carry several), which
// keeps a line per cookie. The names are few: a scan costs less than a
// map lookup.
func setOneLineEach(out http.Header, headers []policy.Header) {
	// One backing array for every value: one allocation per answer.
	values := make([]string, len(headers))
	for i, hd := range headers {
		values[i] = hd.Value
		if strings.EqualFold(hd.Name, "Set-Cookie") {
			out.Add(hd.Name, hd.Value)
			continue
		}
		if j := slices.IndexFunc(headers[:i], func(h policy.Header) bool { return strings.EqualFold(h.Name, hd.Name) }); j >= 0 {
			first := out[http.CanonicalHeaderKey(headers[j].Name)]
			first[0] += ", " + hd.Value
			continue
		}
		out[http.CanonicalHeaderKey(hd.Name)] = values[i : i+1 : i+1]
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
		i := maxMessageLen
		for i > 0 && !utf8.RuneStart(msg[i]) {
			i--
		}
		msg = msg[:i] + "…"
	}
	line := []byte(msg)
	for i, c := range line {
		if c < 0x20 || c == 0x7f {
			line[i] = ' '
		}
	}
	line = append(line, '\n')
	h.Set("Content-Length", fmt.Sprint(len(line)))
	w.WriteHeader(status)
	_, _ = w.Write(line)
}

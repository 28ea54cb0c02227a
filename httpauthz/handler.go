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
// that can fail answers with its status and a one-line text body. It is
// the same protocol as Server's, for a Handler mounted in a net/http
// server of one's own.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a := stdAnswer{w}
	if r.ContentLength != 0 {
		// The body is never read: the connection is closed after the
		// answer, and reading from it fails at once, so that net/http does
		// not wait for a body (a chunked one, say) to drain it.
		w.Header().Set("Connection", "close")
		_ = http.NewResponseController(w).SetReadDeadline(time.Now())
	}
	if isHealthProbe(r.Method, r.URL.Path, stdRequest{r}) {
		h.health(a)
		return
	}
	var req policy.Request
	if err := readRequest(stdRequest{r}, h.prefix, &req); err != nil {
		h.core.Refused(r.Context(), decision.FrontEndHTTP, err.Message, slog.Int("status", err.Status))
		writeText(a, err.Status, err.Message)
		return
	}
	ctx := r.Context()
	if h.core.Tracing() {
		ctx = tracing.FromHeader(ctx, r.Header) // traceparent from the gateway
	}
	out := h.core.Decide(ctx, decision.FrontEndHTTP, &req, &httpSource{r: r, req: &req})
	writeOutcome(a, stdRequest{r}, &out)
}

// isHealthProbe reports whether a request is a probe of HealthPath: a
// GET or HEAD of it that describes no request (see HealthPath).
func isHealthProbe(method, path string, r checkRequest) bool {
	if (method != http.MethodGet && method != http.MethodHead) || path != HealthPath {
		return false
	}
	fwd, _ := r.get(hForwardedURI)
	orig, _ := r.get(hOriginalURI)
	return fwd == "" && orig == ""
}

func (h *Handler) health(a answer) {
	if h.ready != nil {
		if err := h.ready(); err != nil {
			writeText(a, http.StatusServiceUnavailable, "not ready: "+err.Error())
			return
		}
	}
	writeText(a, http.StatusOK, "ok")
}

// unavailableMessage is the 503 body for a failure of the core.
func unavailableMessage(f *decision.Failure) string {
	if upe, ok := errors.AsType[*policy.UnknownPolicyError](f.Err); ok {
		return fmt.Sprintf("X-Corsauthz-Policy names no configured policy: %q", limits.Cut(upe.Name))
	}
	return f.Message
}

// answer is where the handler writes an answer: a net/http
// ResponseWriter (stdAnswer) or Server's response (wireAnswer).
type answer interface {
	// add adds a header line; name is canonical.
	add(name, value string)
	// send sends the status, the headers added and body.
	send(status int, body []byte)
}

// stdAnswer is a net/http answer.
type stdAnswer struct{ w http.ResponseWriter }

func (a stdAnswer) add(name, value string) {
	h := a.w.Header()
	h[name] = append(h[name], value)
}

func (a stdAnswer) send(status int, body []byte) {
	if len(body) > 0 {
		if h := a.w.Header(); h["Content-Type"] == nil {
			h["Content-Type"] = nil // the authorizer's answer as it came: no sniffed type
		}
	}
	a.w.WriteHeader(status)
	if len(body) > 0 {
		_, _ = a.w.Write(body)
	}
}

// addOneLineEach adds headers to a, one line per name: values of a name
// given twice are joined, as a list-valued header may be (RFC 9110
// §5.3), except Set-Cookie (an authorizer's denial may carry several),
// which keeps a line per cookie. It is linear in the number of headers,
// however many an authorizer's answer carries.
func addOneLineEach(a answer, headers []policy.Header) {
	var buf [policy.MaxHeaders]policy.Header
	lines := buf[:0]
	var at map[string]int // index in lines by name, when there are many
	if len(headers) > policy.MaxHeaders {
		at = make(map[string]int, len(headers))
	}
	for i, hd := range headers {
		key := http.CanonicalHeaderKey(hd.Name)
		if key != "Set-Cookie" {
			j := -1
			if at != nil {
				if k, ok := at[key]; ok {
					j = k
				}
			} else if slices.ContainsFunc(headers[:i], func(h policy.Header) bool { return strings.EqualFold(h.Name, hd.Name) }) {
				j = slices.IndexFunc(lines, func(l policy.Header) bool { return l.Name == key })
			}
			if j >= 0 {
				lines[j].Value += ", " + hd.Value
				continue
			}
			if at != nil {
				at[key] = len(lines)
			}
		}
		lines = append(lines, policy.Header{Name: key, Value: hd.Value})
	}
	for _, l := range lines {
		a.add(l.Name, l.Value)
	}
}

// maxMessageLen bounds a one-line answer body, in bytes.
const maxMessageLen = 512

// writeText answers status with msg as a one-line plain-text body: line
// breaks and other control characters become spaces, and a message longer
// than maxMessageLen is cut, so that nothing a client sent can shape the
// answer.
func writeText(a answer, status int, msg string) {
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
	a.add("Content-Type", "text/plain; charset=utf-8")
	a.add("X-Content-Type-Options", "nosniff")
	a.add("Cache-Control", "no-store")
	a.add("Content-Length", strconv.Itoa(len(line)))
	a.send(status, line)
}

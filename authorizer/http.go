package authorizer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/corsauthz/corsauthz/internal/tracing"

	"github.com/corsauthz/corsauthz/policy"
)

// httpClient asks a forward-auth service (NGINX auth_request's and
// Envoy's http_service's protocol): a GET with X-Forwarded-Method, -Proto,
// -Host and -Uri, the configured request headers and the static headers;
// 2xx allows.
type httpClient struct {
	cfg policy.Authorizer
	// pathPrefix is url without a trailing "/", for forward_path.
	pathPrefix string
	// logURL is url without its query, the only form of it an error
	// (which reaches the logs) may carry.
	logURL    string
	static    staticHeaders
	transport *http.Transport
	client    *http.Client
	slots     slots
}

// Transport settings: connections are kept alive and reused (HTTP/2 over
// TLS where the authorizer speaks it; oauth2-proxy speaks HTTP/1.1 on
// plain http, one request per connection at a time, so idle connections
// are kept for as many calls as may be in flight, and no more are ever
// opened).
const (
	httpDialTimeout     = 5 * time.Second // the call's own timeout, shorter, fires first
	httpIdleConnTimeout = 90 * time.Second
	httpMaxHeaderBytes  = MaxAnswerHeaderBytes
)

func newHTTPClient(a policy.Authorizer) (*httpClient, error) {
	u, err := url.Parse(a.HTTP.URL)
	if err != nil {
		return nil, fmt.Errorf("authorizer %q: %w", a.Name, err)
	}
	t := &http.Transport{
		Proxy:                  nil, // a proxy from the environment would see every cookie
		DialContext:            (&net.Dialer{Timeout: httpDialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           MaxInFlight,
		MaxIdleConnsPerHost:    MaxInFlight,
		MaxConnsPerHost:        MaxInFlight,
		IdleConnTimeout:        httpIdleConnTimeout,
		TLSHandshakeTimeout:    a.HTTP.Timeout,
		ResponseHeaderTimeout:  a.HTTP.Timeout,
		MaxResponseHeaderBytes: httpMaxHeaderBytes,
		DisableCompression:     true, // the body goes to the browser as it came
	}
	return &httpClient{
		cfg:        a,
		pathPrefix: u.Scheme + "://" + u.Host + strings.TrimSuffix(u.EscapedPath(), "/"),
		logURL:     u.Scheme + "://" + u.Host + u.EscapedPath(),
		static:     newStaticHeaders(a.StaticHeaders),
		transport:  t,
		client: &http.Client{
			Transport: t,
			// A redirect (to the login page) is an answer for the browser,
			// not for corsauthz to follow.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		slots: make(slots, MaxInFlight),
	}, nil
}

func (c *httpClient) Config() *policy.Authorizer { return &c.cfg }

func (c *httpClient) Close() { c.transport.CloseIdleConnections() }

// Ask implements Client. A failure's answer names the upstream_headers
// to remove (RemoveUpstream): under on_error: allow the request goes on,
// and a client must not get its own X-Auth-Request-User through by
// making the authorizer fail.
func (c *httpClient) Ask(ctx context.Context, r *Request) *Answer {
	a := c.ask(ctx, r)
	if a.Result.Failed() {
		a.RemoveUpstream = c.cfg.HTTP.UpstreamHeaders
	}
	return a
}

func (c *httpClient) ask(ctx context.Context, r *Request) *Answer {
	ctx, cancel := context.WithTimeoutCause(ctx, c.cfg.HTTP.Timeout, errTimeout(c.cfg.HTTP.Timeout))
	defer cancel()

	method, scheme, host, path, headers := r.httpView()
	if method == "" {
		return failed(ErrNoRequest)
	}
	target := c.cfg.HTTP.URL
	if c.cfg.HTTP.ForwardPath {
		p, ok := ForwardedPath(path)
		if !ok {
			return refused()
		}
		target = c.pathPrefix + p
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return failed(fmt.Errorf("GET %s: the request's path makes no URL", c.logURL))
	}
	for _, name := range c.cfg.HTTP.Headers {
		if v, ok := headers[name]; ok {
			req.Header.Set(name, v)
		}
	}
	if scheme == "" {
		scheme = headers[":scheme"]
	}
	if host == "" {
		host = headers[":authority"]
	}
	req.Header.Set("X-Forwarded-Method", escapeControls(method))
	req.Header.Set("X-Forwarded-Proto", escapeControls(scheme))
	req.Header.Set("X-Forwarded-Host", escapeControls(host))
	req.Header.Set("X-Forwarded-Uri", escapeControls(path))
	if err := c.static.each(req.Header.Set); err != nil {
		return failed(err)
	}
	// The trace context of the call's span, when tracing: the
	// authorizer's span joins the request's trace.
	tracing.ToHeader(ctx, req.Header)

	if err := c.slots.acquire(ctx); err != nil {
		return failed(err)
	}
	defer c.slots.release()
	resp, err := c.client.Do(req)
	if err != nil {
		return failed(cause(ctx, c.redact(err)))
	}
	defer resp.Body.Close()
	return c.readAnswer(ctx, resp)
}

// readAnswer reads an authorizer's HTTP answer: 2xx allows, any other
// final status denies (Merge makes it a status a denial may have), 1xx is
// an Error, and so is an answer past MaxBodyBytes or MaxAnswerHeaders.
func (c *httpClient) readAnswer(ctx context.Context, resp *http.Response) *Answer {
	if resp.StatusCode < 200 {
		// 101 Switching Protocols (net/http reads past 100 and 103 on
		// its own): no answer, and a connection no timeout would end
		// if it were kept. The caller's Close ends it now.
		return failed(fmt.Errorf("GET %s: answered %d, which is no answer to a check", c.logURL, resp.StatusCode))
	}
	if n := headerLines(resp.Header); n > MaxAnswerHeaders {
		return failed(fmt.Errorf("GET %s: the answer has %d header lines, more than %d", c.logURL, n, MaxAnswerHeaders))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBodyBytes+1))
	if err != nil {
		return failed(fmt.Errorf("GET %s: read the answer: %w", c.logURL, cause(ctx, c.redact(err))))
	}
	if len(body) > MaxBodyBytes {
		return failed(fmt.Errorf("GET %s: the answer's body is longer than %d bytes", c.logURL, MaxBodyBytes))
	}
	if err := late(ctx); err != nil {
		return failed(err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return c.allowed(resp.Header)
	}
	a := &Answer{Result: Deny, Status: resp.StatusCode}
	if len(body) > 0 {
		a.Body = body
	}
	a.Headers = answerHeaders(resp.Header)
	return a
}

// escapeControls percent-encodes the control characters of v, which no
// header value may hold (a gateway checks its requests; a front end that
// did not must not make the check fail).
func escapeControls(v string) string {
	if validValue(v) {
		return v
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(v)+8)
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			b = append(b, '%', hex[c>>4], hex[c&15])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

// refused is the answer for a path forward_path cannot send.
func refused() *Answer {
	return &Answer{Result: Refused, Status: http.StatusBadRequest, Body: []byte(refusedBody)}
}

// redact removes the URL from a net/http error, whose text would carry
// the request's path and query (with forward_path) into the logs; the
// configured URL without its query is said instead.
func (c *httpClient) redact(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return &redactedError{msg: fmt.Sprintf("%s %s", strings.ToUpper(ue.Op), c.logURL), err: ue.Err}
	}
	return err
}

// redactedError is an error with its URL replaced; it unwraps to the
// cause (a timeout, a refused connection).
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string {
	return e.msg + ": " + redactQuery(e.err.Error())
}

func (e *redactedError) Unwrap() error { return e.err }

// redactQuery cuts every query out of s ("?" and what follows up to the
// next space or quote), for error text that may quote a URL.
func redactQuery(s string) string {
	i := strings.IndexByte(s, '?')
	if i < 0 {
		return s
	}
	var b strings.Builder
	for i >= 0 {
		b.WriteString(s[:i])
		b.WriteString("?…")
		s = s[i+1:]
		end := strings.IndexAny(s, " \"'")
		if end < 0 {
			return b.String()
		}
		s = s[end:]
		i = strings.IndexByte(s, '?')
	}
	b.WriteString(s)
	return b.String()
}

// headerLines counts an answer's header lines, one per value.
func headerLines(h http.Header) int {
	n := 0
	for _, vs := range h {
		n += len(vs)
	}
	return n
}

// allowed is the answer of a 2xx: exactly the upstream_headers it
// carried, the others to be removed from the request.
func (c *httpClient) allowed(h http.Header) *Answer {
	a := &Answer{Result: Allow}
	for _, name := range c.cfg.HTTP.UpstreamHeaders {
		if vs := h.Values(name); len(vs) > 0 {
			a.SetUpstream = append(a.SetUpstream, policy.Header{Name: name, Value: strings.Join(vs, ",")})
		} else {
			a.RemoveUpstream = append(a.RemoveUpstream, name)
		}
	}
	return a
}

// answerHeaders lists a denial's headers in name order, one entry per
// value: the first replaces, the next ones append (Set-Cookie stays one
// line a cookie). The headers its Connection header names are hop-by-hop
// (RFC 9110 section 7.6.1) and left out; Merge drops the rest of what
// may not be sent.
func answerHeaders(h http.Header) []policy.Header {
	var connection map[string]bool
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				if connection == nil {
					connection = map[string]bool{}
				}
				connection[http.CanonicalHeaderKey(name)] = true
			}
		}
	}
	names := make([]string, 0, len(h))
	for name := range h {
		if !connection[name] {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	out := make([]policy.Header, 0, len(names))
	for _, name := range names {
		for i, v := range h[name] {
			out = append(out, policy.Header{Name: name, Value: v, Append: i > 0})
		}
	}
	return out
}

type timeoutError time.Duration

func (e timeoutError) Error() string {
	return fmt.Sprintf("no answer within the timeout of %s", time.Duration(e))
}

func errTimeout(d time.Duration) error { return timeoutError(d) }

// cause returns the reason ctx ended when it did, else err.
func cause(ctx context.Context, err error) error {
	if c := context.Cause(ctx); c != nil && !errors.Is(err, c) {
		return &causeError{cause: c, err: err}
	}
	return err
}

// causeError is err, which happened because ctx ended for cause.
type causeError struct{ cause, err error }

func (e *causeError) Error() string   { return e.cause.Error() + " (" + e.err.Error() + ")" }
func (e *causeError) Unwrap() []error { return []error{e.cause, e.err} }

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

	"github.com/corsauthz/corsauthz/policy"
)

// httpClient asks a forward-auth service (NGINX auth_request's and
// Envoy's http_service's protocol): a GET with X-Forwarded-Method, -Proto,
// -Host and -Uri and the configured request headers; 2xx allows.
type httpClient struct {
	cfg policy.Authorizer
	// pathPrefix is url without a trailing "/", for forward_path.
	pathPrefix string
	transport  *http.Transport
	client     *http.Client
	slots      slots
}

// Transport settings: connections are kept alive and reused (HTTP/2 over
// TLS where the authorizer speaks it; oauth2-proxy speaks HTTP/1.1 on
// plain http, one request per connection at a time, so idle connections
// are kept for as many calls as may be in flight).
const (
	httpDialTimeout     = 5 * time.Second // the call's own timeout, shorter, fires first
	httpIdleConnTimeout = 90 * time.Second
	httpMaxHeaderBytes  = 64 << 10
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

// Ask implements Client.
func (c *httpClient) Ask(ctx context.Context, r *Request) *Answer {
	ctx, cancel := context.WithTimeoutCause(ctx, c.cfg.HTTP.Timeout, errTimeout(c.cfg.HTTP.Timeout))
	defer cancel()
	if err := c.slots.acquire(ctx); err != nil {
		return failed(err)
	}
	defer c.slots.release()

	method, scheme, host, path, headers := r.httpView()
	if method == "" {
		return failed(ErrNoRequest)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.checkURL(path), nil)
	if err != nil {
		return failed(err)
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
	req.Header.Set("X-Forwarded-Method", method)
	req.Header.Set("X-Forwarded-Proto", scheme)
	req.Header.Set("X-Forwarded-Host", host)
	req.Header.Set("X-Forwarded-Uri", path)

	resp, err := c.client.Do(req)
	if err != nil {
		return failed(cause(ctx, err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBodyBytes+1))
	if err != nil {
		return failed(fmt.Errorf("read the answer: %w", cause(ctx, err)))
	}
	if len(body) > MaxBodyBytes {
		return failed(fmt.Errorf("the answer's body is longer than %d bytes", MaxBodyBytes))
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

// checkURL is where the check goes: url exactly, or with forward_path
// url's path followed by the request's path and query.
func (c *httpClient) checkURL(path string) string {
	if !c.cfg.HTTP.ForwardPath {
		return c.cfg.HTTP.URL
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	// The request's path is escaped already, as on its request line.
	return c.pathPrefix + path
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

// notPassed are the headers of a denial not sent on: those of a
// connection, not of the answer, and Content-Length and Date, which the
// gateway sets for the answer it sends.
var notPassed = []string{
	"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length", "Date",
}

// answerHeaders lists a denial's headers in name order, one entry per
// value: the first replaces, the next ones append (Set-Cookie stays one
// line a cookie).
func answerHeaders(h http.Header) []policy.Header {
	names := make([]string, 0, len(h))
	for name := range h {
		if !slices.Contains(notPassed, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	var out []policy.Header
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
		return fmt.Errorf("%w (%v)", c, err)
	}
	return err
}

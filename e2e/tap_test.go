package e2e

import (
	"bytes"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// The suites through a real gateway (NGINX, Caddy) read their exchanges
// from a tap in front of it:
//
//	Chromium ─▶ tap ─▶ gateway (NGINX, Caddy) ─▶ upstream
//
// The tap is a recording pass-through (httputil.ReverseProxy, which keeps
// every header line the gateway sent) that logs each exchange as the
// ext_authz gateway does. Whether a request reached the upstream is told
// by the upstream itself: the tap numbers each request it passes on
// (exchangeIDHeader, which the gateways forward as any request header),
// and the upstream notes the numbers it sees (reached). On the routes
// that have one, the tap is also the shared cache in front of the gateway
// (the ext_authz gateway's sharedCache, as a CDN would be): a hit is
// answered without asking the gateway, and so without asking corsauthz.

// exchangeIDHeader carries the tap's exchange number through the gateway
// to the upstream.
const exchangeIDHeader = "X-E2e-Exchange"

// reached numbers the tap's requests and notes those the upstream saw.
// One per stack, shared by every tap in front of it, so that a second tap
// (a fresh exchange log) never reuses a number.
type reached struct {
	last atomic.Uint64
	seen sync.Map // exchange number -> true
}

// number gives the request a new exchange number.
func (rc *reached) number(h http.Header) {
	h.Set(exchangeIDHeader, strconv.FormatUint(rc.last.Add(1), 10))
}

// noting wraps the upstream's handler to note the numbers it sees.
func (rc *reached) noting(upstream http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := r.Header.Get(exchangeIDHeader); id != "" {
			rc.seen.Store(id, true)
		}
		upstream.ServeHTTP(w, r)
	})
}

// saw tells whether the upstream saw the request with header h.
func (rc *reached) saw(h http.Header) bool {
	_, ok := rc.seen.Load(h.Get(exchangeIDHeader))
	return ok
}

// tap is the recording pass-through in front of a gateway.
type tap struct {
	proxy  *httputil.ReverseProxy
	routes []route // for their cache settings
	cache  sharedCache
	exchangeRecorder
}

func newTap(target *url.URL, routes []route, reached *reached) *tap {
	tp := &tap{routes: routes}
	tp.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			reached.number(pr.Out.Header)
		},
		ModifyResponse: func(resp *http.Response) error {
			tp.record(exchange{check: describeRequest(resp.Request), upstream: reached.saw(resp.Request.Header), status: resp.StatusCode, header: resp.Header.Clone()})
			if rt, ok := tp.route(resp.Request.URL.Path); ok && rt.cache {
				body, err := io.ReadAll(resp.Body)
				if err != nil {
					return err
				}
				resp.Body = io.NopCloser(bytes.NewReader(body))
				tp.cache.store(resp.Request, resp.StatusCode, resp.Header, body, rt.ignoreVary)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			tp.record(exchange{check: describeRequest(r), err: err, status: http.StatusBadGateway})
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	return tp
}

// frontWithTap puts a new tap (a fresh exchange log) in front of the
// gateway at target, and makes it the API the scenarios call, from the
// browser and from the stack's direct client.
func (s *stack) frontWithTap(t *testing.T, target *url.URL, routes []route) {
	t.Helper()
	tp := newTap(target, routes, s.reached)
	s.log = tp
	front := httptest.NewServer(tp)
	t.Cleanup(front.Close)
	s.setFront(t, front)
}

func (tp *tap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rt, ok := tp.route(r.URL.Path); ok && rt.cache {
		if hit, ok := tp.cache.lookup(r, rt.ignoreVary); ok {
			tp.record(exchange{check: describeRequest(r), cached: true, status: hit.status, header: hit.header.Clone()})
			maps.Copy(w.Header(), hit.header)
			w.WriteHeader(hit.status)
			w.Write(hit.body)
			return
		}
	}
	tp.proxy.ServeHTTP(w, r)
}

// route returns the first route whose prefix path has, as NGINX's
// locations and Caddy's handle blocks (all prefixes, none a prefix of
// another) choose.
func (tp *tap) route(path string) (route, bool) {
	for _, rt := range tp.routes {
		if strings.HasPrefix(path, rt.prefix) {
			return rt, true
		}
	}
	return route{}, false
}

// describeRequest holds what describe reads of a request, in the form the
// ext_authz gateway logs it.
func describeRequest(r *http.Request) *authv3.CheckRequest {
	headers := map[string]string{}
	for name, values := range r.Header {
		headers[strings.ToLower(name)] = strings.Join(values, ",")
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: r.Method, Path: r.URL.RequestURI(), Host: r.Host, Headers: headers},
	}}}
}

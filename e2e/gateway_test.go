package e2e

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/corsauthz/corsauthz/internal/envoyheaders"
)

// gateway stands in for Envoy with the HTTP ext_authz filter
// (envoy.filters.http.ext_authz) in front of one upstream cluster, as
// Envoy documents it:
//
//   - each request is checked with envoy.service.auth.v3.Authorization/Check,
//     over gRPC, with the attributes.request.http Envoy fills (the headers
//     map with lower-case keys and the :authority, :method, :path and
//     :scheme pseudo-headers; host, path, method, scheme, protocol) and the
//     route's context extensions (a route's typed_per_filter_config
//     check_settings.context_extensions);
//   - a non-OK status is answered by the gateway itself with the
//     denied_response status (403 when none), headers and body;
//   - OK forwards upstream with ok_response's request headers set and
//     removed and its query parameters set and removed, and applies
//     ok_response.response_headers_to_add to the upstream's response,
//     honouring each append_action;
//   - a failed Check gets status_on_error, 403 by default, since
//     failure_mode_allow is false by default;
//   - a route's response_headers_to_remove is applied to the upstream's
//     response in the router, before the response passes back through
//     ext_authz, which then adds its headers (Envoy 1.31+,
//     source/common/router/router.cc, Filter::onUpstreamHeaders), so the
//     shipped configuration's removal of the upstream's Access-Control-*
//     headers never removes corsauthz's;
//   - the router's own error answer (503 when the upstream cannot be
//     reached) passes back through the encoder filters as any response
//     does, so ext_authz adds its response_headers_to_add to it too.
//
// In front of some routes it also has a shared HTTP cache (sharedCache),
// as a CDN in front of Envoy would be: a hit is answered without asking
// Envoy, and so without asking corsauthz.
//
// It records every exchange, before answering, for the test to inspect.
type gateway struct {
	authz    authv3.AuthorizationClient
	routes   []route // in order; the first whose prefix matches wins
	upstream *url.URL
	cache    sharedCache

	nextID atomic.Uint64
	exchangeRecorder
}

// route is an Envoy route: a path prefix, the ext_authz context
// extensions of its per-filter config, and its response_headers_to_remove.
type route struct {
	prefix                  string
	extensions              map[string]string
	responseHeadersToRemove []string
	upstream                *url.URL // nil: the gateway's
	// cache puts the shared cache in front of the route; ignoreVary makes
	// it a broken cache that stores one answer per URL whatever Vary says.
	cache, ignoreVary bool
	// noCheck turns ext_authz off for the route, as Envoy's per-route
	// ExtAuthzPerRoute{disabled: true} does (oauth2-proxy's own /oauth2/
	// pages, say); the request goes to upstream with X-Forwarded-For,
	// -Host and -Proto, as Envoy sends them.
	noCheck bool
}

// corsResponseHeaders are the response headers the shipped Envoy
// configuration removes from the upstream's responses at every route
// (deploy/envoy/envoy.yaml), so that the browser sees corsauthz's answer
// alone.
var corsResponseHeaders = []string{
	"access-control-allow-origin",
	"access-control-allow-credentials",
	"access-control-allow-methods",
	"access-control-allow-headers",
	"access-control-allow-private-network",
	"access-control-expose-headers",
	"access-control-max-age",
}

// exchange is one request through the gateway.
type exchange struct {
	check    *authv3.CheckRequest
	resp     *authv3.CheckResponse // nil when Check failed
	err      error                 // the Check error
	upstream bool                  // the request went upstream
	cached   bool                  // the shared cache answered; no Check was made
	status   int                   // the status the gateway answered with
	header   http.Header           // the headers the gateway answered with
}

func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt, ok := g.route(r.URL.Path)
	if !ok {
		http.NotFound(w, r) // Envoy's router: no route matched
		return
	}
	if rt.noCheck {
		proxy := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(rt.upstream)
			pr.SetXForwarded()
			pr.Out.Host = pr.In.Host
		}}
		proxy.ServeHTTP(w, r)
		return
	}
	x := exchange{check: g.checkRequest(r, rt.extensions)}
	if rt.cache {
		if hit, ok := g.cache.lookup(r, rt.ignoreVary); ok {
			x.cached, x.status, x.header = true, hit.status, hit.header.Clone()
			g.record(x)
			maps.Copy(w.Header(), hit.header)
			w.WriteHeader(hit.status)
			w.Write(hit.body)
			return
		}
	}
	x.resp, x.err = g.authz.Check(r.Context(), x.check)
	switch {
	case x.err != nil: // status_on_error: 403
		g.answer(w, x, http.StatusForbidden, nil, "")
	case codes.Code(x.resp.GetStatus().GetCode()) != codes.OK:
		d := x.resp.GetDeniedResponse()
		status := int(d.GetStatus().GetCode())
		if status == 0 {
			status = http.StatusForbidden
		}
		g.answer(w, x, status, d.GetHeaders(), d.GetBody())
	default:
		okResp := x.resp.GetOkResponse()
		upstream := g.upstream
		if rt.upstream != nil {
			upstream = rt.upstream
		}
		proxy := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(upstream)
				pr.Out.Host = pr.In.Host
				applyHeaders(pr.Out.Header, okResp.GetHeaders())
				for _, name := range okResp.GetHeadersToRemove() {
					pr.Out.Header.Del(name)
				}
				if set, remove := okResp.GetQueryParametersToSet(), okResp.GetQueryParametersToRemove(); len(set) > 0 || len(remove) > 0 {
					q := pr.Out.URL.Query()
					for _, p := range set {
						q.Set(p.GetKey(), p.GetValue())
					}
					for _, k := range remove {
						q.Del(k)
					}
					pr.Out.URL.RawQuery = q.Encode()
				}
			},
			ModifyResponse: func(resp *http.Response) error {
				for _, name := range rt.responseHeadersToRemove {
					resp.Header.Del(name)
				}
				applyHeaders(resp.Header, okResp.GetResponseHeadersToAdd())
				x.upstream, x.status, x.header = true, resp.StatusCode, resp.Header.Clone()
				g.record(x)
				if rt.cache {
					body, err := io.ReadAll(resp.Body)
					if err != nil {
						return err
					}
					resp.Body = io.NopCloser(bytes.NewReader(body))
					g.cache.store(r, resp.StatusCode, resp.Header, body, rt.ignoreVary)
				}
				return nil
			},
			ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
				x.err = err // Envoy: 503 upstream connect error, through ext_authz's encoder
				g.answer(w, x, http.StatusServiceUnavailable, okResp.GetResponseHeadersToAdd(), "")
			},
		}
		proxy.ServeHTTP(w, r)
	}
}

func (g *gateway) route(path string) (route, bool) {
	for _, rt := range g.routes {
		if strings.HasPrefix(path, rt.prefix) {
			return rt, true
		}
	}
	return route{}, false
}

// checkRequest builds the CheckRequest Envoy sends for r (without body).
func (g *gateway) checkRequest(r *http.Request, extensions map[string]string) *authv3.CheckRequest {
	id := strconv.FormatUint(g.nextID.Add(1), 10)
	headers := map[string]string{
		":authority":        r.Host,
		":method":           r.Method,
		":path":             r.URL.RequestURI(),
		":scheme":           "http",
		"x-forwarded-proto": "http",
		"x-request-id":      id,
	}
	for name, values := range r.Header {
		headers[strings.ToLower(name)] = strings.Join(values, ",") // Envoy joins repeats with ","
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.Now(),
			Http: &authv3.AttributeContext_HttpRequest{
				Id:       id,
				Method:   r.Method,
				Headers:  headers,
				Path:     r.URL.RequestURI(), // path and query, as on the request line
				Host:     r.Host,
				Scheme:   "http",
				Protocol: r.Proto,
				Size:     r.ContentLength,
			},
		},
		ContextExtensions: extensions,
	}}
}

// answer is Envoy's local reply.
func (g *gateway) answer(w http.ResponseWriter, x exchange, status int, headers []*corev3.HeaderValueOption, body string) {
	applyHeaders(w.Header(), headers)
	x.status, x.header = status, w.Header().Clone()
	g.record(x)
	w.WriteHeader(status)
	fmt.Fprint(w, body)
}

// exchangeRecorder is what a front end in front of the browser's requests (the
// test gateway, or the tap in front of NGINX and Caddy) has seen, in order.
type exchangeRecorder struct {
	mu  sync.Mutex
	log []exchange
}

func (l *exchangeRecorder) record(x exchange) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.log = append(l.log, x)
}

// exchanges returns the exchanges so far whose path is one of paths.
func (l *exchangeRecorder) exchanges(paths ...string) []exchange {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []exchange
	for _, x := range l.log {
		for _, p := range paths {
			if x.check.GetAttributes().GetRequest().GetHttp().GetPath() == p {
				out = append(out, x)
			}
		}
	}
	return out
}

// applyHeaders applies header value options to h as Envoy applies them to
// a response, a local reply or the upstream request (envoyheaders.Apply,
// shared with the middleware's agreement test).
func applyHeaders(h http.Header, opts []*corev3.HeaderValueOption) {
	envoyheaders.Apply(h, opts)
}

// sharedCache is a shared HTTP cache (RFC 9111) reduced to what the tests
// need: it stores 200 answers to GET whose Cache-Control says public and
// max-age, keyed by URL and by the request's values of the headers the
// answer's Vary names; an answer whose Vary is "*" is never reused. Answers
// do not expire: each scenario uses paths of its own.
type sharedCache struct {
	mu      sync.Mutex
	entries map[string][]cacheEntry // by host and request URI
}

type cacheEntry struct {
	varied map[string]string // the request's values of the Vary headers
	status int
	header http.Header
	body   []byte
}

func cacheKey(r *http.Request) string { return r.Host + r.URL.RequestURI() }

// varyNames returns the header names h's Vary lists, canonical.
func varyNames(h http.Header) []string {
	var names []string
	for _, v := range h.Values("Vary") {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				names = append(names, http.CanonicalHeaderKey(name))
			}
		}
	}
	return names
}

func (c *sharedCache) store(r *http.Request, status int, h http.Header, body []byte, ignoreVary bool) {
	cc := h.Get("Cache-Control")
	if r.Method != http.MethodGet || status != http.StatusOK || !strings.Contains(cc, "public") || !strings.Contains(cc, "max-age=") {
		return
	}
	e := cacheEntry{varied: map[string]string{}, status: status, header: h.Clone(), body: body}
	if !ignoreVary {
		for _, name := range varyNames(h) {
			if name == "*" {
				return
			}
			e.varied[name] = r.Header.Get(name)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string][]cacheEntry{}
	}
	c.entries[cacheKey(r)] = append(c.entries[cacheKey(r)], e)
}

// lookup returns a stored answer r may be given: one whose Vary headers
// have the values r has (any stored answer, when ignoreVary).
func (c *sharedCache) lookup(r *http.Request, ignoreVary bool) (cacheEntry, bool) {
	if r.Method != http.MethodGet {
		return cacheEntry{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.entries[cacheKey(r)] {
		match := true
		for name, v := range e.varied {
			if !ignoreVary && r.Header.Get(name) != v {
				match = false
			}
		}
		if match {
			return e, true
		}
	}
	return cacheEntry{}, false
}

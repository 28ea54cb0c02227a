package e2e

import (
	"fmt"
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
//   - OK forwards upstream and applies ok_response.response_headers_to_add
//     to the upstream's response, honouring each append_action;
//   - a failed Check gets status_on_error, 403 by default, since
//     failure_mode_allow is false by default.
//
// It records every exchange, before answering, for the test to inspect.
type gateway struct {
	authz    authv3.AuthorizationClient
	routes   []route // in order; the first whose prefix matches wins
	upstream *url.URL

	nextID atomic.Uint64
	mu     sync.Mutex
	log    []exchange
}

// route is an Envoy route: a path prefix and the ext_authz context
// extensions of its per-filter config.
type route struct {
	prefix     string
	extensions map[string]string
}

// exchange is one request through the gateway.
type exchange struct {
	check    *authv3.CheckRequest
	resp     *authv3.CheckResponse // nil when Check failed
	err      error                 // the Check error
	upstream bool                  // the request went upstream
	status   int                   // the status the gateway answered with
	header   http.Header           // the headers the gateway answered with
}

func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt, ok := g.route(r.URL.Path)
	if !ok {
		http.NotFound(w, r) // Envoy's router: no route matched
		return
	}
	x := exchange{check: g.checkRequest(r, rt.extensions)}
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
		proxy := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(g.upstream)
				pr.Out.Host = pr.In.Host
				applyHeaders(pr.Out.Header, okResp.GetHeaders())
				for _, name := range okResp.GetHeadersToRemove() {
					pr.Out.Header.Del(name)
				}
			},
			ModifyResponse: func(resp *http.Response) error {
				applyHeaders(resp.Header, okResp.GetResponseHeadersToAdd())
				x.upstream, x.status, x.header = true, resp.StatusCode, resp.Header.Clone()
				g.record(x)
				return nil
			},
			ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
				x.err = err // Envoy: 503 upstream connect error
				g.answer(w, x, http.StatusServiceUnavailable, nil, "")
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

func (g *gateway) record(x exchange) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.log = append(g.log, x)
}

// exchanges returns the exchanges so far whose path is one of paths.
func (g *gateway) exchanges(paths ...string) []exchange {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []exchange
	for _, x := range g.log {
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

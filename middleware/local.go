package middleware

import (
	"errors"
	"net/http"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/corsauthz/corsauthz/authorizer"
	"github.com/corsauthz/corsauthz/decision"
	"github.com/corsauthz/corsauthz/internal/envoyheaders"
	"github.com/corsauthz/corsauthz/internal/tracing"
	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/xdsconfig"
)

// errNoConfiguration is why a request in local mode is answered 503 before
// the first configuration arrives.
var errNoConfiguration = errors.New("no configuration received from corsauthz yet")

// subscriptionEngines gives the decision core the configuration the xDS
// subscription has in force.
type subscriptionEngines struct{ sub *xdsconfig.Subscription }

func (s *subscriptionEngines) Load() *policy.Engine {
	if s.sub == nil {
		return nil
	}
	return s.sub.Engine()
}

// serveLocal decides r in process with the decision core every front end
// of corsauthz uses: the same decision, the same authorizer call (made from
// this process, with the same client, limits and merge) and the same
// outcome as an Envoy in front of corsauthz would get.
func (m *Middleware) serveLocal(w http.ResponseWriter, r *http.Request, next func(http.ResponseWriter, *http.Request) error) error {
	req := m.request(r)
	ctx := r.Context()
	if m.core.Tracing() {
		ctx = tracing.FromHeader(ctx, r.Header) // the gateway's span, or the client's traceparent
	}
	out := m.core.Decide(ctx, decision.FrontEndMiddleware, &req, requestSource{r})
	switch out.Action {
	case decision.Fail:
		err := error(out.Failure)
		if out.Failure.Kind == decision.NoConfiguration {
			err = errNoConfiguration
		}
		m.failClosed(w, r, err)
		return nil
	case decision.Respond:
		if out.Plain() { // a preflight, or a rejection in reject mode
			h := w.Header()
			removeAccessControl(h) // headers an outer handler set: one answer only
			cors := out.Decision.ResponseHeaders()
			setCORS(h, &cors, r.Header)
			w.WriteHeader(out.Status)
			return nil
		}
		var buf [policy.MaxHeaders]policy.Header
		respond(w, out.Status, out.AppendHeaders(buf[:0]), out.Body)
		return nil
	}
	if up := out.Upstream(); up != nil {
		// A gRPC authorizer's ok_response holds its edits with their
		// exact actions and query parameters; otherwise the outcome's
		// lists (an HTTP authorizer's upstream headers).
		if up.OK != nil {
			r = upstreamRequest(r, nil, nil, up.OK)
		} else {
			r = upstreamRequest(r, up.RequestHeaders, up.RemoveRequestHeaders, nil)
		}
	}
	cw := localWriter(w, r, &out)
	if out.Decision.Policy == "" {
		cw.st.noPolicy = m
	}
	return cw.serve(r, next)
}

// requestSource is the request as an authorizer is told of it: its method,
// scheme, host, path and query, and its headers (lower-case names,
// repeated ones joined with ","), the authorizer package sending only
// those its configuration lists.
type requestSource struct{ r *http.Request }

func (s requestSource) AuthorizerRequest(string) *authorizer.Request {
	r := s.r
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	headers := make(map[string]string, len(r.Header))
	for name, vs := range r.Header {
		headers[strings.ToLower(name)] = joined(vs)
	}
	return &authorizer.Request{
		Method:  r.Method,
		Scheme:  scheme,
		Host:    r.Host,
		Path:    requestPath(r),
		Headers: headers,
	}
}

// upstreamRequest is r as an authorizer that allowed it asked it to go on:
// headers set and removed, and for a gRPC authorizer (or Check, in remote
// mode) its ok_response's request headers, removals and query parameters.
// r is copied, never changed.
func upstreamRequest(r *http.Request, set []policy.Header, remove []string, ok *authv3.OkHttpResponse) *http.Request {
	r2 := r.Clone(r.Context())
	h := r2.Header
	for _, name := range remove {
		h.Del(name)
	}
	for _, hd := range set {
		if hd.Append {
			h.Add(hd.Name, hd.Value)
		} else {
			h.Set(hd.Name, hd.Value)
		}
	}
	if ok == nil {
		return r2
	}
	envoyheaders.Apply(h, ok.GetHeaders())
	for _, name := range ok.GetHeadersToRemove() {
		h.Del(name)
	}
	if len(ok.GetQueryParametersToSet()) > 0 || len(ok.GetQueryParametersToRemove()) > 0 {
		q := r2.URL.Query()
		for _, name := range ok.GetQueryParametersToRemove() {
			q.Del(name)
		}
		for _, p := range ok.GetQueryParametersToSet() {
			q.Set(p.GetKey(), p.GetValue())
		}
		u := *r2.URL
		u.RawQuery = q.Encode()
		r2.URL = &u
		r2.RequestURI = u.RequestURI()
	}
	return r2
}

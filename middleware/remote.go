package middleware

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/corsauthz/corsauthz/authorizer"
	"github.com/corsauthz/corsauthz/policy"
	corsauthzv1 "github.com/corsauthz/corsauthz/proto/gen/corsauthz/v1"
)

// serveRemote asks corsauthz's Decide for r. When the decision names an
// authorizer, corsauthz must ask it: the middleware then asks Check, as
// Envoy would, with the request's headers, and renders its answer (the
// authorizer's allow, denial or failure merged with the CORS headers).
// Decide alone never lets a request through a policy with an authorizer.
func (m *Middleware) serveRemote(w http.ResponseWriter, r *http.Request, next func(http.ResponseWriter, *http.Request) error) error {
	req := m.request(r)
	ctx, cancel := context.WithTimeout(r.Context(), m.timeout)
	defer cancel()
	resp, err := m.decisions.Decide(ctx, &corsauthzv1.DecideRequest{
		Method:                             req.Method,
		Host:                               req.Host,
		Path:                               req.Path,
		Policy:                             req.Policy,
		Origin:                             req.Origin,
		OriginPresent:                      req.OriginPresent,
		AccessControlRequestMethod:         req.RequestMethod,
		AccessControlRequestHeaders:        req.RequestHeaders,
		AccessControlRequestPrivateNetwork: req.RequestPrivateNetwork,
		OmitReasons:                        true,
	})
	if err != nil {
		m.failClosed(w, r, err)
		return nil
	}
	switch resp.GetAction() {
	case corsauthzv1.Action_ACTION_RESPOND:
		status := int(resp.GetHttpStatus())
		if status < 200 || status > 599 {
			m.failClosed(w, r, fmt.Errorf("Decide answered ACTION_RESPOND with HTTP status %d", status))
			return nil
		}
		respond(w, status, decideHeaders(resp), nil)
		return nil
	case corsauthzv1.Action_ACTION_CONTINUE:
		if resp.GetAuthorizer() != "" {
			return m.serveChecked(ctx, w, r, next)
		}
		cw := newWriter(w, r)
		cw.st.extra = decideHeaders(resp)
		if resp.GetPolicy() == "" {
			cw.st.noPolicy = m
		}
		return cw.serve(r, next)
	default:
		m.failClosed(w, r, fmt.Errorf("Decide answered an action this middleware does not know (%v)", resp.GetAction()))
		return nil
	}
}

func decideHeaders(resp *corsauthzv1.DecideResponse) []policy.Header {
	headers := make([]policy.Header, 0, len(resp.GetHeaders()))
	for _, h := range resp.GetHeaders() {
		headers = append(headers, policy.Header{
			Name:   h.GetName(),
			Value:  h.GetValue(),
			Append: h.GetAction() == corsauthzv1.HeaderAction_HEADER_ACTION_APPEND,
		})
	}
	return headers
}

// serveChecked asks Check about r and renders its answer as Envoy does:
// a denial is answered with its status, headers and body; an allow goes
// on with the request headers the answer sets and removes, and the
// response headers it adds.
func (m *Middleware) serveChecked(ctx context.Context, w http.ResponseWriter, r *http.Request, next func(http.ResponseWriter, *http.Request) error) error {
	resp, err := m.checks.Check(ctx, checkRequest(r, m.policy))
	if err != nil {
		m.failClosed(w, r, err)
		return nil
	}
	if resp.GetStatus().GetCode() != int32(codes.OK) {
		d := resp.GetDeniedResponse()
		status := int(d.GetStatus().GetCode())
		if status == 0 {
			status = http.StatusForbidden // as Envoy answers a denial without a status
		}
		respond(w, status, authorizer.OptionHeaders(d.GetHeaders()), []byte(d.GetBody()))
		return nil
	}
	ok := resp.GetOkResponse()
	r = upstreamRequest(r, nil, nil, ok)
	cw := newWriter(w, r)
	cw.st.extra = authorizer.OptionHeaders(ok.GetResponseHeadersToAdd())
	return cw.serve(r, next)
}

// checkRequest is r as Envoy describes a request to ext_authz: method,
// scheme, host, path and query, and every header with a lower-case name
// (repeated ones joined with ","), the policy as cors_policy.
func checkRequest(r *http.Request, policyName string) *authv3.CheckRequest {
	headers := make(map[string]string, len(r.Header)+3)
	for name, vs := range r.Header {
		headers[strings.ToLower(name)] = joined(vs)
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	path := requestPath(r)
	headers[":method"], headers[":authority"], headers[":path"] = r.Method, r.Host, path
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: r.Method, Scheme: scheme, Host: r.Host, Path: path, Headers: headers},
	}}}
	if policyName != "" {
		req.Attributes.ContextExtensions = map[string]string{"cors_policy": policyName}
	}
	return req
}

package httpauthz

import (
	"net/http"
	"strings"

	"github.com/corsauthz/corsauthz/authorizer"
	"github.com/corsauthz/corsauthz/decision"
	"github.com/corsauthz/corsauthz/policy"
)

// This file writes the answer of a request that asked an authorizer
// (docs/authorizers.md) in this listener's protocol (docs/nginx.md).

// HeaderAuthHeadersToRemove lists, on a 200, the request headers the
// gateway must remove from the request going upstream: Envoy's
// http_service reads it (x-envoy-auth-headers-to-remove, Envoy 1.16 and
// later, source/extensions/filters/common/ext_authz/ext_authz_http_impl.cc).
// NGINX ignores it; there an upstream header set with proxy_set_header
// from an empty auth_request_set variable is not sent at all.
const HeaderAuthHeadersToRemove = "X-Envoy-Auth-Headers-To-Remove"

// headerForwardedProto is the scheme of the request being decided.
const headerForwardedProto = "X-Forwarded-Proto"

// describing are the headers of this protocol that describe the request
// rather than belong to it, and the check request's own: none is part of
// the request an authorizer is told of.
var describing = []string{
	headerForwardedMethod, headerOriginalMethod, headerForwardedHost, headerOriginalHost,
	headerForwardedURI, headerOriginalURI, headerForwardedProto, HeaderPolicy,
	"Connection", "Content-Length", "Transfer-Encoding", "Keep-Alive", "Te", "Upgrade",
}

// httpSource is the request described by r (read into req) as an
// authorizer is told of it: req's method, host and path, the scheme from
// X-Forwarded-Proto (else that of the request to this listener), and r's
// other headers with lower-case names, repeated ones joined with ",". For
// a gRPC authorizer the authorizer package makes a CheckRequest of it. Its
// size is bounded by the listener's MaxHeaderBytes.
type httpSource struct {
	r   *http.Request
	req *policy.Request
}

// AuthorizerRequest implements decision.Source.
func (s *httpSource) AuthorizerRequest(string) *authorizer.Request {
	return authorizerRequest(s.r.Header, s.r.TLS != nil, s.req)
}

// authorizerRequest is the request req described by a check request with
// header h, received over TLS or not, as an authorizer is told of it.
func authorizerRequest(h http.Header, overTLS bool, req *policy.Request) *authorizer.Request {
	scheme := h.Get(headerForwardedProto)
	if scheme == "" {
		scheme = "http"
		if overTLS {
			scheme = "https"
		}
	}
	headers := make(map[string]string, len(h))
	for name, vs := range h {
		if isDescribing(name) {
			continue
		}
		headers[strings.ToLower(name)] = strings.Join(vs, ",")
	}
	return &authorizer.Request{
		Method:  req.Method,
		Scheme:  scheme,
		Host:    req.Host,
		Path:    req.Path,
		Headers: headers,
	}
}

func isDescribing(name string) bool {
	for _, d := range describing {
		if name == d {
			return true
		}
	}
	return false
}

// writeOutcome writes the core's outcome as the gateway expects it:
//
//   - a pass: 200 with the CORS headers for the response and, when an
//     authorizer allowed, the headers for the request going upstream (an
//     HTTP authorizer's upstream_headers, a gRPC authorizer's ok_response
//     headers: the gateway's configuration takes them by name, NGINX with
//     auth_request_set, Envoy with allowed_upstream_headers), and
//     X-Envoy-Auth-Headers-To-Remove naming those to remove from the
//     request. A gRPC ok_response's response headers, query parameters
//     and dynamic metadata have no place in this protocol and are
//     dropped: no header meant for the upstream request or the response
//     can pass for the other.
//   - a direct answer: its status, headers and body (a CORS answer, or an
//     authorizer's denial or failure with the CORS headers merged in), to
//     be sent to the browser as it is.
//   - a failure: 503 with a one-line body saying why.
//
// r is the check request, whose headers a gRPC authorizer's conditional
// edits are read against.
func writeOutcome(a answer, r checkRequest, out *decision.Outcome) {
	var buf [policy.MaxHeaders]policy.Header
	switch out.Action {
	case decision.Fail:
		writeText(a, http.StatusServiceUnavailable, unavailableMessage(out.Failure))
	case decision.Respond:
		addHeaders(a, out, out.AppendHeaders(buf[:0]))
		a.send(out.Status, out.Body)
	default:
		headers := out.AppendHeaders(buf[:0])
		var remove []string
		if up := out.Upstream(); up != nil {
			// The request's edits, never the response's (a gRPC
			// ok_response's response headers have no place here).
			// A gRPC authorizer's conditional edits read against the
			// headers this request was sent with.
			headers = append(headers, up.RequestHeadersFor(r.sent)...)
			remove = up.RemoveRequestHeaders
		}
		addHeaders(a, out, headers)
		if len(remove) > 0 {
			a.add(HeaderAuthHeadersToRemove, strings.Join(remove, ", "))
		}
		a.send(http.StatusOK, nil)
	}
}

// addHeaders adds the headers of out to a: a decision's as they are (its
// names are canonical, each once), an authorizer's one line each
// (addOneLineEach).
func addHeaders(a answer, out *decision.Outcome, headers []policy.Header) {
	if !out.Plain() {
		addOneLineEach(a, headers)
		return
	}
	for _, h := range headers {
		a.add(h.Name, h.Value)
	}
}

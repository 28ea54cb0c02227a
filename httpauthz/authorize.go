package httpauthz

import (
	"net/http"
	"strings"

	"github.com/corsauthz/corsauthz/authorizer"
	"github.com/corsauthz/corsauthz/policy"
)

// This file writes the answer of a request that asked an authorizer
// (contract §8) in this listener's protocol (contract §7).

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

// authorizerRequest is the request described by r (read into req) as an
// authorizer is told of it: req's method, host and path, the scheme from
// X-Forwarded-Proto (else that of the request to this listener), and r's
// other headers with lower-case names, repeated ones joined with ",".
// For a gRPC authorizer the authorizer package makes a CheckRequest of
// it. Its size is bounded by the listener's MaxHeaderBytes.
func authorizerRequest(r *http.Request, req *policy.Request) *authorizer.Request {
	scheme := r.Header.Get(headerForwardedProto)
	if scheme == "" {
		scheme = "http"
		if r.TLS != nil {
			scheme = "https"
		}
	}
	headers := make(map[string]string, len(r.Header))
	for name, vs := range r.Header {
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

// writeOutcome writes an authorizer's merged answer:
//
//   - a pass: 200 with the CORS headers for the response and the headers
//     for the request going upstream (an HTTP authorizer's
//     upstream_headers, a gRPC authorizer's ok_response headers and
//     response headers: the gateway's configuration tells them apart by
//     name), and X-Envoy-Auth-Headers-To-Remove naming those to remove
//     from the request. A gRPC ok_response's query parameters and dynamic
//     metadata have no place in this protocol and are dropped.
//   - a denial: the authorizer's status, headers and body, with the CORS
//     headers merged in; a failure: 503 with the CORS headers and a
//     one-line body.
func writeOutcome(w http.ResponseWriter, out *authorizer.Outcome) {
	h := w.Header()
	if !out.Pass {
		setOneLineEach(h, out.Headers)
		if _, ok := h["Content-Type"]; !ok {
			h["Content-Type"] = nil // the authorizer's answer as it came: no sniffed type
		}
		w.WriteHeader(out.Status)
		if len(out.Body) > 0 {
			_, _ = w.Write(out.Body)
		}
		return
	}
	headers := append([]policy.Header(nil), out.Headers...)
	headers = append(headers, out.RequestHeaders...)
	remove := out.RemoveRequestHeaders
	if ok := out.OK; ok != nil {
		for _, o := range ok.GetHeaders() {
			headers = append(headers, policy.Header{Name: o.GetHeader().GetKey(), Value: headerValue(o.GetHeader().GetValue(), o.GetHeader().GetRawValue())})
		}
		for _, o := range ok.GetResponseHeadersToAdd() {
			headers = append(headers, policy.Header{Name: o.GetHeader().GetKey(), Value: headerValue(o.GetHeader().GetValue(), o.GetHeader().GetRawValue())})
		}
		remove = append(append([]string(nil), remove...), ok.GetHeadersToRemove()...)
	}
	setOneLineEach(h, headers)
	if len(remove) > 0 {
		h.Set(HeaderAuthHeadersToRemove, strings.Join(remove, ", "))
	}
	w.WriteHeader(http.StatusOK)
}

func headerValue(v string, raw []byte) string {
	if len(raw) > 0 {
		return string(raw)
	}
	return v
}

// Package httpauthz is corsauthz's HTTP authorization front end (product
// docs/nginx.md): it answers plain HTTP requests that describe a request a
// gateway received, as NGINX's auth_request, Envoy's and Istio's HTTP
// ext_authz (http_service, envoyExtAuthzHttp) and other forward-auth
// gateways send them. It holds no CORS logic and no process: it reads the
// request into a policy.Request, the decision core (package decision)
// decides, asks the policy's authorizer and merges, and this package
// writes the outcome; the server package runs the listener.
//
// What is decided comes from the request's headers, each only when
// present and not empty (NGINX cannot send an empty header):
//
//	method  X-Forwarded-Method, X-Original-Method, else the request's own
//	host    X-Forwarded-Host, X-Original-Host, else Host
//	path    X-Forwarded-Uri, X-Original-URI, else the request's own path
//	        and query with Options.PathPrefix (Envoy's path_prefix) removed
//	policy  X-Corsauthz-Policy (as Envoy's cors_policy), else selection
//	Origin and Access-Control-Request-*: the request's own (an Origin
//	        sent empty is present: a CORS request that matches no listed
//	        origin, as Envoy's http_service may forward it)
//
// The answer's status tells the gateway what to do; its CORS headers are
// each on one line (NGINX 1.22 reads only the first line of a repeated
// header into $upstream_http_*):
//
//	204 / 403  a preflight allowed / rejected, or 403 for an origin refused
//	           under reject_disallowed_origins: send it to the browser as is
//	200        pass on; put these headers on the upstream's response,
//	           replacing its Access-Control-* and appending to its Vary
//	           (none for a report-only policy or when no policy applies; a
//	           request without Origin gets Vary: Origin, or ACAO * from a
//	           "*" policy without credentials)
//	503        X-Corsauthz-Policy names no configured policy, or no
//	           configuration is loaded: a one-line text body says which
//	431 / 400  a request past the limits, or one that cannot be read: a
//	           one-line text body says why
//
// Every request is answered without reading its body: a body is ignored
// and the connection closed after the answer, so that no client makes the
// listener read more than its headers.
package httpauthz

// Package authorizer asks the auth services of docs/authorizers.md (oauth2-proxy,
// OPA, Authorino, any forward-auth or ext_authz server) about the requests
// corsauthz has decided, and merges their answers with the CORS decision.
//
// It is independent of the front end: a [Request] describes the request
// the gateway asked about (with its CheckRequest, typed or still on the
// wire, when the gateway spoke ext_authz), a [Client] asks one authorizer
// and returns an [Answer], and [Merge] turns a decision and an answer into
// the [Outcome] the front end writes in its own protocol (an ext_authz
// CheckResponse, or the HTTP listener's answer).
//
// A [Pool] holds one client per configured authorizer and keeps it across
// reloads while its configuration is unchanged, so its connections (an
// http.Transport's keep-alive connections, one grpc.ClientConn) are reused.
// Every call is bounded: a timeout that covers the whole exchange, a cap on
// calls in flight, a cap on the answer's size; no goroutine outlives it.
package authorizer

// Package authorizer asks the auth services corsauthz stands in front of
// (oauth2-proxy, OPA, Authorino, any forward-auth or ext_authz server)
// about the requests corsauthz has decided, and merges their answers with
// the CORS decision. See docs/authorizers.md.
//
// It is independent of the front end: a [Request] describes the request
// the gateway asked about (with its CheckRequest, typed or still on the
// wire, when the gateway spoke ext_authz), a [Client] asks one authorizer
// and returns an [Answer], and [Merge] turns a decision and an answer into
// the [Outcome] the front end writes in its own protocol (an ext_authz
// CheckResponse, the HTTP listener's answer, the Go middleware's).
//
// Merge is where the invariants every front end relies on are kept,
// whatever the authorizer answered: only corsauthz speaks CORS (no
// Access-Control-* header of an authorizer's gets through), a denial
// stays a denial (its status 400–599, else 403; no framing, hop-by-hop or
// X-Accel-* header), and headers for the upstream request never become
// response headers. The clients keep the others: forward_path cannot
// climb (see [ForwardedPath]), no query reaches an error or a log line,
// static header values are read from the environment or files at call
// time and never from the configuration.
//
// A [Pool] holds one client per configured authorizer and keeps it across
// reloads while its configuration is unchanged, so its connections (an
// http.Transport's keep-alive connections, one grpc.ClientConn) are reused.
// Every call is bounded: a timeout that covers the whole exchange, a cap
// on calls on the wire per authorizer ([MaxInFlight]), a cap on calls
// waiting or in flight in the pool with a share per authorizer
// ([MaxPending]; past it a call is Overloaded at once), caps on the
// answer's size and headers; no goroutine outlives a call.
package authorizer

// Package decision is corsauthz's decision core: the one place that turns
// a request into an answer, for every front end (the ext_authz server, the
// decision API, the HTTP authorization listener, the Go middleware).
//
// A front end reads its protocol into a [policy.Request] and hands it to
// [Core.Decide], which
//
//   - selects the policy and decides with the configuration in force,
//   - asks the policy's authorizer when the invariants say so (every
//     request that goes on upstream under a policy with an authorizer;
//     only a preflight corsauthz answers itself skips it, report_only or
//     not), and merges its answer with the CORS decision,
//   - logs (one rate-limited request log) and counts,
//
// and returns an [Outcome]: pass on (with headers for the response and for
// the upstream request), answer directly (status, headers, body), or fail.
// The front end writes that outcome in its protocol and decides nothing.
//
// The rules every front end shares live here and in the packages the core
// calls (policy for CORS, authorizer for the calls and the merge,
// internal/limits for the bounds), so that a property checked once holds
// for every front end: no client chooses who authorizes, nothing reaches
// the upstream unauthorized, only corsauthz speaks CORS, and a denial
// stays a denial. See docs/authorizers.md.
package decision

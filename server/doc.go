// Package server is corsauthz's transport: it turns Envoy ext_authz calls
// into [policy.Request]s and [policy.Decision]s back into CheckResponses
// ([Authz]), and runs the process's listeners ([Server]): one gRPC port with
// the ext_authz API, grpc.health.v1.Health and server reflection, and an
// admin HTTP port with /healthz, /readyz and /metrics.
//
// It holds no CORS logic: every decision is the policy package's.
//
// The ext_authz mapping (product contract §5):
//
//   - a pass-on is status OK with ok_response; its response_headers_to_add
//     set Access-Control-* with OVERWRITE_IF_EXISTS_OR_ADD and Vary with
//     APPEND_IF_EXISTS_OR_ADD; not-CORS and report-only decisions add none;
//   - a direct answer (a preflight, or a 403) is status PERMISSION_DENIED
//     with denied_response {status: 204|403, headers, empty body};
//   - a request that cannot be decided gets a non-OK gRPC status and no
//     response: InvalidArgument when it has no HTTP attributes or exceeds
//     a limit, FailedPrecondition when its cors_policy context extension
//     names no configured policy, Unavailable when no configuration is
//     loaded. Envoy then applies its status_on_error.
package server

// Package extauthz serves Envoy's external-authorization API
// (envoy.service.auth.v3.Authorization/Check) for the decision core: it
// reads a CheckRequest into a policy.Request and writes the core's
// outcome as a CheckResponse, on a fast path that reads and writes the
// wire form (fastpath.go, wire.go, wire_response.go) and on the standard
// typed path, byte for byte alike. It decides nothing (docs/envoy.md):
//
//   - a pass-on is status OK with ok_response; its response_headers_to_add
//     set Access-Control-* with OVERWRITE_IF_EXISTS_OR_ADD and Vary with
//     APPEND_IF_EXISTS_OR_ADD; not-CORS and report-only decisions add none;
//     an authorizer's allow adds what it asked for the upstream request;
//   - a direct answer (a preflight, a 403, an authorizer's denial or
//     failure) is status PERMISSION_DENIED with denied_response {status,
//     headers, body};
//   - a request that cannot be decided gets a non-OK gRPC status and no
//     response: InvalidArgument when it has no HTTP attributes or exceeds
//     a limit, FailedPrecondition when its cors_policy context extension
//     names no configured policy, Unavailable when no configuration is
//     loaded. Envoy then applies its status_on_error.
package extauthz

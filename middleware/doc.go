// Package middleware puts corsauthz in front of a Go HTTP handler, the way
// an Envoy with ext_authz and the shipped configuration puts it in front of
// an upstream: preflights are answered directly (204 or 403, with their
// headers), responses get the CORS headers corsauthz decides (replacing the
// handler's own of the same names, as OVERWRITE_IF_EXISTS_OR_ADD does, and
// appending Vary), reject mode answers 403, and every other request goes on
// untouched. The handler's own Access-Control-* response headers never reach
// the browser, as the shipped Envoy route removes the upstream's: there is
// always one answer, corsauthz's.
//
// It decides in one of two modes:
//
//   - [ModeLocal] (the default): the configuration in force in a running
//     corsauthz is received over xDS (package xdsconfig) and compiled here;
//     each request is decided in process with the policy package, with no
//     network round trip, and the last configuration received keeps
//     deciding while corsauthz is unreachable.
//   - [ModeRemote]: each request asks corsauthz.v1.DecisionService/Decide
//     over one shared gRPC connection, with omit_reasons and a timeout.
//
// Both fail closed: a request that cannot be decided (corsauthz unreachable
// in remote mode, no configuration yet in local mode, a policy name the
// configuration does not have) is answered 503 with an empty body, as the
// shipped Envoy configuration's status_on_error does.
package middleware

// Package policy decides the CORS answer for one HTTP request.
//
// A [Config] is what an operator writes (usually as YAML, read by [Load]). It is
// checked and compiled once by [Compile] into an [Engine], which is immutable:
// the request path only reads it, so one Engine may serve any number of
// goroutines, and a new configuration is swapped in by replacing the pointer
// (see [Holder]).
//
// The package knows nothing of gRPC, Envoy or protobuf. Front ends (the
// ext_authz server, the native decision API, the CLI's explain command) turn
// their input into a [Request], call [Engine.Decide] and turn the [Decision]
// back into their own shapes.
package policy

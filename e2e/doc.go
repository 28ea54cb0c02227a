// Package e2e proves corsauthz in a real browser: a headless Chromium
// loads a page from one origin and calls an API on another through a
// gateway that implements Envoy's ext_authz HTTP filter, with corsauthz
// deciding over gRPC, and once more through real Caddy with the corsauthz
// module. The package has only tests; see README.md.
package e2e

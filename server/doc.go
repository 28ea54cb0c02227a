// Package server runs the corsauthz process ([Server]): one gRPC port with
// the ext_authz API (package extauthz), the decision API (package
// decisionapi), grpc.health.v1.Health, server reflection and the xDS
// server gateways subscribe to (package xdsconfig); the HTTP authorization
// listener (package httpauthz); an admin HTTP port with /healthz, /readyz
// and /metrics; TLS with certificate reloads; configuration reloads.
//
// It decides nothing: every front end it serves renders the outcomes of
// one decision core (package decision), which it builds, keeps in step
// with the configuration in force ([Server.Reload]) and closes at
// shutdown. See docs/architecture.md.
package server

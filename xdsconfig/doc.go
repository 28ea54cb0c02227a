// Package xdsconfig distributes the configuration in force in a corsauthz
// to gateways that decide in process, over xDS: a [Publisher] serves it as
// a state-of-the-world aggregated discovery service on corsauthz's gRPC
// port (its own stream loop on the generated discovery types), giving every
// stream the same encoded resource, and a [Subscription] receives it with go-control-plane's ADS
// client (pkg/client/sotw/v3), compiles it with the policy package, ACKs it
// or NACKs it, and keeps the last good one while corsauthz is away. Both
// sides are bounded (streams, resends, log lines; a resource's size and
// the time spent compiling): see docs/limits.md.
//
// The snapshot holds one resource, a corsauthzv1.Configuration named
// [ResourceName] carrying the configuration file's content and its version
// (the SHA-256 of that content), so a gateway decides with exactly the
// configuration corsauthz decides with.
package xdsconfig

// TypeURL is the xDS type of the one resource a corsauthz serves.
const TypeURL = "type.googleapis.com/corsauthz.v1.Configuration"

// ResourceName names that resource.
const ResourceName = "corsauthz"

// MaxMessageSize bounds a DiscoveryResponse a Subscription accepts: a
// configuration file is at most a few MiB (corsauthz refuses larger ones),
// and the envelope adds little.
const MaxMessageSize = 16 << 20

// maxNackMessage bounds the error text a NACK carries back to the server.
const maxNackMessage = 1024

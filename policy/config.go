package policy

// Config is a whole configuration file: the policies and which one applies
// when no other rule picks one.
type Config struct {
	Policies []Policy
	// DefaultPolicy names the policy used when neither the gateway's
	// context extension nor any Match selects one. Empty means such
	// requests go on untouched.
	DefaultPolicy string
	// Authorizers are the auth services policies may ask after CORS
	// (docs/authorizers.md); see [Authorizer].
	Authorizers []Authorizer
}

// Policy is one CORS policy as the operator writes it. Field names follow the
// YAML keys (allowed_origins is AllowedOrigins, and so on).
type Policy struct {
	// Name is unique and matches [a-z0-9][a-z0-9_-]{0,63}; gateways select
	// a policy by name (Envoy's cors_policy context extension).
	Name  string
	Match Match

	// AllowedOrigins holds exact serialized origins
	// ("https://app.example.com"), subdomain patterns
	// ("https://*.example.com", one or more labels, never the apex), the
	// literal "null", or the single entry "*".
	AllowedOrigins []string
	// AllowedMethods lists the methods a preflight may ask for, compared
	// case-sensitively. GET, HEAD and POST are always allowed.
	AllowedMethods []string
	// AllowedHeaders lists request header names (case-insensitive), or the
	// single entry "*" for any name except Authorization, which must
	// always be listed by name.
	AllowedHeaders []string
	// ExposedHeaders lists response headers the page's script may read.
	ExposedHeaders []string

	AllowCredentials bool
	// MaxAgeInSeconds becomes Access-Control-Max-Age; 0 sends none.
	MaxAgeInSeconds int
	// AllowPrivateNetwork answers Private Network Access preflights.
	AllowPrivateNetwork bool
	// RejectDisallowedOrigins answers actual requests from origins the
	// policy does not allow with 403 instead of passing them on.
	RejectDisallowedOrigins bool
	// ReportOnly makes the policy decide, log and count, but change nothing.
	ReportOnly bool
	// Authorizer names the authorizer asked about every request this
	// policy selects, except those corsauthz answers itself (a preflight,
	// a reject_disallowed_origins refusal; under report_only none is, so
	// every request is asked); empty: none. Policies that share a match
	// must name the same one (see [Engine.AuthorizerFor]).
	Authorizer string
}

// Match says which requests select a policy when the gateway names none.
// An empty Match selects nothing.
type Match struct {
	// Hosts are request authorities, compared case-insensitively, with
	// an optional leading "*." for any subdomain. A host without a port
	// matches any port.
	Hosts []string
	// PathPrefixes restrict the match to paths starting with one of them;
	// the longest matching prefix wins.
	PathPrefixes []string
}

package importer

import (
	"errors"
)

// Envoy's route configuration is read into the structs below with
// decodeProtoJSON (protojson.go), which follows protojson's rules for
// the fields they hold; fields they do not hold are ignored, as protojson
// ignores unknown ones with DiscardUnknown. They mirror the fields the
// importer reads of go-control-plane's envoy/config/route/v3 VirtualHost,
// Route, RouteMatch and CorsPolicy, envoy/extensions/filters/http/cors/v3
// CorsPolicy and envoy/type/matcher/v3 StringMatcher, with upstream's Go
// names, which only TestUpstreamTypes links: decoding with those types
// linked Envoy's route and matcher descriptors into the corsauthz binary,
// about 2 MiB of resident memory in every process.

const (
	virtualHostName = "envoy.config.route.v3.VirtualHost"
)

type envoyVirtualHost struct {
	Name    string           `pj:"name"`
	Domains []string         `pj:"domains"`
	Routes  []envoyRoute     `pj:"routes"`
	Cors    *envoyCorsPolicy `pj:"cors"`
}

type envoyRoute struct {
	Name  string           `pj:"name"`
	Match *envoyRouteMatch `pj:"match"`
	// The action oneof: only route reaches the CORS filter's answer.
	Route               *envoyRouteAction `pj:"route"`
	Redirect            *protoPresent     `pj:"redirect"`
	DirectResponse      *protoPresent     `pj:"directResponse,direct_response"`
	FilterAction        *protoPresent     `pj:"filterAction,filter_action"`
	NonForwardingAction *protoPresent     `pj:"nonForwardingAction,non_forwarding_action"`
}

func (r *envoyRoute) oneofError() error {
	return oneofCount("route, redirect, direct_response, filter_action and non_forwarding_action", "an action",
		r.Route != nil, r.Redirect != nil, r.DirectResponse != nil, r.FilterAction != nil, r.NonForwardingAction != nil)
}

type envoyRouteAction struct {
	Cors *envoyCorsPolicy `pj:"cors"`
}

type envoyRouteMatch struct {
	// The path_specifier oneof.
	Prefix              *string       `pj:"prefix"`
	Path                *string       `pj:"path"`
	SafeRegex           *envoyRegex   `pj:"safeRegex,safe_regex"`
	ConnectMatcher      *protoPresent `pj:"connectMatcher,connect_matcher"`
	PathSeparatedPrefix *string       `pj:"pathSeparatedPrefix,path_separated_prefix"`
	PathMatchPolicy     *protoPresent `pj:"pathMatchPolicy,path_match_policy"`

	Headers         []protoPresent `pj:"headers"`                          // only counted
	QueryParameters []protoPresent `pj:"queryParameters,query_parameters"` // only counted
	Grpc            *protoPresent  `pj:"grpc"`                             // only seen
	RuntimeFraction *protoPresent  `pj:"runtimeFraction,runtime_fraction"` // only seen
}

func (m *envoyRouteMatch) oneofError() error {
	return oneofCount("prefix, path, safe_regex, connect_matcher, path_separated_prefix and path_match_policy", "a path specifier",
		m.Prefix != nil, m.Path != nil, m.SafeRegex != nil, m.ConnectMatcher != nil, m.PathSeparatedPrefix != nil, m.PathMatchPolicy != nil)
}

// envoyRegex is a RegexMatcher: the regex (its engine is RE2 whatever is
// written).
type envoyRegex struct {
	Regex string `pj:"regex"`
}

// envoyCorsPolicy holds the fields the importer reads of both CorsPolicy
// messages: the route's (deprecated) and the CORS filter's.
type envoyCorsPolicy struct {
	AllowOriginStringMatch       []*envoyStringMatcher `pj:"allowOriginStringMatch,allow_origin_string_match"`
	AllowMethods                 string                `pj:"allowMethods,allow_methods"`
	AllowHeaders                 string                `pj:"allowHeaders,allow_headers"`
	ExposeHeaders                string                `pj:"exposeHeaders,expose_headers"`
	MaxAge                       string                `pj:"maxAge,max_age"`
	AllowCredentials             *bool                 `pj:"allowCredentials,allow_credentials"` // a BoolValue
	FilterEnabled                *envoyRuntimeFraction `pj:"filterEnabled,filter_enabled"`
	ShadowEnabled                *envoyRuntimeFraction `pj:"shadowEnabled,shadow_enabled"`
	AllowPrivateNetworkAccess    *bool                 `pj:"allowPrivateNetworkAccess,allow_private_network_access"`       // a BoolValue
	ForwardNotMatchingPreflights *bool                 `pj:"forwardNotMatchingPreflights,forward_not_matching_preflights"` // a BoolValue
}

// envoyRuntimeFraction is a RuntimeFractionalPercent: its default value
// (the runtime key is not read).
type envoyRuntimeFraction struct {
	DefaultValue *envoyFractionalPercent `pj:"defaultValue,default_value"`
}

type envoyFractionalPercent struct {
	Numerator   uint32           `pj:"numerator"`
	Denominator envoyDenominator `pj:"denominator"`
}

type envoyDenominator int32

const (
	denominatorHundred envoyDenominator = iota
	denominatorTenThousand
	denominatorMillion
)

func (envoyDenominator) enumNames() []string { return []string{"HUNDRED", "TEN_THOUSAND", "MILLION"} }

// envoyStringMatcher is a StringMatcher: one of its match_pattern members,
// and ignore_case.
type envoyStringMatcher struct {
	Exact      *string       `pj:"exact"`
	Prefix     *string       `pj:"prefix"`
	Suffix     *string       `pj:"suffix"`
	SafeRegex  *envoyRegex   `pj:"safeRegex,safe_regex"`
	Contains   *string       `pj:"contains"`
	Custom     *protoPresent `pj:"custom"`
	IgnoreCase bool          `pj:"ignoreCase,ignore_case"`
}

func (m *envoyStringMatcher) oneofError() error {
	return oneofCount("exact, prefix, suffix, safe_regex, contains and custom", "a StringMatcher",
		m.Exact != nil, m.Prefix != nil, m.Suffix != nil, m.SafeRegex != nil, m.Contains != nil, m.Custom != nil)
}

// oneofCount is the error for more than one member of a oneof set.
func oneofCount(members, what string, set ...bool) error {
	n := 0
	for _, s := range set {
		if s {
			n++
		}
	}
	if n > 1 {
		return errors.New("more than one of " + members + " is set: " + what + " takes one")
	}
	return nil
}

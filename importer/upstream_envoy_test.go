package importer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The Envoy importer decodes virtual hosts and CORS policies into the
// structs of envoytypes.go; go-control-plane's types, which it decoded
// with before, are linked only here. TestUpstreamEnvoyTypes decodes every
// virtual host and typed CORS policy of the Envoy test inputs, and of the
// inputs below, with both (upstream's as the importer did: protojson with
// DiscardUnknown, the Any-typed fields left out), with every key spelt as
// written, in lowerCamelCase and in snake_case, and requires that both
// succeed with the same values of every field the importer reads, or both
// fail.

// upstreamEnvoyInputs set the fields the testdata files leave out.
var upstreamEnvoyInputs = []struct{ desc, data string }{
	{desc: "every field", data: `
virtual_hosts:
- name: all
  domains: [a.example, "*.b.example"]
  cors:
    allow_origin_string_match: [{exact: "https://x"}, {safe_regex: {regex: "https://.*", google_re2: {}}}, {custom: {name: c}}, {}]
    allow_methods: GET
    allow_headers: x-a
    expose_headers: x-b
    max_age: "10"
    allow_credentials: false
    filter_enabled: {default_value: {numerator: 50, denominator: TEN_THOUSAND}, runtime_key: k}
    shadow_enabled: {default_value: {numerator: "7", denominator: 2}}
    allow_private_network_access: true
    forward_not_matching_preflights: true
  routes:
  - name: r1
    match: {prefix: /a, headers: [{name: x}], query_parameters: [{name: q}, {name: p}], grpc: {}, runtime_fraction: {default_value: {numerator: 1}}}
    route: {cluster: c, cors: {allow_origin_string_match: [{prefix: "https://p", ignore_case: true}, {suffix: .example}, {contains: ex}], filter_enabled: {default_value: {}}}}
  - match: {path: /exact}
    route: {cluster: c}
  - match: {safe_regex: {regex: "/r.*"}}
    route: {cluster: c}
  - match: {connect_matcher: {}}
    route: {cluster: c}
  - match: {path_separated_prefix: /s}
    redirect: {host_redirect: x}
  - match: {path_match_policy: {name: p}}
    direct_response: {status: 200}
  - match: {prefix: ""}
    filter_action: {}
  - match: {prefix: /n}
    non_forwarding_action: {}
  - {}
`},
	{desc: "nulls and unknown fields", data: `
virtual_hosts:
- name: n
  domains: null
  unknown_field: {a: 1}
  cors: null
  routes:
  - match: {prefix: /, headers: null}
    route: {cluster: c, cors: null, retry_policy: {num_retries: 3}}
`},
	{desc: "a wrong type in a field read", data: "virtual_hosts:\n- name: 3\n"},
	{desc: "a wrong type deep in a route", data: "virtual_hosts:\n- name: v\n  routes:\n  - match: {prefix: [a]}\n    route: {cluster: c}\n"},
	{desc: "two path specifiers", data: "virtual_hosts:\n- name: v\n  routes:\n  - match: {prefix: /, path: /a}\n    route: {cluster: c}\n"},
	{desc: "two actions", data: "virtual_hosts:\n- name: v\n  routes:\n  - match: {prefix: /}\n    route: {cluster: c}\n    redirect: {host_redirect: x}\n"},
	{desc: "two match patterns", data: "virtual_hosts:\n- name: v\n  cors: {allow_origin_string_match: [{exact: a, prefix: b}]}\n"},
	{desc: "a bool as a string", data: "virtual_hosts:\n- name: v\n  cors: {allow_credentials: \"true\"}\n"},
	{desc: "a numerator out of range", data: "virtual_hosts:\n- name: v\n  cors: {filter_enabled: {default_value: {numerator: -1}}}\n"},
	{desc: "an unknown denominator name", data: "virtual_hosts:\n- name: v\n  cors: {filter_enabled: {default_value: {numerator: 1, denominator: BILLION}}}\n"},
	{desc: "a null in a list", data: "virtual_hosts:\n- name: v\n  domains: [a, null]\n"},
	{desc: "a list for a message", data: "virtual_hosts:\n- name: v\n  routes:\n  - match: [a]\n"},
	{desc: "a typed CORS policy with every field", data: `
virtual_hosts:
- name: t
  typed_per_filter_config:
    envoy.filters.http.cors:
      "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy
      allow_origin_string_match: [{exact: "https://x", ignore_case: true}]
      allow_methods: GET
      allow_headers: x-a
      expose_headers: x-b
      max_age: "10"
      allow_credentials: true
      filter_enabled: {default_value: {numerator: 3, denominator: MILLION}}
      shadow_enabled: {default_value: {numerator: 100}}
      allow_private_network_access: false
      forward_not_matching_preflights: false
`},
	{desc: "a typed CORS policy of a wrong type", data: `
virtual_hosts:
- name: t
  typed_per_filter_config:
    envoy.filters.http.cors:
      "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy
      allow_methods: [GET]
`},
}

func TestUpstreamEnvoyTypes(t *testing.T) {
	files, err := filepath.Glob("testdata/envoy/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no Envoy test data: %v", err)
	}
	type input struct{ name, data string }
	var inputs []input
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, input{f, string(data)})
	}
	for _, in := range upstreamEnvoyInputs {
		inputs = append(inputs, input{in.desc, in.data})
	}
	compared, failed := 0, 0
	for _, in := range inputs {
		var raw any
		if err := yaml.Unmarshal([]byte(in.data), &raw); err != nil {
			t.Fatalf("%s: %v", in.name, err)
		}
		raw = jsonable(raw)
		for _, spelling := range []struct {
			name   string
			rename func(string) string
		}{{"as written", nil}, {"lowerCamelCase", camelName}, {"snake_case", snakeName}} {
			v := raw
			if spelling.rename != nil {
				v = renameEnvoyKeys(raw, spelling.rename)
			}
			for _, vh := range findEnvoy(v, "virtual_hosts") {
				where := fmt.Sprintf("%s (%s): virtual host %v", in.name, spelling.name, vh.(map[string]any)["name"])
				compared++
				if decodedAlike(t, where, vh, viewVirtualHost, &routev3.VirtualHost{}, upViewVirtualHost) {
					failed++
				}
			}
			for _, cp := range findEnvoy(v, "typed_per_filter_config") {
				for _, c := range cp.(map[string]any) {
					m, _ := c.(map[string]any)
					if typ, _ := m["@type"].(string); !strings.HasSuffix(typ, corsPolicyType) {
						continue
					}
					where := fmt.Sprintf("%s (%s): a typed CORS policy", in.name, spelling.name)
					compared++
					if decodedAlike(t, where, m, viewCors, &corsv3.CorsPolicy{}, upViewCors[*corsv3.CorsPolicy]) {
						failed++
					}
				}
			}
		}
	}
	t.Logf("%d compared, %d refused by both", compared, failed)
	if compared < 30 || failed < 10 {
		t.Errorf("%d objects compared, %d refused by both: the inputs no longer cover what they did", compared, failed)
	}
}

// decodedAlike decodes v with the importer's decoder into an M and with
// upstream's into up, and requires both to refuse it, or what each read
// (view, upView) to be the same: anything else is an error of t. It
// reports whether both refused v.
func decodedAlike[M any, U proto.Message, V any](t *testing.T, where string, v any, view func(*M) V, up U, upView func(U) V) (refused bool) {
	t.Helper()
	var mine M
	mineErr, upErr := decodeProtoJSON(v, &mine), upstreamEnvoy(v, up)
	switch {
	case (mineErr == nil) != (upErr == nil):
		t.Errorf("%s: the importer's decoding: %v; upstream's: %v", where, mineErr, upErr)
	case mineErr != nil:
		return true
	default:
		if got, want := view(&mine), upView(up); !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n the importer read %+v\n upstream's types %+v", where, got, want)
		}
	}
	return false
}

// upstreamEnvoy decodes v into m as the importer did with go-control-plane's
// types: the Any-typed fields left out, then protojson.
func upstreamEnvoy(v any, m proto.Message) error {
	js, err := json.Marshal(stripEnvoyAny(deepCopy(v)))
	if err != nil {
		return err
	}
	return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(js, m)
}

func deepCopy(v any) any {
	js, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(js, &out)
	return out
}

func stripEnvoyAny(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if keyEq(k, "typed_config") || keyEq(k, "typed_per_filter_config") || k == "@type" {
				delete(t, k)
				continue
			}
			t[k] = stripEnvoyAny(e)
		}
	case []any:
		for i, e := range t {
			t[i] = stripEnvoyAny(e)
		}
	}
	return v
}

// findEnvoy returns the items of every list under key (virtual_hosts) or
// the mappings under key (typed_per_filter_config), anywhere in v.
func findEnvoy(v any, key string) []any {
	var out []any
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if keyEq(k, key) {
				switch l := e.(type) {
				case []any:
					out = append(out, l...)
				case map[string]any:
					out = append(out, l)
				}
			}
			out = append(out, findEnvoy(e, key)...)
		}
	case []any:
		for _, e := range t {
			out = append(out, findEnvoy(e, key)...)
		}
	}
	return out
}

func renameEnvoyKeys(v any, rename func(string) string) any {
	switch t := v.(type) {
	case map[string]any:
		m := map[string]any{}
		for k, e := range t {
			if k != "@type" && !keyEq(k, "typed_per_filter_config") {
				k = rename(k)
			}
			if keyEq(k, "typed_per_filter_config") {
				inner := map[string]any{}
				if f, ok := e.(map[string]any); ok {
					for fk, fe := range f {
						inner[fk] = renameEnvoyKeys(fe, rename) // filter names stay as written
					}
					m[k] = inner
					continue
				}
			}
			m[k] = renameEnvoyKeys(e, rename)
		}
		return m
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = renameEnvoyKeys(e, rename)
		}
		return out
	}
	return v
}

// The views: every field the importer reads, from either decoding.
type (
	vhView struct {
		Name    string
		Domains []string
		Routes  []routeView
		Cors    *corsView
	}
	routeView struct {
		Name                                    string
		Match                                   matchView
		Route                                   bool
		Cors                                    *corsView
		Redirect, Direct, Filter, NonForwarding bool
	}
	matchView struct {
		Kind, Value           string
		Headers, Query        int
		Grpc, RuntimeFraction bool
	}
	corsView struct {
		Origins                                     []matcherView
		Methods, Headers, Expose, MaxAge            string
		Credentials, PrivateNetwork, ForwardUnmatch *bool
		Filter, Shadow                              *fractionView
	}
	matcherView struct {
		Kind, Value string
		Fold        bool
	}
	fractionView struct {
		Default     bool
		Numerator   uint32
		Denominator int32
	}
)

func viewVirtualHost(vh *envoyVirtualHost) vhView {
	v := vhView{Name: vh.Name, Domains: vh.Domains, Cors: viewCors(vh.Cors)}
	for _, r := range vh.Routes {
		rv := routeView{Name: r.Name, Route: r.Route != nil, Redirect: r.Redirect != nil, Direct: r.DirectResponse != nil, Filter: r.FilterAction != nil, NonForwarding: r.NonForwardingAction != nil}
		if r.Route != nil {
			rv.Cors = viewCors(r.Route.Cors)
		}
		if m := r.Match; m != nil {
			switch {
			case m.Prefix != nil:
				rv.Match.Kind, rv.Match.Value = "prefix", *m.Prefix
			case m.Path != nil:
				rv.Match.Kind, rv.Match.Value = "path", *m.Path
			case m.SafeRegex != nil:
				rv.Match.Kind, rv.Match.Value = "safe_regex", m.SafeRegex.Regex
			case m.ConnectMatcher != nil:
				rv.Match.Kind = "connect_matcher"
			case m.PathSeparatedPrefix != nil:
				rv.Match.Kind, rv.Match.Value = "path_separated_prefix", *m.PathSeparatedPrefix
			case m.PathMatchPolicy != nil:
				rv.Match.Kind = "path_match_policy"
			}
			rv.Match.Headers, rv.Match.Query, rv.Match.Grpc, rv.Match.RuntimeFraction = len(m.Headers), len(m.QueryParameters), m.Grpc != nil, m.RuntimeFraction != nil
		}
		v.Routes = append(v.Routes, rv)
	}
	return v
}

func upViewVirtualHost(vh *routev3.VirtualHost) vhView {
	v := vhView{Name: vh.GetName(), Domains: vh.GetDomains(), Cors: upViewCors(vh.GetCors())}
	for _, r := range vh.GetRoutes() {
		rv := routeView{Name: r.GetName(), Route: r.GetRoute() != nil, Redirect: r.GetRedirect() != nil, Direct: r.GetDirectResponse() != nil, Filter: r.GetFilterAction() != nil, NonForwarding: r.GetNonForwardingAction() != nil}
		if r.GetRoute() != nil {
			rv.Cors = upViewCors(r.GetRoute().GetCors())
		}
		if m := r.GetMatch(); m != nil {
			switch p := m.GetPathSpecifier().(type) {
			case *routev3.RouteMatch_Prefix:
				rv.Match.Kind, rv.Match.Value = "prefix", p.Prefix
			case *routev3.RouteMatch_Path:
				rv.Match.Kind, rv.Match.Value = "path", p.Path
			case *routev3.RouteMatch_SafeRegex:
				rv.Match.Kind, rv.Match.Value = "safe_regex", p.SafeRegex.GetRegex()
			case *routev3.RouteMatch_ConnectMatcher_:
				rv.Match.Kind = "connect_matcher"
			case *routev3.RouteMatch_PathSeparatedPrefix:
				rv.Match.Kind, rv.Match.Value = "path_separated_prefix", p.PathSeparatedPrefix
			case *routev3.RouteMatch_PathMatchPolicy:
				rv.Match.Kind = "path_match_policy"
			}
			rv.Match.Headers, rv.Match.Query, rv.Match.Grpc, rv.Match.RuntimeFraction = len(m.GetHeaders()), len(m.GetQueryParameters()), m.GetGrpc() != nil, m.GetRuntimeFraction() != nil
		}
		v.Routes = append(v.Routes, rv)
	}
	return v
}

func viewCors(c *envoyCorsPolicy) *corsView {
	if c == nil {
		return nil
	}
	v := &corsView{Methods: c.AllowMethods, Headers: c.AllowHeaders, Expose: c.ExposeHeaders, MaxAge: c.MaxAge,
		Credentials: c.AllowCredentials, PrivateNetwork: c.AllowPrivateNetworkAccess, ForwardUnmatch: c.ForwardNotMatchingPreflights,
		Filter: viewFraction(c.FilterEnabled), Shadow: viewFraction(c.ShadowEnabled)}
	for _, m := range c.AllowOriginStringMatch {
		mv := matcherView{Fold: m.IgnoreCase}
		switch {
		case m.Exact != nil:
			mv.Kind, mv.Value = "exact", *m.Exact
		case m.Prefix != nil:
			mv.Kind, mv.Value = "prefix", *m.Prefix
		case m.Suffix != nil:
			mv.Kind, mv.Value = "suffix", *m.Suffix
		case m.Contains != nil:
			mv.Kind, mv.Value = "contains", *m.Contains
		case m.SafeRegex != nil:
			mv.Kind, mv.Value = "safe_regex", m.SafeRegex.Regex
		case m.Custom != nil:
			mv.Kind = "custom"
		}
		v.Origins = append(v.Origins, mv)
	}
	return v
}

// upstreamCors is what both of go-control-plane's CorsPolicy messages
// have.
type upstreamCors interface {
	GetAllowOriginStringMatch() []*matcherv3.StringMatcher
	GetAllowMethods() string
	GetAllowHeaders() string
	GetExposeHeaders() string
	GetMaxAge() string
	GetAllowCredentials() *wrapperspb.BoolValue
	GetAllowPrivateNetworkAccess() *wrapperspb.BoolValue
	GetForwardNotMatchingPreflights() *wrapperspb.BoolValue
}

func upViewCors[C interface {
	upstreamCors
	comparable
}](c C) *corsView {
	var zero C
	if c == zero {
		return nil
	}
	v := &corsView{Methods: c.GetAllowMethods(), Headers: c.GetAllowHeaders(), Expose: c.GetExposeHeaders(), MaxAge: c.GetMaxAge(),
		Credentials: boolValue(c.GetAllowCredentials()), PrivateNetwork: boolValue(c.GetAllowPrivateNetworkAccess()), ForwardUnmatch: boolValue(c.GetForwardNotMatchingPreflights())}
	switch u := any(c).(type) {
	case *routev3.CorsPolicy:
		v.Filter, v.Shadow = upViewFraction(u.GetFilterEnabled().GetDefaultValue(), u.GetFilterEnabled() != nil), upViewFraction(u.GetShadowEnabled().GetDefaultValue(), u.GetShadowEnabled() != nil)
	case *corsv3.CorsPolicy:
		v.Filter, v.Shadow = upViewFraction(u.GetFilterEnabled().GetDefaultValue(), u.GetFilterEnabled() != nil), upViewFraction(u.GetShadowEnabled().GetDefaultValue(), u.GetShadowEnabled() != nil)
	}
	for _, m := range c.GetAllowOriginStringMatch() {
		mv := matcherView{Fold: m.GetIgnoreCase()}
		switch p := m.GetMatchPattern().(type) {
		case *matcherv3.StringMatcher_Exact:
			mv.Kind, mv.Value = "exact", p.Exact
		case *matcherv3.StringMatcher_Prefix:
			mv.Kind, mv.Value = "prefix", p.Prefix
		case *matcherv3.StringMatcher_Suffix:
			mv.Kind, mv.Value = "suffix", p.Suffix
		case *matcherv3.StringMatcher_Contains:
			mv.Kind, mv.Value = "contains", p.Contains
		case *matcherv3.StringMatcher_SafeRegex:
			mv.Kind, mv.Value = "safe_regex", p.SafeRegex.GetRegex()
		case *matcherv3.StringMatcher_Custom:
			mv.Kind = "custom"
		}
		v.Origins = append(v.Origins, mv)
	}
	return v
}

func viewFraction(f *envoyRuntimeFraction) *fractionView {
	if f == nil {
		return nil
	}
	v := &fractionView{}
	if d := f.DefaultValue; d != nil {
		v.Default, v.Numerator, v.Denominator = true, d.Numerator, int32(d.Denominator)
	}
	return v
}

func upViewFraction(d *typev3.FractionalPercent, set bool) *fractionView {
	if !set {
		return nil
	}
	v := &fractionView{}
	if d != nil {
		v.Default, v.Numerator, v.Denominator = true, d.GetNumerator(), int32(d.GetDenominator())
	}
	return v
}

func boolValue(b *wrapperspb.BoolValue) *bool {
	if b == nil {
		return nil
	}
	v := b.GetValue()
	return &v
}

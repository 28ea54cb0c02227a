package importer

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	securityv1beta1 "istio.io/api/security/v1beta1"

	"github.com/corsauthz/corsauthz/importer/internal/regexorigin"
)

// Istio: VirtualService corsPolicy (any of networking.istio.io v1,
// v1beta1, v1alpha3: one schema), decoded with istio.io/api's own types;
// AuthorizationPolicy objects in the same input are checked for ALLOW
// rules on OPTIONS. Istio hands corsPolicy to Envoy's CORS filter: exact
// and prefix origins are compared case-sensitively, regexes are RE2 full
// matches, and preflights from other origins go on to the service unless
// unmatchedPreflights is IGNORE.
func importIstio(b *builder, docs []*doc) error {
	for _, d := range docs {
		group, _, _ := strings.Cut(d.apiVersion, "/")
		switch {
		case group == "networking.istio.io" && d.kind == "VirtualService":
			var vs networkingv1alpha3.VirtualService
			if err := decodeSpec(d, &vs); err != nil {
				return err
			}
			istioVirtualService(b, d, &vs)
		case group == "security.istio.io" && d.kind == "AuthorizationPolicy":
			var ap securityv1beta1.AuthorizationPolicy
			if err := decodeSpec(d, &ap); err != nil {
				return err
			}
			istioAuthorizationPolicy(b, d, &ap)
		default:
			b.note(d.pos(nil), "skipped %s (%s): the istio importer reads VirtualService and AuthorizationPolicy", d.ref(), d.apiVersion)
		}
	}
	return nil
}

// decodeSpec decodes an object's spec with protojson, as Istio does;
// fields this version of the API does not know are ignored.
func decodeSpec(d *doc, m proto.Message) error {
	spec := lookupExact(d.root, "spec")
	if spec == nil {
		return nil
	}
	var raw any
	err := spec.Decode(&raw)
	var js []byte
	if err == nil {
		js, err = json.Marshal(goDurations(jsonable(raw)))
	}
	if err != nil {
		return &ParseError{Pos: d.pos(spec), Message: fmt.Sprintf("%s: spec: %v", d.ref(), err)}
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(js, m); err != nil {
		return &ParseError{Pos: d.pos(spec), Message: fmt.Sprintf("%s: spec does not decode as %s: %v", d.ref(), m.ProtoReflect().Descriptor().FullName(), err)}
	}
	return nil
}

func istioVirtualService(b *builder, d *doc, vs *networkingv1alpha3.VirtualService) {
	for i, route := range vs.GetHttp() {
		cp := route.GetCorsPolicy()
		if cp == nil {
			continue
		}
		at := func(path ...any) Pos { return d.at(append([]any{"spec", "http", i, "corsPolicy"}, path...)...) }
		source := fmt.Sprintf("%s, http[%d]", d.ref(), i)
		if route.GetName() != "" {
			source = fmt.Sprintf("%s, http route %q", d.ref(), route.GetName())
		}
		dr := b.draft(source, at(), cp.GetAllowCredentials().GetValue())
		for j, m := range cp.GetAllowOrigins() {
			switch t := m.GetMatchType().(type) {
			case *networkingv1alpha3.StringMatch_Exact:
				dr.exact(at("allowOrigins", j, "exact"), t.Exact, false)
			case *networkingv1alpha3.StringMatch_Prefix:
				dr.matcher(at("allowOrigins", j, "prefix"), "prefix", t.Prefix, false)
			case *networkingv1alpha3.StringMatch_Regex:
				dr.regex(at("allowOrigins", j, "regex"), t.Regex, regexorigin.Options{Anchor: regexorigin.Full}, "regex")
			default:
				dr.find(at("allowOrigins", j), Unsupported, "an origin matcher with no exact, prefix or regex matches nothing: remove it")
			}
		}
		if len(cp.GetAllowOrigin()) > 0 {
			dr.find(at("allowOrigin"), Unsupported, "the deprecated field allowOrigin is ignored by Istio (since 1.6): its origins %s are not imported; write them under allowOrigins as exact matches", quoteList(cp.GetAllowOrigin(), 4))
		}
		dr.methodList(at("allowMethods"), cp.GetAllowMethods())
		dr.headerList(at("allowHeaders"), cp.GetAllowHeaders())
		dr.exposeList(at("exposeHeaders"), cp.GetExposeHeaders())
		if ma := cp.GetMaxAge(); ma != nil {
			dr.maxAgeSeconds(at("maxAge"), ma.GetSeconds())
		}
		if cp.GetUnmatchedPreflights() != networkingv1alpha3.CorsPolicy_IGNORE && !dr.anyOrigin {
			dr.find(at("unmatchedPreflights"), Unsafe, "preflights from origins it does not admit go on to the service (unmatchedPreflights FORWARD, Istio's default), whose own CORS answer may allow them; corsauthz answers them 403 itself")
		}

		r := dr.routing()
		for k, h := range vs.GetHosts() {
			r.host(d.at("spec", "hosts", k), h)
		}
		if len(route.GetMatch()) == 0 {
			r.anyPath = true
		}
		for k, m := range route.GetMatch() {
			mat := func(path ...any) Pos { return d.at(append([]any{"spec", "http", i, "match", k}, path...)...) }
			switch u := m.GetUri().GetMatchType().(type) {
			case nil:
				r.anyPath = true
			case *networkingv1alpha3.StringMatch_Prefix:
				r.prefix(mat("uri", "prefix"), u.Prefix, false)
			case *networkingv1alpha3.StringMatch_Exact:
				r.exact(mat("uri", "exact"), u.Exact)
			case *networkingv1alpha3.StringMatch_Regex:
				r.unsupported(mat("uri", "regex"), fmt.Sprintf("the uri regex %q", u.Regex))
			}
			var other []string
			if m.GetMethod() != nil {
				other = append(other, "method")
			}
			if len(m.GetHeaders()) > 0 || len(m.GetWithoutHeaders()) > 0 {
				other = append(other, "headers")
			}
			if len(m.GetQueryParams()) > 0 {
				other = append(other, "queryParams")
			}
			if m.GetAuthority() != nil {
				other = append(other, "authority")
			}
			if m.GetPort() != 0 {
				other = append(other, "port")
			}
			if len(other) > 0 {
				dr.find(mat(), Changed, "the route also matches on %s, which a corsauthz match cannot say: the policy applies to every request to these hosts and paths", strings.Join(other, ", "))
			}
		}
		dr.emit(b.nameParts(d, route.GetName(), fmt.Sprintf("http%d", i)), r.match())
	}
}

// nameParts makes a policy name from an object and a part of it.
func (b *builder) nameParts(d *doc, part, fallback string) string {
	if part == "" {
		part = fallback
	}
	return strings.Join([]string{d.namespace, d.name, part}, "-")
}

func istioAuthorizationPolicy(b *builder, d *doc, ap *securityv1beta1.AuthorizationPolicy) {
	if ap.GetAction() != securityv1beta1.AuthorizationPolicy_ALLOW {
		return
	}
	for i, rule := range ap.GetRules() {
		for j, to := range rule.GetTo() {
			methods := to.GetOperation().GetMethods()
			k := slices.Index(methods, "OPTIONS")
			if k < 0 {
				continue
			}
			who := "from any source"
			if len(rule.GetFrom()) > 0 || len(rule.GetWhen()) > 0 {
				who = "from the sources and conditions it lists"
			}
			b.find(d.at("spec", "rules", i, "to", j, "operation", "methods", k), Unsafe,
				"%s: rules[%d] ALLOWs OPTIONS requests %s without any other check (istio#31335): it lets every origin's preflight, and any OPTIONS request, through authorization; corsauthz answers preflights itself before authorization, so remove OPTIONS from this rule", d.ref(), i, who)
		}
	}
}

// goDurations rewrites durations written as Go writes them ("24h",
// "1m30s"), which Istio accepts, into the seconds protojson reads.
func goDurations(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = goDurations(e)
		}
	case []any:
		for i, e := range t {
			t[i] = goDurations(e)
		}
	case string:
		if d, err := time.ParseDuration(t); err == nil && strings.ContainsAny(strings.TrimSuffix(t, "s"), "hmuµn") {
			return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
		}
	}
	return v
}

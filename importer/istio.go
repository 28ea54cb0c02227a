package importer

import (
	"fmt"
	"slices"
	"strings"

	"github.com/corsauthz/corsauthz/importer/internal/regexorigin"
)

// Istio: VirtualService corsPolicy (any of networking.istio.io v1,
// v1beta1, v1alpha3: one schema), decoded as istio.io/api's types are
// (istiotypes.go);
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
			var vs istioVirtualServiceSpec
			if err := decodeSpec(d, &vs, virtualServiceName); err != nil {
				return err
			}
			istioVirtualService(b, d, &vs)
		case group == "security.istio.io" && d.kind == "AuthorizationPolicy":
			var ap istioAuthorizationPolicySpec
			if err := decodeSpec(d, &ap, authorizationPolicyName); err != nil {
				return err
			}
			istioAuthorizationPolicy(b, d, &ap)
		default:
			b.note(d.pos(nil), "skipped %s (%s): the istio importer reads VirtualService and AuthorizationPolicy", d.ref(), d.apiVersion)
		}
	}
	return nil
}

// decodeSpec decodes an object's spec as protojson does, as Istio does
// (decodeProtoJSON); fields this version of the API does not know are
// ignored.
func decodeSpec(d *doc, spec any, message string) error {
	n := lookupExact(d.root, "spec")
	if n == nil {
		return nil
	}
	var raw any
	if err := n.Decode(&raw); err != nil {
		return &ParseError{Pos: d.pos(n), Message: fmt.Sprintf("%s: spec: %v", d.ref(), err)}
	}
	if err := decodeProtoJSON(jsonable(raw), spec); err != nil {
		return &ParseError{Pos: d.pos(n), Message: fmt.Sprintf("%s: spec does not decode as %s: %v", d.ref(), message, err)}
	}
	return nil
}

func istioVirtualService(b *builder, d *doc, vs *istioVirtualServiceSpec) {
	for i, route := range vs.Http {
		cp := route.CorsPolicy
		if cp == nil {
			continue
		}
		at := func(path ...any) Pos { return d.at(append([]any{"spec", "http", i, "corsPolicy"}, path...)...) }
		source := fmt.Sprintf("%s, http[%d]", d.ref(), i)
		if route.Name != "" {
			source = fmt.Sprintf("%s, http route %q", d.ref(), route.Name)
		}
		dr := b.draft(source, at(), cp.AllowCredentials != nil && *cp.AllowCredentials)
		for j, m := range cp.AllowOrigins {
			switch {
			case m.Exact != nil:
				dr.exact(at("allowOrigins", j, "exact"), *m.Exact, false)
			case m.Prefix != nil:
				dr.matcher(at("allowOrigins", j, "prefix"), "prefix", *m.Prefix, false)
			case m.Regex != nil:
				dr.regex(at("allowOrigins", j, "regex"), *m.Regex, regexorigin.Options{Anchor: regexorigin.Full}, "regex")
			default:
				dr.find(at("allowOrigins", j), Unsupported, "an origin matcher with no exact, prefix or regex matches nothing: remove it")
			}
		}
		if len(cp.AllowOrigin) > 0 {
			dr.find(at("allowOrigin"), Unsupported, "the deprecated field allowOrigin is ignored by Istio (since 1.6): its origins %s are not imported; write them under allowOrigins as exact matches", quoteList(cp.AllowOrigin, 4))
		}
		dr.methodList(at("allowMethods"), cp.AllowMethods)
		dr.headerList(at("allowHeaders"), cp.AllowHeaders)
		dr.exposeList(at("exposeHeaders"), cp.ExposeHeaders)
		if ma := cp.MaxAge; ma != nil {
			dr.maxAgeSeconds(at("maxAge"), ma.Seconds)
		}
		if cp.UnmatchedPreflights != unmatchedPreflightsIgnore && !dr.anyOrigin {
			dr.find(at("unmatchedPreflights"), Unsafe, "preflights from origins it does not admit go on to the service (unmatchedPreflights FORWARD, Istio's default), whose own CORS answer may allow them; corsauthz answers them 403 itself")
		}

		r := dr.routing()
		for k, h := range vs.Hosts {
			r.host(d.at("spec", "hosts", k), h)
		}
		if len(route.Match) == 0 {
			r.anyPath = true
		}
		for k, m := range route.Match {
			mat := func(path ...any) Pos { return d.at(append([]any{"spec", "http", i, "match", k}, path...)...) }
			u := m.Uri
			switch {
			case u == nil || u.Exact == nil && u.Prefix == nil && u.Regex == nil:
				r.anyPath = true
			case u.Prefix != nil:
				r.prefix(mat("uri", "prefix"), *u.Prefix, false)
			case u.Exact != nil:
				r.exact(mat("uri", "exact"), *u.Exact)
			case u.Regex != nil:
				r.unsupported(mat("uri", "regex"), fmt.Sprintf("the uri regex %q", *u.Regex))
			}
			var other []string
			if m.Method != nil {
				other = append(other, "method")
			}
			if len(m.Headers) > 0 || len(m.WithoutHeaders) > 0 {
				other = append(other, "headers")
			}
			if len(m.QueryParams) > 0 {
				other = append(other, "queryParams")
			}
			if m.Authority != nil {
				other = append(other, "authority")
			}
			if m.Port != 0 {
				other = append(other, "port")
			}
			if len(other) > 0 {
				dr.find(mat(), Changed, "the route also matches on %s, which a corsauthz match cannot say: the policy applies to every request to these hosts and paths", strings.Join(other, ", "))
			}
		}
		dr.emit(b.nameParts(d, route.Name, fmt.Sprintf("http%d", i)), r.match())
	}
}

// nameParts makes a policy name from an object and a part of it.
func (b *builder) nameParts(d *doc, part, fallback string) string {
	if part == "" {
		part = fallback
	}
	return strings.Join([]string{d.namespace, d.name, part}, "-")
}

func istioAuthorizationPolicy(b *builder, d *doc, ap *istioAuthorizationPolicySpec) {
	if ap.Action != actionAllow {
		return
	}
	for i, rule := range ap.Rules {
		for j, to := range rule.To {
			if to.Operation == nil {
				continue
			}
			k := slices.Index(to.Operation.Methods, "OPTIONS")
			if k < 0 {
				continue
			}
			who := "from any source"
			if len(rule.From) > 0 || len(rule.When) > 0 {
				who = "from the sources and conditions it lists"
			}
			b.find(d.at("spec", "rules", i, "to", j, "operation", "methods", k), Unsafe,
				"%s: rules[%d] ALLOWs OPTIONS requests %s without any other check (istio#31335): it lets every origin's preflight, and any OPTIONS request, through authorization; corsauthz answers preflights itself before authorization, so remove OPTIONS from this rule", d.ref(), i, who)
		}
	}
}

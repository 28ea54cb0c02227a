package importer

import (
	"fmt"
	"strings"
	"time"

	"github.com/corsauthz/corsauthz/policy"
)

// Envoy Gateway: SecurityPolicy cors, plus the HTTPRoutes in the same
// input (for the hosts and paths of the routes a policy targets, and for
// their own CORS filters, which Envoy Gateway lets take precedence).
//
// Envoy Gateway's Go types (github.com/envoyproxy/gateway/api/v1alpha1)
// live in a module that brings the whole controller's dependencies, so
// this parser decodes the few fields it reads into the small structs
// below, named and typed as Envoy Gateway's CORS and target references
// are (see docs/import.md). Envoy Gateway turns each origin with a "*" into an RE2
// expression where "*" is ".*" and everything else literal, and sets
// forward_not_matching_preflights to false; over the origins a browser
// sends, that is exactly GEP-1767's and corsauthz's "one or more labels".
type egSecurityPolicy struct {
	Spec struct {
		TargetRef       *egTargetRef  `json:"targetRef"`
		TargetRefs      []egTargetRef `json:"targetRefs"`
		TargetSelectors []any         `json:"targetSelectors"`
		CORS            *egCORS       `json:"cors"`
	} `json:"spec"`
}

type egTargetRef struct {
	Group       string  `json:"group"`
	Kind        string  `json:"kind"`
	Name        string  `json:"name"`
	SectionName *string `json:"sectionName"`
}

type egCORS struct {
	AllowOrigins     []string `json:"allowOrigins"`
	AllowMethods     []string `json:"allowMethods"`
	AllowHeaders     []string `json:"allowHeaders"`
	ExposeHeaders    []string `json:"exposeHeaders"`
	MaxAge           *string  `json:"maxAge"`
	AllowCredentials *bool    `json:"allowCredentials"`
}

type egRoute struct {
	d    *doc
	spec httpRouteSpec
}

func importEnvoyGateway(b *builder, docs []*doc) error {
	routes := map[string]*egRoute{} // namespace/name
	var policies []*doc
	for _, d := range docs {
		group, _, _ := strings.Cut(d.apiVersion, "/")
		switch {
		case group == "gateway.networking.k8s.io" && d.kind == "HTTPRoute":
			var route httpRoute
			if err := decodeNode(d.root, &route); err != nil {
				return &ParseError{Pos: d.pos(nil), Message: fmt.Sprintf("%s does not decode as an HTTPRoute: %v", d.ref(), err)}
			}
			routes[d.namespace+"/"+d.name] = &egRoute{d: d, spec: route.Spec}
		case group == "gateway.envoyproxy.io" && d.kind == "SecurityPolicy":
			policies = append(policies, d)
		default:
			b.note(d.pos(nil), "skipped %s (%s): the envoy-gateway importer reads SecurityPolicy and HTTPRoute", d.ref(), d.apiVersion)
		}
	}
	targeted := map[*egRoute]bool{}
	for _, d := range policies {
		var sp egSecurityPolicy
		if err := decodeNode(d.root, &sp); err != nil {
			return &ParseError{Pos: d.pos(nil), Message: fmt.Sprintf("%s does not decode as a SecurityPolicy: %v", d.ref(), err)}
		}
		c := sp.Spec.CORS
		if c == nil {
			continue
		}
		refs := sp.Spec.TargetRefs
		refsKey := "targetRefs"
		if sp.Spec.TargetRef != nil {
			refs = append([]egTargetRef{*sp.Spec.TargetRef}, refs...)
			refsKey = "targetRef"
		}
		newDraft := func(source string) *draft { return envoyGatewayCORS(b, d, source, c) }
		if len(sp.Spec.TargetSelectors) > 0 {
			dr := newDraft(d.ref() + " (targetSelectors)")
			dr.find(d.at("spec", "targetSelectors"), Unsupported, "targetSelectors pick routes by label, which corsauthz cannot see: the policy is emitted without a match; select it with the cors_policy context extension, or give the routes' names in targetRefs")
			dr.emit(b.nameParts(d, "selectors", ""), dr.routing().matchBroken())
		}
		for i, ref := range refs {
			refAt := d.at("spec", refsKey, i)
			if refsKey == "targetRef" && i == 0 {
				refAt = d.at("spec", "targetRef")
			}
			switch ref.Kind {
			case "HTTPRoute":
				route := routes[d.namespace+"/"+ref.Name]
				if route == nil {
					dr := newDraft(fmt.Sprintf("%s for HTTPRoute %s", d.ref(), ref.Name))
					dr.find(refAt, Unsupported, "it targets HTTPRoute %q, which is not in the input: the policy is emitted without a match; pass the route's YAML too, or select the policy with the cors_policy context extension", ref.Name)
					dr.emit(b.nameParts(d, ref.Name, ""), dr.routing().matchBroken())
					continue
				}
				targeted[route] = true
				n := importHTTPRoute(b, route.d, &route.spec, func(source string, rule int) *draft {
					return newDraft(fmt.Sprintf("%s applied to %s", d.ref(), source))
				}, d.name)
				if n == 0 {
					b.note(refAt, "%s: HTTPRoute %s has no rules", d.ref(), ref.Name)
				}
			case "Gateway", "ListenerSet", "XListenerSet":
				dr := newDraft(fmt.Sprintf("%s for %s %s", d.ref(), ref.Kind, ref.Name))
				dr.find(refAt, Changed, "it targets %s %q, so it applies to every route of it: imported as the policy for every host and path (path prefix \"/\"); routes with their own CORS filter or policy keep theirs by their longer match", ref.Kind, ref.Name)
				r := dr.routing()
				r.anyHost, r.anyPath = true, true
				dr.emit(b.nameParts(d, ref.Name, ""), r.match())
			default:
				b.note(refAt, "%s: target kind %q is not one the importer follows", d.ref(), ref.Kind)
			}
		}
	}
	// HTTPRoutes no policy targets still carry their own CORS filters.
	for _, d := range docs {
		route := routes[d.namespace+"/"+d.name]
		if route == nil || route.d != d || targeted[route] {
			continue
		}
		importHTTPRoute(b, d, &route.spec, nil, "")
	}
	return nil
}

func envoyGatewayCORS(b *builder, d *doc, source string, c *egCORS) *draft {
	at := func(p ...any) Pos { return d.at(append([]any{"spec", "cors"}, p...)...) }
	dr := b.draft(source, at(), c.AllowCredentials != nil && *c.AllowCredentials)
	for j, o := range c.AllowOrigins {
		if o == "*" {
			dr.anyOriginAllowed(at("allowOrigins", j), `allowOrigins "*"`, true)
			continue
		}
		wildcardOrigin(dr, at("allowOrigins", j), o)
	}
	dr.methodList(at("allowMethods"), c.AllowMethods)
	dr.headerList(at("allowHeaders"), c.AllowHeaders)
	dr.exposeList(at("exposeHeaders"), c.ExposeHeaders)
	if c.MaxAge != nil {
		if dur, err := time.ParseDuration(*c.MaxAge); err == nil {
			dr.maxAgeSeconds(at("maxAge"), int64(dur/time.Second))
		} else {
			dr.comment("maxAge %q dropped: Envoy Gateway ignores a value it cannot parse", *c.MaxAge)
		}
	}
	return dr
}

// matchBroken is the match of a policy whose routing cannot be said.
func (r *routing) matchBroken() policy.Match {
	r.broken = true
	return r.match()
}

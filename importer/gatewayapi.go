package importer

import (
	"fmt"
	"strings"
)

// Gateway API: HTTPRoute rules with a CORS filter (GEP-1767, Standard
// channel since v1.5), decoded as sigs.k8s.io/gateway-api's apis/v1 types (kube.go).
// The GEP's origins are corsauthz's: exact origins and "scheme://*.domain"
// patterns whose "*" stands for one or more labels; "*" alone is any
// origin, echoed back when credentials are on.
func importGatewayAPI(b *builder, docs []*doc) error {
	for _, d := range docs {
		group, _, _ := strings.Cut(d.apiVersion, "/")
		if group != "gateway.networking.k8s.io" || d.kind != "HTTPRoute" {
			b.note(d.pos(nil), "skipped %s (%s): the gateway-api importer reads HTTPRoute", d.ref(), d.apiVersion)
			continue
		}
		var route httpRoute
		if err := decodeNode(d.root, &route); err != nil {
			return &ParseError{Pos: d.pos(nil), Message: fmt.Sprintf("%s does not decode as an HTTPRoute: %v", d.ref(), err)}
		}
		importHTTPRoute(b, d, &route.Spec, nil, "")
	}
	return nil
}

// importHTTPRoute imports the CORS filters of one HTTPRoute. When override
// is set (an Envoy Gateway SecurityPolicy targets the route), rules
// without a CORS filter of their own get it: the route's filter takes
// precedence over the SecurityPolicy's, as in Envoy Gateway.
func importHTTPRoute(b *builder, d *doc, spec *httpRouteSpec, override func(source string, rule int) *draft, namePrefix string) int {
	n := 0
	for i, rule := range spec.Rules {
		var dr *draft
		var filterPath []any
		for j, f := range rule.Filters {
			if f.Type == filterCORS && f.CORS != nil {
				filterPath = []any{"spec", "rules", i, "filters", j, "cors"}
				source := fmt.Sprintf("%s, rules[%d] CORS filter", d.ref(), i)
				if rule.Name != nil {
					source = fmt.Sprintf("%s, rule %q CORS filter", d.ref(), *rule.Name)
				}
				dr = gatewayCORS(b, d, source, filterPath, f.CORS)
			}
		}
		for j, br := range rule.BackendRefs {
			for k, f := range br.Filters {
				if f.Type == filterCORS {
					b.note(d.at("spec", "rules", i, "backendRefs", j, "filters", k), "%s: a CORS filter on a backendRef is not imported: move it to the rule", d.ref())
				}
			}
		}
		if dr == nil && override != nil {
			dr = override(fmt.Sprintf("%s, rules[%d]", d.ref(), i), i)
		}
		if dr == nil {
			continue
		}
		r := dr.routing()
		for k, h := range spec.Hostnames {
			r.host(d.at("spec", "hostnames", k), h)
		}
		if len(rule.Matches) == 0 {
			r.anyPath = true
		}
		for k, m := range rule.Matches {
			mat := func(path ...any) Pos { return d.at(append([]any{"spec", "rules", i, "matches", k}, path...)...) }
			switch {
			case m.Path == nil || m.Path.Value == nil:
				r.anyPath = true
			case m.Path.Type == nil || *m.Path.Type == pathMatchPathPrefix:
				r.prefix(mat("path", "value"), *m.Path.Value, true)
			case *m.Path.Type == pathMatchExact:
				r.exact(mat("path", "value"), *m.Path.Value)
			default:
				r.unsupported(mat("path"), fmt.Sprintf("the %s path match %q", *m.Path.Type, *m.Path.Value))
			}
			var other []string
			if len(m.Headers) > 0 {
				other = append(other, "headers")
			}
			if len(m.QueryParams) > 0 {
				other = append(other, "queryParams")
			}
			if m.Method != nil {
				other = append(other, "method")
			}
			if len(other) > 0 {
				dr.find(mat(), Changed, "the rule also matches on %s, which a corsauthz match cannot say: the policy applies to every request to these hosts and paths", strings.Join(other, ", "))
			}
		}
		part := fmt.Sprintf("rule%d", i)
		if rule.Name != nil {
			part = *rule.Name
		}
		dr.emit(strings.Trim(namePrefix+"-"+b.nameParts(d, part, ""), "-"), r.match())
		n++
	}
	return n
}

// gatewayCORS reads one HTTPCORSFilter at path.
func gatewayCORS(b *builder, d *doc, source string, path []any, c *httpCORSFilter) *draft {
	at := func(p ...any) Pos { return d.at(append(append([]any{}, path...), p...)...) }
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
	maxAge := int64(c.MaxAge)
	if maxAge == 0 {
		maxAge = 5 // the API's default
	}
	dr.maxAgeSeconds(at("maxAge"), maxAge)
	return dr
}

// wildcardOrigin adds an origin of the GEP-1767 / Envoy Gateway syntax:
// exact, "scheme://*.domain" (one or more labels, as in corsauthz), or
// "scheme://*" (every host of that scheme).
func wildcardOrigin(dr *draft, at Pos, s string) {
	scheme, rest, ok := strings.Cut(s, "://")
	if ok && (rest == "*" || strings.HasPrefix(rest, "*:")) {
		kind := Unsupported
		if dr.creds {
			kind = Unsafe
		}
		dr.find(at, kind, "origin %q admits every %s site, such as %q; corsauthz cannot say \"any %s origin\": not imported; list the origins, or use \"*\" without credentials", s, scheme, scheme+"://evil.example", scheme)
		return
	}
	dr.exactOrigin(at, s, false, "")
}

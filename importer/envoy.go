package importer

import (
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/corsauthz/corsauthz/importer/internal/regexorigin"
)

// Envoy: virtual hosts and routes anywhere in the input (a bootstrap's
// static listeners, a RouteConfiguration, an xDS dump), decoded into the
// structs of envoytypes.go as protojson decodes go-control-plane's types.
// The CORS policy of a route is resolved as
// Envoy's CORS filter resolves it: the typed_per_filter_config
// envoy.extensions.filters.http.cors.v3.CorsPolicy of the route, then of
// its virtual host, then of its route configuration, each field taken from
// the first that sets it; only when none is set, the deprecated cors
// fields of the route action and the virtual host. Whether the filter is
// enabled comes from the first policy alone. Any matcher that matches the
// string "*" allows every origin, which Envoy echoes back.

// envoyPolicy is one CorsPolicy and where it is written.
type envoyPolicy struct {
	cors *envoyCorsPolicy
	node *yaml.Node
}

const corsPolicyType = "envoy.extensions.filters.http.cors.v3.CorsPolicy"

func importEnvoy(b *builder, docs []*doc) error {
	for _, d := range docs {
		w := &envoyWalk{b: b, d: d}
		if err := w.walk(d.root, nil, nil); err != nil {
			return err
		}
		if w.vhosts == 0 {
			b.note(d.pos(nil), "no virtual_hosts in this document: nothing to import from it")
		}
	}
	return nil
}

type envoyWalk struct {
	b      *builder
	d      *doc
	vhosts int
}

// hcm is what the importer knows of the HTTP connection manager a route
// configuration sits in.
type hcm struct {
	node    *yaml.Node
	hasCors bool
}

// walk finds route configurations (mappings with virtual_hosts) under n,
// remembering the connection manager (a mapping with http_filters) they
// sit in.
func (w *envoyWalk) walk(n *yaml.Node, h *hcm, depthGuard []bool) error {
	n = resolve(n)
	if n == nil || len(depthGuard) > 64 {
		return nil
	}
	switch n.Kind {
	case yaml.MappingNode:
		if filters := child(n, "http_filters"); filters != nil {
			h = &hcm{node: n}
			if filters.Kind == yaml.SequenceNode {
				for _, f := range filters.Content {
					name := scalar(child(f, "name"))
					typ := scalar(child(child(f, "typed_config"), "@type"))
					if name == "envoy.filters.http.cors" || name == "envoy.cors" || strings.HasSuffix(typ, "envoy.extensions.filters.http.cors.v3.Cors") {
						h.hasCors = true
					}
				}
			}
		}
		if vhosts := child(n, "virtual_hosts"); vhosts != nil && vhosts.Kind == yaml.SequenceNode {
			for i, vh := range vhosts.Content {
				if err := w.virtualHost(n, resolve(vh), i, h); err != nil {
					return err
				}
			}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if keyEq(n.Content[i].Value, "virtual_hosts") {
				continue
			}
			if err := w.walk(n.Content[i+1], h, append(depthGuard, true)); err != nil {
				return err
			}
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			if err := w.walk(c, h, append(depthGuard, true)); err != nil {
				return err
			}
		}
	}
	return nil
}

// decodeEnvoy decodes n into m (a struct of envoytypes.go) as protojson
// decodes message, leaving out the fields m does not hold: among them the
// Any-typed ones (typed_config, typed_per_filter_config), whose types the
// importer need not know; the CORS ones are read on their own.
func (w *envoyWalk) decodeEnvoy(n *yaml.Node, m any, what, message string) error {
	var raw any
	if err := n.Decode(&raw); err != nil {
		return &ParseError{Pos: w.d.pos(n), Message: fmt.Sprintf("%s: %v", what, err)}
	}
	if err := decodeProtoJSON(jsonable(raw), m); err != nil {
		return &ParseError{Pos: w.d.pos(n), Message: fmt.Sprintf("%s does not decode as %s: %v", what, message, err)}
	}
	return nil
}

// typedCors returns the CORS filter's per-route config in a
// typed_per_filter_config mapping, if there is one.
func (w *envoyWalk) typedCors(owner *yaml.Node) (*envoyPolicy, error) {
	tpfc := child(owner, "typed_per_filter_config")
	if tpfc == nil || tpfc.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(tpfc.Content); i += 2 {
		v := resolve(tpfc.Content[i+1])
		typ := scalar(child(v, "@type"))
		if strings.HasSuffix(typ, "envoy.config.route.v3.FilterConfig") {
			v = child(v, "config")
			typ = scalar(child(v, "@type"))
		}
		if !strings.HasSuffix(typ, "/"+corsPolicyType) && typ != corsPolicyType {
			continue
		}
		cp := &envoyCorsPolicy{}
		if err := w.decodeEnvoy(v, cp, corsPolicyType, corsPolicyType); err != nil {
			return nil, err
		}
		return &envoyPolicy{cors: cp, node: v}, nil
	}
	return nil, nil
}

func (w *envoyWalk) virtualHost(rc, vhn *yaml.Node, index int, h *hcm) error {
	w.vhosts++
	vh := &envoyVirtualHost{}
	if err := w.decodeEnvoy(vhn, vh, "virtual host", virtualHostName); err != nil {
		return err
	}
	vhName := vh.Name
	if vhName == "" {
		vhName = fmt.Sprintf("virtual_hosts[%d]", index)
	}
	rcPolicy, err := w.typedCors(rc)
	if err != nil {
		return err
	}
	vhPolicy, err := w.typedCors(vhn)
	if err != nil {
		return err
	}
	routes := child(vhn, "routes")
	type group struct {
		key      string
		policies []envoyPolicy
		routes   []int
	}
	var groups []*group
	for i, route := range vh.Routes {
		if route.Route == nil {
			continue // redirects and direct responses never reach the CORS filter's answer
		}
		rn := child(routes, i)
		routePolicy, err := w.typedCors(rn)
		if err != nil {
			return err
		}
		var list []envoyPolicy
		for _, p := range []*envoyPolicy{routePolicy, vhPolicy, rcPolicy} {
			if p != nil {
				list = append(list, *p)
			}
		}
		if len(list) == 0 {
			// Only without any typed config are the deprecated fields read.
			if c := route.Route.Cors; c != nil {
				list = append(list, envoyPolicy{cors: c, node: child(child(rn, "route"), "cors")})
			}
			if c := vh.Cors; c != nil {
				list = append(list, envoyPolicy{cors: c, node: child(vhn, "cors")})
			}
		}
		if len(list) == 0 {
			continue
		}
		key := ""
		for _, p := range list {
			key += fmt.Sprintf("%p,", p.node)
		}
		var g *group
		for _, x := range groups {
			if x.key == key {
				g = x
			}
		}
		if g == nil {
			g = &group{key: key, policies: list}
			groups = append(groups, g)
		}
		g.routes = append(g.routes, i)
	}
	for _, g := range groups {
		source := fmt.Sprintf("virtual host %q", vhName)
		if len(g.routes) == 1 && vh.Routes[g.routes[0]].Name != "" {
			source += fmt.Sprintf(", route %q", vh.Routes[g.routes[0]].Name)
		} else if len(g.routes) < len(vh.Routes) {
			source += fmt.Sprintf(", routes %v", g.routes)
		}
		dr, ok := w.corsDraft(source, g.policies, w.d.pos(vhn))
		if !ok {
			continue
		}
		if h != nil && !h.hasCors {
			dr.find(w.d.pos(vhn), Changed, "the connection manager has no envoy.filters.http.cors in its http_filters, so Envoy ignores this CORS policy; corsauthz applies it")
		}
		r := dr.routing()
		for k, dom := range vh.Domains {
			r.host(w.d.pos(lookup(vhn, "domains", k)), dom)
		}
		for _, i := range g.routes {
			route := vh.Routes[i]
			rn := child(routes, i)
			m := route.Match
			if m == nil {
				m = &envoyRouteMatch{}
			}
			mat := func(path ...any) Pos { return w.d.pos(lookup(rn, append([]any{"match"}, path...)...)) }
			switch {
			case deref(m.PathSeparatedPrefix) != "":
				r.prefix(mat("path_separated_prefix"), *m.PathSeparatedPrefix, true)
			case m.SafeRegex != nil:
				r.unsupported(mat("safe_regex"), fmt.Sprintf("the path regex %q", m.SafeRegex.Regex))
			case deref(m.Path) != "":
				r.exact(mat("path"), *m.Path)
			case m.PathMatchPolicy != nil || m.ConnectMatcher != nil:
				r.unsupported(mat(), "a path_match_policy or connect_matcher route")
			default:
				r.prefix(mat("prefix"), deref(m.Prefix), false)
			}
			var other []string
			if len(m.Headers) > 0 {
				other = append(other, "headers")
			}
			if len(m.QueryParameters) > 0 {
				other = append(other, "query_parameters")
			}
			if m.Grpc != nil {
				other = append(other, "grpc")
			}
			if m.RuntimeFraction != nil {
				other = append(other, "runtime_fraction")
			}
			if len(other) > 0 {
				dr.find(mat(), Changed, "the route also matches on %s, which a corsauthz match cannot say: the policy applies to every request to these domains and paths", strings.Join(other, ", "))
			}
		}
		name := vhName
		if len(groups) > 1 {
			name += fmt.Sprintf("-%d", g.routes[0])
		}
		dr.emit(name, r.match())
	}
	return nil
}

// corsDraft resolves a route's policy list field by field, as the filter
// does; ok is false when the filter is disabled for the route.
func (w *envoyWalk) corsDraft(source string, list []envoyPolicy, at Pos) (*draft, bool) {
	first := list[0]
	pos := func(p envoyPolicy, field string) Pos { return w.d.pos(lookup(p.node, field)) }
	enabled := fraction(first.cors.FilterEnabled)
	shadow := 0.0
	if first.cors.ShadowEnabled != nil {
		shadow = fraction(first.cors.ShadowEnabled)
	}
	switch {
	case enabled == 0 && shadow == 0:
		w.b.note(pos(first, "filter_enabled"), "%s: the CORS filter is disabled for it (filter_enabled 0%%): nothing imported", source)
		return nil, false
	case enabled < 1 && enabled > 0:
		w.b.find(pos(first, "filter_enabled"), Unsupported, "%s: filter_enabled applies the policy to a fraction of requests only; corsauthz applies it to all: imported as if 100%%", source)
	}

	creds := false
	for _, p := range list {
		if v := p.cors.AllowCredentials; v != nil {
			creds = *v
			break
		}
	}
	dr := w.b.draft(source, w.d.pos(first.node), creds)
	if enabled == 0 {
		dr.report = true
		dr.find(pos(first, "shadow_enabled"), Changed, "the policy runs in shadow mode only (shadow_enabled, filter_enabled 0%%): imported with report_only: true, which decides and logs but changes nothing")
	}
	for _, p := range list {
		ms := p.cors.AllowOriginStringMatch
		if len(ms) == 0 {
			continue
		}
		for j, m := range ms {
			mat := w.d.pos(lookup(p.node, "allow_origin_string_match", j))
			fold := m.IgnoreCase
			switch {
			case m.Exact != nil:
				dr.exact(mat, *m.Exact, fold)
			case m.Prefix != nil:
				dr.matcher(mat, "prefix", *m.Prefix, fold)
			case m.Suffix != nil:
				dr.matcher(mat, "suffix", *m.Suffix, fold)
			case m.Contains != nil:
				dr.matcher(mat, "contains", *m.Contains, fold)
			case m.SafeRegex != nil:
				dr.regex(mat, m.SafeRegex.Regex, regexorigin.Options{Anchor: regexorigin.Full}, "safe_regex")
			default:
				dr.find(mat, Unsupported, "a custom string matcher cannot be read: list the origins exactly")
			}
		}
		break
	}
	if !dr.anyOrigin && len(dr.origins) == 0 && !hasOrigins(list) {
		w.b.note(at, "%s: no allow_origin_string_match: Envoy allows no origin, nothing imported", source)
		return nil, false
	}
	str := func(get func(*envoyCorsPolicy) string, field string) (string, Pos) {
		for _, p := range list {
			if v := get(p.cors); v != "" {
				return v, pos(p, field)
			}
		}
		return "", at
	}
	if v, vAt := str(func(c *envoyCorsPolicy) string { return c.AllowMethods }, "allow_methods"); v != "" {
		dr.methodList(vAt, strings.Split(v, ","))
	}
	if v, vAt := str(func(c *envoyCorsPolicy) string { return c.AllowHeaders }, "allow_headers"); v != "" {
		dr.headerList(vAt, strings.Split(v, ","))
	}
	if v, vAt := str(func(c *envoyCorsPolicy) string { return c.ExposeHeaders }, "expose_headers"); v != "" {
		dr.exposeList(vAt, strings.Split(v, ","))
	}
	if v, vAt := str(func(c *envoyCorsPolicy) string { return c.MaxAge }, "max_age"); v != "" {
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
			dr.maxAgeSeconds(vAt, n)
		} else {
			dr.find(vAt, Changed, "max_age %q is not a number of seconds: browsers ignore it and cache preflights for 5 seconds; imported as 0 (no Access-Control-Max-Age)", v)
		}
	}
	for _, p := range list {
		if v := p.cors.AllowPrivateNetworkAccess; v != nil {
			dr.privNet = *v
			break
		}
	}
	forward, fwdAt := true, w.d.pos(first.node)
	for _, p := range list {
		if v := p.cors.ForwardNotMatchingPreflights; v != nil {
			forward, fwdAt = *v, pos(p, "forward_not_matching_preflights")
			break
		}
	}
	if forward && !dr.anyOrigin {
		dr.find(fwdAt, Unsafe, "preflights from origins it does not admit go on to the upstream (forward_not_matching_preflights, true by default), whose own CORS answer may allow them; corsauthz answers them 403 itself")
	}
	return dr, true
}

func hasOrigins(list []envoyPolicy) bool {
	for _, p := range list {
		if len(p.cors.AllowOriginStringMatch) > 0 {
			return true
		}
	}
	return false
}

// fraction is the default share of requests a runtime fraction enables
// (1 when unset: the filter's default is on).
func fraction(f *envoyRuntimeFraction) float64 {
	if f == nil || f.DefaultValue == nil {
		return 1
	}
	v := f.DefaultValue
	den := 100.0
	switch v.Denominator {
	case denominatorTenThousand:
		den = 10000
	case denominatorMillion:
		den = 1000000
	}
	r := float64(v.Numerator) / den
	if r > 1 {
		r = 1
	}
	return r
}

// deref is *p, or "" when p is nil.
func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

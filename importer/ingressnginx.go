package importer

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// ingress-nginx: the nginx.ingress.kubernetes.io/*cors* annotations of an
// Ingress (decoded with k8s.io/api's own type), read as ingress-nginx
// (v1.15) reads them, defaults included:
//
//   - enable-cors: "true" turns CORS on; without it the others do nothing.
//   - cors-allow-origin: a comma-separated list; missing, or failing the
//     annotation's validation as a whole, it is "*". An entry "*" makes the
//     whole list "*"; entries that are not scheme://host[:port] or null are
//     skipped. Each entry becomes a case-insensitive nginx regex anchored
//     at the end, where the first "*" stands for one label of letters,
//     digits and hyphens. "*" answers "Access-Control-Allow-Origin: *".
//   - cors-allow-credentials: "true" unless set to "false".
//   - cors-allow-methods: "GET, PUT, POST, DELETE, PATCH, OPTIONS".
//   - cors-allow-headers: "DNT,Keep-Alive,User-Agent,X-Requested-With,
//     If-Modified-Since,Cache-Control,Content-Type,Range,Authorization".
//   - cors-expose-headers: none; cors-max-age: 1728000 (20 days).
//
// Preflights from origins the list does not admit are not answered by
// nginx: they go on to the service.
const nginxPrefix = "nginx.ingress.kubernetes.io/"

const (
	nginxDefaultMethods = "GET, PUT, POST, DELETE, PATCH, OPTIONS"
	nginxDefaultHeaders = "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization"
	nginxDefaultMaxAge  = 1728000
)

// The checks ingress-nginx applies to each annotation's value; a value
// that fails one gets the default.
var (
	nginxOriginListRE = regexp.MustCompile(`^((((([a-z]+://)?(\*\.)?[A-Za-z0-9\-.]*(:\d+)?,?)|null)+)|\*)?$`)
	nginxOriginRE     = regexp.MustCompile(`^([a-z]+://(\*\.)?[A-Za-z0-9\-.]*(:\d+)?|\*|null)?$`)
	nginxMethodsRE    = regexp.MustCompile(`^([A-Za-z]+,?\s?)+$`)
	nginxHeadersRE    = regexp.MustCompile(`^[A-Za-z0-9-_, ]*$`)
	nginxExposeRE     = regexp.MustCompile(`^(([A-Za-z0-9\-\_]+|\*),?\s?)+$`)
)

func importIngressNginx(b *builder, docs []*doc) error {
	for _, d := range docs {
		group, _, _ := strings.Cut(d.apiVersion, "/")
		if d.kind != "Ingress" || (group != "networking.k8s.io" && group != "extensions") {
			b.note(d.pos(nil), "skipped %s (%s): the ingress-nginx importer reads Ingress", d.ref(), d.apiVersion)
			continue
		}
		var ing ingress
		if err := decodeNode(d.root, &ing); err != nil {
			return &ParseError{Pos: d.pos(nil), Message: fmt.Sprintf("%s does not decode as an Ingress: %v", d.ref(), err)}
		}
		importIngress(b, d, &ing)
	}
	return nil
}

func importIngress(b *builder, d *doc, ing *ingress) {
	ann := ing.Annotations
	annAt := func(name string) Pos { return d.at("metadata", "annotations", nginxPrefix+name) }
	get := func(name string) (string, bool) {
		v, ok := ann[nginxPrefix+name]
		return strings.TrimSpace(v), ok
	}
	enabled, ok := get("enable-cors")
	if on, err := strconv.ParseBool(enabled); !ok || err != nil || !on {
		for k := range ann {
			if strings.HasPrefix(k, nginxPrefix+"cors-") {
				b.note(annAt("enable-cors"), "%s has cors-* annotations but not enable-cors: \"true\", so ingress-nginx applies no CORS: nothing imported", d.ref())
				break
			}
		}
		return
	}
	at := annAt("enable-cors")

	creds := true
	if v, ok := get("cors-allow-credentials"); ok {
		if c, err := strconv.ParseBool(v); err == nil {
			creds = c
		}
	}
	dr := b.draft(d.ref(), at, creds)

	// Origins.
	originAt := annAt("cors-allow-origin")
	raw, ok := get("cors-allow-origin")
	var origins []string
	switch {
	case !ok || raw == "":
		origins = []string{"*"}
		originAt = at
	case !nginxOriginListRE.MatchString(strings.ReplaceAll(raw, " ", "")):
		dr.find(originAt, Changed, "cors-allow-origin %q fails ingress-nginx's check, so ingress-nginx used \"*\" instead", raw)
		origins = []string{"*"}
	default:
		for _, o := range strings.Split(raw, ",") {
			o = strings.TrimSpace(o)
			if o == "" {
				continue
			}
			if o == "*" {
				origins = []string{"*"}
				break
			}
			if !nginxOriginRE.MatchString(o) {
				b.note(originAt, "%s: ingress-nginx skips the origin %q (not scheme://host[:port] or null)", d.ref(), o)
				continue
			}
			origins = append(origins, o)
		}
	}
	if len(origins) == 1 && origins[0] == "*" {
		how := `cors-allow-origin "*"`
		if !ok {
			how = "enable-cors without cors-allow-origin (ingress-nginx's default origin \"*\")"
		}
		dr.anyOriginAllowed(originAt, how, false, "; beware when moving to Gateway API: tools that carry ingress-nginx's defaults across (ingress2gateway) write allowOrigins \"*\" with allowCredentials true, which Gateway API answers by echoing every origin with credentials")
	}
	for _, o := range origins {
		switch {
		case o == "*":
		case o == "null":
			dr.exact(originAt, "null", true)
		case strings.Contains(o, "://*."):
			dr.oneLabelWildcard(originAt, o)
		default:
			dr.exactOrigin(originAt, o, true, "")
		}
	}
	if !dr.anyOrigin && len(origins) > 0 {
		dr.find(originAt, Unsafe, "preflights from origins the list does not admit are not answered by ingress-nginx: they go on to the service, whose own CORS answer may allow them; corsauthz answers them 403 itself")
	}

	// Methods, headers, max-age.
	methods, ok := get("cors-allow-methods")
	methodsAt := annAt("cors-allow-methods")
	if !ok || !nginxMethodsRE.MatchString(methods) {
		methods, methodsAt = nginxDefaultMethods, at
	}
	dr.methodList(methodsAt, strings.Split(methods, ","))
	headers, ok := get("cors-allow-headers")
	headersAt := annAt("cors-allow-headers")
	if !ok || headers == "" || !nginxHeadersRE.MatchString(headers) {
		headers, headersAt = nginxDefaultHeaders, at
	}
	dr.headerList(headersAt, strings.Split(headers, ","))
	if expose, ok := get("cors-expose-headers"); ok && nginxExposeRE.MatchString(expose) {
		dr.exposeList(annAt("cors-expose-headers"), strings.Split(expose, ","))
	}
	maxAge := int64(nginxDefaultMaxAge)
	maxAgeAt := at
	if v, ok := get("cors-max-age"); ok {
		if n, err := strconv.Atoi(v); err == nil {
			maxAge, maxAgeAt = int64(n), annAt("cors-max-age")
		}
	}
	dr.maxAgeSeconds(maxAgeAt, maxAge)

	// Routing: one policy per rule, with the rule's host and paths.
	regexPaths := false
	if v, ok := get("use-regex"); ok && v == "true" {
		regexPaths = true
	}
	if _, ok := get("rewrite-target"); ok {
		regexPaths = true // ingress-nginx then reads paths as regexes too
	}
	rules := ing.Spec.Rules
	if len(rules) == 0 {
		dr.emit(b.nameParts(d, "", ""), dr.routing().match())
		return
	}
	for i, rule := range rules {
		r := dr.routing()
		r.host(d.at("spec", "rules", i, "host"), rule.Host)
		if rule.HTTP == nil || len(rule.HTTP.Paths) == 0 {
			r.anyPath = true
		}
		if rule.HTTP != nil {
			for j, p := range rule.HTTP.Paths {
				pAt := d.at("spec", "rules", i, "http", "paths", j, "path")
				switch {
				case regexPaths:
					r.unsupported(pAt, fmt.Sprintf("the path %q, a regex (use-regex or rewrite-target)", p.Path))
				case p.PathType != nil && *p.PathType == pathTypeExact:
					r.exact(pAt, p.Path)
				case p.PathType != nil && *p.PathType == pathTypePrefix:
					r.prefix(pAt, p.Path, true)
				default: // ImplementationSpecific: an nginx prefix location
					r.prefix(pAt, p.Path, false)
				}
			}
		}
		name := rule.Host
		if len(rules) == 1 {
			name = ""
		}
		dr.emit(b.nameParts(d, name, ""), r.match())
	}
}

package importer

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/publicsuffix"

	"github.com/corsauthz/corsauthz/importer/internal/regexorigin"
	"github.com/corsauthz/corsauthz/policy"
)

// draft is one policy being translated. The format importers feed it the
// source's values in the source's terms (an exact origin, a regex, a
// prefix matcher, a method list); it decides what corsauthz can say and
// reports the rest. Credentials must be set before origins are added: what
// is safe depends on them.
type draft struct {
	b      *builder
	source string
	at     Pos
	creds  bool

	anyOrigin bool
	origins   []string
	sites     []string // registrable domains of what the source meant
	methods   []string
	headers   []string
	expose    []string
	maxAge    int
	privNet   bool
	report    bool
	comments  []string
}

func (b *builder) draft(source string, at Pos, creds bool) *draft {
	return &draft{b: b, source: source, at: at, creds: creds}
}

// find reports a finding about the draft's source. A policy shared by
// several routes (an Envoy virtual host's) is read once per route: the
// same remark at the same place is reported once.
func (d *draft) find(at Pos, kind Kind, format string, args ...any) {
	detail := fmt.Sprintf(format, args...)
	key := fmt.Sprintf("%s %s %s", at, kind, detail)
	if d.b.seen[key] {
		return
	}
	d.b.seen[key] = true
	d.b.find(at, kind, "%s: %s", d.source, detail)
}

func (d *draft) comment(format string, args ...any) {
	d.comments = append(d.comments, fmt.Sprintf(format, args...))
}

func (d *draft) addOrigin(o string) {
	if !slices.Contains(d.origins, o) {
		d.origins = append(d.origins, o)
	}
}

// anyOriginAllowed records that the source admits every origin (how says
// what in the source does, such as `the origin "*"`); echoes says the
// source answers with the request's Origin rather than "*". extra is
// appended to the finding.
func (d *draft) anyOriginAllowed(at Pos, how string, echoes bool, extra ...string) {
	d.anyOrigin = true
	if !d.creds {
		return
	}
	tail := strings.Join(extra, "")
	if echoes {
		d.find(at, Unsafe, "%s admits every origin and the source echoes it back with Access-Control-Allow-Credentials: true, so any web site can read responses with your users' cookies; corsauthz refuses \"*\" with credentials: imported as \"*\" without credentials (credentialed requests now fail); list your origins exactly to keep credentials%s", how, tail)
		return
	}
	d.find(at, Changed, "%s admits every origin with credentials on, but the source answers Access-Control-Allow-Origin: *, which browsers refuse on credentialed requests, so only requests without credentials worked: imported as \"*\" without credentials, the same for browsers%s", how, tail)
}

// originCheck compiles o alone in a policy: the policy package is the one
// judge of what corsauthz accepts.
func originCheck(o string, creds bool) (norm string, notes []string, err error) {
	cfg := policy.Config{Policies: []policy.Policy{{Name: "check", AllowedOrigins: []string{o}, AllowCredentials: creds}}}
	e, warnings, err := policy.Compile(&cfg)
	if err != nil {
		var msgs []string
		for _, fe := range policy.FieldErrors(err) {
			msgs = append(msgs, fe.Message)
		}
		return "", nil, errors.New(strings.Join(msgs, "; "))
	}
	for _, w := range warnings {
		notes = append(notes, w.Message)
	}
	return e.Config().Policies[0].AllowedOrigins[0], notes, nil
}

// exact adds an origin the source compares exactly (fold: ignoring case).
func (d *draft) exact(at Pos, o string, fold bool) {
	if o == "*" {
		d.anyOriginAllowed(at, `the origin "*"`, true)
		return
	}
	d.exactOrigin(at, o, fold, "")
}

// exactOrigin adds one origin of corsauthz's syntax (exact, or a
// "scheme://*.domain" pattern when how says where it came from).
func (d *draft) exactOrigin(at Pos, o string, fold bool, how string) bool {
	norm, notes, err := originCheck(o, false)
	if err != nil {
		d.find(at, Unsupported, "origin %q never matches an Origin a browser sends: %v", o, err)
		return false
	}
	if o == "null" {
		if d.creds {
			d.find(at, Unsafe, "\"null\" with credentials lets any sandboxed iframe or local file read responses with your users' cookies: not imported")
			return false
		}
		d.find(at, Unsafe, "\"null\" is the origin of sandboxed iframes, local files and some redirects, which any site can produce: imported as the source had it; remove it unless you mean it")
		d.addOrigin(norm)
		return true
	}
	if d.creds {
		if _, _, err := originCheck(norm, true); err != nil {
			d.find(at, Unsafe, "%v: not imported", err)
			return false
		}
	}
	if norm != o && !(fold && strings.EqualFold(norm, o) && len(notes) == 0) {
		was := "the source compared it byte for byte, so it never matched what browsers send"
		if fold {
			was = "the source ignored case, so this changes nothing for browsers"
		}
		if strings.Contains(strings.Join(notes, " "), "default port") {
			was = "browsers leave the default port out of Origin, so the source never matched it"
		}
		d.find(at, Changed, "origin %q imported as %q (%s)", o, norm, was)
	}
	d.addOrigin(norm)
	d.sites = append(d.sites, siteOf(norm))
	return true
}

// siteOf returns the registrable domain of an origin or pattern ("" for
// none): two origins on the same one belong to the same owner.
func siteOf(o string) string {
	_, rest, ok := strings.Cut(o, "://")
	if !ok {
		return ""
	}
	host := strings.TrimPrefix(rest, "*.")
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		host = host[:i]
	}
	site, err := publicsuffix.EffectiveTLDPlusOne(host)
	if err != nil {
		return host
	}
	return site
}

// foreign returns the examples on sites the source's own origins are not on.
func (d *draft) foreign(examples []string, own []string) []string {
	var out []string
	for _, e := range examples {
		if e == "null" {
			out = append(out, e)
			continue
		}
		if s := siteOf(e); s != "" && !slices.Contains(own, s) {
			out = append(out, e)
		}
	}
	return out
}

func quoteList(l []string, max int) string {
	if len(l) > max {
		l = l[:max]
	}
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// regex adds an origin regex matched as opt says; what is the matcher's
// name in the source, for messages.
func (d *draft) regex(at Pos, expr string, opt regexorigin.Options, what string) {
	// Envoy allows every origin when a matcher matches the string "*".
	if opt.Anchor == regexorigin.Full {
		if re, err := regexp.Compile(`^(?:` + expr + `)$`); err == nil && re.MatchString("*") {
			d.anyOriginAllowed(at, fmt.Sprintf("%s %q matches \"*\", so it", what, expr), true)
			return
		}
	}
	res, err := regexorigin.Translate(expr, opt)
	var inv *regexorigin.InvalidError
	switch {
	case errors.As(err, &inv):
		d.find(at, Unsupported, "%s %q is not a valid RE2 expression (%v): Envoy refuses it, and with it the whole route configuration; write a valid expression, or list the origins", what, expr, inv.Err)
		return
	case err != nil:
		d.find(at, Unsupported, "%s %q: %v: list the origins exactly", what, expr, err)
		return
	}
	var own []string
	for _, o := range append(slices.Clone(res.Exact), res.Wildcards...) {
		own = append(own, siteOf(o))
	}
	// A site written literally in the expression is the author's own,
	// even where no candidate origin could be read.
	literal := strings.ToLower(strings.ReplaceAll(expr, `\`, ""))
	for _, e := range res.Extra {
		if s := siteOf(e); s != "" && strings.Contains(literal, s) {
			own = append(own, s)
		}
	}
	switch {
	case res.Same && res.Any:
		d.anyOriginAllowed(at, fmt.Sprintf("%s %q", what, expr), true)
	case res.Same:
		var imported []string
		for _, o := range append(slices.Clone(res.Exact), res.Wildcards...) {
			if d.exactOrigin(at, o, true, what) {
				imported = append(imported, o)
			}
		}
		if len(imported) > 0 {
			d.find(at, Changed, "%s %q admits exactly the origins of %s: imported as such", what, expr, quoteList(imported, 16))
		}
	case len(res.Admitted) == 0:
		d.find(at, Unsupported, "%s %q admits no origin a browser sends (browsers send lower-case scheme and host, no path, no default port): write the origins as browsers send them", what, expr)
	default:
		examples := res.Extra
		if len(examples) == 0 {
			examples = res.Admitted
		}
		kind := Unsupported
		msg := fmt.Sprintf("%s %q cannot be expressed as corsauthz origins", what, expr)
		if f := d.foreign(res.Extra, own); len(f) > 0 {
			kind = Unsafe
			examples = f
			msg = fmt.Sprintf("%s %q admits origins on other sites, which anyone can register", what, expr)
		}
		msg += fmt.Sprintf(": it admits %s", quoteList(examples, 3))
		near := append(slices.Clone(res.Exact), res.Wildcards...)
		if len(near) > 0 && len(res.Missing) == 0 {
			// The reading its author meant is a subset of what it
			// admits: import that, which admits less.
			var imported []string
			for _, o := range near {
				if d.exactOrigin(at, o, true, what) {
					imported = append(imported, o)
				}
			}
			if len(imported) > 0 {
				msg += fmt.Sprintf("; imported as %s only, which admits less", quoteList(imported, 8))
			}
		} else {
			if len(near) > 0 {
				msg += fmt.Sprintf("; the nearest corsauthz origins %s would also admit %s", quoteList(near, 4), quoteList(res.Missing, 2))
			}
			msg += "; not imported: list the origins exactly, or use https://*.domain patterns"
		}
		d.find(at, kind, "%s", msg)
	}
}

// matcher adds a prefix, suffix or contains matcher (how names it).
func (d *draft) matcher(at Pos, how, value string, fold bool) {
	v := value
	if fold {
		v = strings.ToLower(v)
	}
	matches := func(s string) bool {
		switch how {
		case "prefix":
			return strings.HasPrefix(s, v)
		case "suffix":
			return strings.HasSuffix(s, v)
		default:
			return strings.Contains(s, v)
		}
	}
	if matches("*") {
		d.anyOriginAllowed(at, fmt.Sprintf("the %s matcher %q matches \"*\", so it", how, value), true)
		return
	}
	var candidates []string
	switch how {
	case "prefix":
		candidates = []string{v + ".evil.net", v + "evil.net", v + "x.evil.net", v + "-evil.net", v + "1", v + "x"}
	case "suffix":
		candidates = []string{"https://evil" + v, "https://evil-" + v, "http://evil" + v, "http://x" + v, "https://x" + v, "http://" + v}
	default:
		candidates = []string{v + ".evil.net", "https://evil" + v, "https://" + v + ".evil.net", "https://x." + v + ".evil.net", "https://evil-" + v, "http://" + v}
	}
	var example string
	for _, c := range candidates {
		if regexorigin.IsBrowserOrigin(c) && matches(c) {
			if example == "" {
				example = c
			}
			if s := siteOf(c); s != "" && s != siteOf(v) && s != siteOf("https://"+strings.TrimPrefix(v, ".")) {
				example = c
				break
			}
		}
	}
	if example == "" {
		example = "(none a browser sends)"
	} else {
		example = strconv.Quote(example)
	}
	msg := fmt.Sprintf("the %s matcher %q admits every origin that %s it, such as %s", how, value, map[string]string{"prefix": "starts with", "suffix": "ends with", "contains": "contains"}[how], example)
	// What the author meant, when it reads as an origin: import that alone.
	meant := ""
	switch how {
	case "prefix", "contains":
		meant = v
	case "suffix":
		if strings.HasPrefix(v, ".") {
			meant = "https://*" + v
		}
	}
	if meant != "" {
		if norm, _, err := originCheck(meant, d.creds); err == nil && norm == meant {
			d.addOrigin(norm)
			d.sites = append(d.sites, siteOf(norm))
			d.find(at, Unsafe, "%s; imported as %q only, which admits less", msg, norm)
			return
		}
	}
	d.find(at, Unsafe, "%s; not imported: list the origins exactly", msg)
}

// oneLabelWildcard adds ingress-nginx's "scheme://*.domain", whose "*"
// stands for exactly one label of letters, digits and hyphens.
func (d *draft) oneLabelWildcard(at Pos, o string) {
	norm, _, err := originCheck(o, false)
	if err != nil {
		d.find(at, Unsupported, "origin %q: %v", o, err)
		return
	}
	if d.creds {
		if _, _, err := originCheck(norm, true); err != nil {
			d.find(at, Unsafe, "%v: not imported", err)
			return
		}
	}
	d.addOrigin(norm)
	d.find(at, Changed, "origin %q: ingress-nginx's \"*\" stands for one label (letters, digits, '-'); corsauthz's %q admits one or more labels (and '_'), such as %q", o, norm, strings.Replace(norm, "*", "a.b", 1))
}

var defaultMethods = []string{"PUT", "PATCH", "DELETE"}

// methodList adds the methods a preflight may ask for.
func (d *draft) methodList(at Pos, methods []string) {
	for _, m := range methods {
		m = strings.TrimSpace(m)
		if m == "" {
			continue
		}
		upper := strings.ToUpper(m)
		switch {
		case m == "*":
			d.find(at, Changed, "allowed methods \"*\" allows any method; corsauthz lists methods by name: imported as %s (GET, HEAD and POST are always allowed); a preflight for any other method now fails", strings.Join(defaultMethods, ", "))
			for _, dm := range defaultMethods {
				if !slices.Contains(d.methods, dm) {
					d.methods = append(d.methods, dm)
				}
			}
			continue
		case upper == "TRACE" || upper == "CONNECT" || upper == "TRACK":
			d.find(at, Unsafe, "method %s is one browsers never send from scripts (Fetch forbids it); allowing it only helps attacks: not imported", m)
			continue
		case !isToken(m):
			d.find(at, Unsupported, "method %q is not a valid method name: not imported", m)
			continue
		case m != upper && slices.Contains([]string{"DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"}, upper):
			d.find(at, Changed, "method %q: browsers send %s in upper case and compare case-sensitively, so the source never allowed it; imported as %s, which allows it", m, upper, upper)
			m = upper
		}
		if !slices.Contains(d.methods, m) {
			d.methods = append(d.methods, m)
		}
	}
}

// headerList adds the request headers a preflight may ask for. echoAny
// says the source answered "*" by echoing whatever was asked (Envoy), so
// that Authorization was allowed too.
func (d *draft) headerList(at Pos, headers []string) {
	for _, h := range headers {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if h == "*" {
			if d.creds {
				d.find(at, Unsafe, "allowed headers \"*\" with credentials lets pages send any header with your users' cookies; corsauthz imports it as \"*\", which never covers Authorization: list Authorization by name if your pages send it, and better list every header")
			} else {
				d.find(at, Changed, "allowed headers \"*\": corsauthz's \"*\" (like the Fetch standard's) never covers Authorization, which the source echoed back when asked; list Authorization by name if your pages send it")
			}
			if !slices.Contains(d.headers, "*") {
				d.headers = append(d.headers, "*")
			}
			continue
		}
		if !isToken(h) {
			d.find(at, Unsupported, "header %q is not a valid header name: not imported", h)
			continue
		}
		cfg := policy.Config{Policies: []policy.Policy{{Name: "check", AllowedOrigins: []string{"https://check.example"}, AllowedHeaders: []string{h}}}}
		if _, _, err := policy.Compile(&cfg); err != nil {
			d.comment("allowed header %s dropped: a browser never asks to send it (it is forbidden to scripts or a response header)", h)
			continue
		}
		if !slices.ContainsFunc(d.headers, func(x string) bool { return strings.EqualFold(x, h) }) {
			d.headers = append(d.headers, h)
		}
	}
}

func (d *draft) exposeList(at Pos, headers []string) {
	for _, h := range headers {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if h == "*" && d.creds {
			d.comment("exposed header \"*\" dropped: with credentials browsers read it as a header named \"*\", so it exposed nothing")
			continue
		}
		if h != "*" && !isToken(h) {
			d.find(at, Unsupported, "exposed header %q is not a valid header name: not imported", h)
			continue
		}
		if strings.EqualFold(h, "set-cookie") || strings.EqualFold(h, "set-cookie2") {
			d.comment("exposed header %s dropped: browsers never let scripts read it", h)
			continue
		}
		if !slices.ContainsFunc(d.expose, func(x string) bool { return strings.EqualFold(x, h) }) {
			d.expose = append(d.expose, h)
		}
	}
}

// maxAgeSeconds sets max_age_seconds from the source's value in seconds.
func (d *draft) maxAgeSeconds(at Pos, s int64) {
	switch {
	case s < 0:
		d.find(at, Changed, "max-age %d is negative: browsers ignore it and cache preflights for 5 seconds; imported as 0 (no Access-Control-Max-Age)", s)
	case s > policy.MaxAgeChromiumCapInSeconds:
		d.maxAge = policy.MaxAgeChromiumCapInSeconds
		d.find(at, Changed, "max-age %d s: Chromium caps it at %d s and Firefox at %d s; imported as %d s (Firefox re-checks preflights sooner)", s, policy.MaxAgeChromiumCapInSeconds, policy.MaxAgeLimitInSeconds, policy.MaxAgeChromiumCapInSeconds)
	default:
		d.maxAge = int(s)
	}
}

// emit adds the policy, or says why there is none.
func (d *draft) emit(name string, m policy.Match) {
	if !d.anyOrigin && len(d.origins) == 0 {
		d.b.skip("%s (%s): not imported, no origin could be expressed (see the findings)", d.source, d.at)
		return
	}
	p := policy.Policy{
		Name:                d.b.name(name),
		Match:               m,
		AllowedMethods:      d.methods,
		AllowedHeaders:      d.headers,
		ExposedHeaders:      d.expose,
		AllowCredentials:    d.creds,
		MaxAgeInSeconds:     d.maxAge,
		AllowPrivateNetwork: d.privNet,
		ReportOnly:          d.report,
	}
	if d.anyOrigin {
		p.AllowedOrigins = []string{"*"}
		p.AllowCredentials = false
		p.AllowPrivateNetwork = false
		if slices.Contains(p.ExposedHeaders, "*") && d.creds {
			p.ExposedHeaders = slices.DeleteFunc(slices.Clone(p.ExposedHeaders), func(s string) bool { return s == "*" })
		}
	} else {
		p.AllowedOrigins = d.origins
	}
	d.b.add(Policy{Policy: p, Source: d.source, At: d.at, Comments: d.comments})
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// routing collects a policy's match from the source's hosts and paths.
type routing struct {
	d        *draft
	hosts    []string
	anyHost  bool
	prefixes []string
	anyPath  bool
	// broken says part of the routing could not be expressed, and the
	// policy is emitted without a match (select it with cors_policy).
	broken bool
}

func (d *draft) routing() *routing { return &routing{d: d} }

func (r *routing) host(at Pos, h string) {
	if h == "*" || h == "" {
		r.anyHost = true
		return
	}
	cfg := policy.Config{Policies: []policy.Policy{{Name: "check", AllowedOrigins: []string{"https://check.example"}, Match: policy.Match{Hosts: []string{h}}}}}
	e, _, err := policy.Compile(&cfg)
	if err != nil {
		var msgs []string
		for _, fe := range policy.FieldErrors(err) {
			msgs = append(msgs, fe.Message)
		}
		r.d.find(at, Unsupported, "host %q cannot be a corsauthz match host (%s): the policy is not selected for it; select it with the cors_policy context extension instead", h, strings.Join(msgs, "; "))
		r.broken = true
		return
	}
	norm := e.Config().Policies[0].Match.Hosts[0]
	if !slices.Contains(r.hosts, norm) {
		r.hosts = append(r.hosts, norm)
	}
}

// prefix adds a path prefix; segment says the source matches at segment
// boundaries as corsauthz does (Kubernetes Prefix, Gateway API PathPrefix).
func (r *routing) prefix(at Pos, p string, segment bool) {
	if p == "" {
		p = "/"
	}
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "?#") {
		r.d.find(at, Unsupported, "path prefix %q cannot be a corsauthz path prefix: select the policy with the cors_policy context extension instead", p)
		r.broken = true
		return
	}
	if p == "/" {
		r.anyPath = true
		return
	}
	if !segment && !strings.HasSuffix(p, "/") {
		r.d.find(at, Changed, "the source's path prefix %q also matches %q; corsauthz matches prefixes at a segment boundary (%q, %q, %q)", p, p+"x", p, p+"/x", p+"?q")
	}
	if !slices.Contains(r.prefixes, p) {
		r.prefixes = append(r.prefixes, p)
	}
}

func (r *routing) exact(at Pos, p string) {
	if p == "/" {
		r.d.find(at, Changed, "the exact path \"/\" is imported as the path prefix \"/\": corsauthz selects the policy for every path")
	} else {
		r.d.find(at, Changed, "the exact path %q is imported as a path prefix: corsauthz also selects the policy for %q", p, strings.TrimSuffix(p, "/")+"/x")
	}
	r.prefix(at, p, true)
}

func (r *routing) unsupported(at Pos, what string) {
	r.d.find(at, Unsupported, "%s cannot be a corsauthz match: the policy is emitted without a match; select it with the cors_policy context extension on that route", what)
	r.broken = true
}

func (r *routing) match() policy.Match {
	if r.broken {
		return policy.Match{}
	}
	var m policy.Match
	if !r.anyHost {
		m.Hosts = r.hosts
	}
	if !r.anyPath {
		m.PathPrefixes = r.prefixes
	}
	if len(m.Hosts) == 0 && len(m.PathPrefixes) == 0 {
		m.PathPrefixes = []string{"/"}
	}
	return m
}

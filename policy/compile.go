package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/corsauthz/corsauthz/internal/limits"
	"github.com/corsauthz/corsauthz/policy/internal/httpsyntax"
	"github.com/corsauthz/corsauthz/policy/internal/origin"
)

// Limits on what a policy may configure.
const (
	// MaxAgeLimitInSeconds is the largest max_age_seconds accepted: a day,
	// Firefox's cap.
	MaxAgeLimitInSeconds = 86400
	// MaxAgeChromiumCapInSeconds is where Chromium caps max-age; larger
	// values are accepted with a warning.
	MaxAgeChromiumCapInSeconds = 7200
)

var policyNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// Compile checks cfg and compiles it into an Engine. It returns every
// problem at once, joined with errors.Join (each a *FieldError; see
// [FieldErrors]), and no Engine if there is any. Warnings are remarks on a
// configuration that is accepted, such as an origin normalised to what
// browsers send.
//
// Compile also reads the files an authorizer's TLS settings name, and
// checks the environment variables and files its static headers are read
// from, as [Load] does.
func Compile(cfg *Config) (*Engine, []*FieldError, error) {
	e, warnings, err := compileUnhashed(cfg, true)
	if err != nil {
		return nil, warnings, err
	}
	e.hash = hashConfig(&e.config)
	return e, warnings, nil
}

// compileUnhashed is Compile without the hash, which Load takes from the
// file's bytes instead.
// checkFiles says whether to read the files an authorizer names (see
// LoadOptions.SkipLocalFiles).
func compileUnhashed(cfg *Config, checkFiles bool) (*Engine, []*FieldError, error) {
	if errs := checkConfigLimits(cfg); len(errs) > 0 {
		joined := make([]error, len(errs))
		for i, fe := range errs {
			joined[i] = fe
		}
		return nil, nil, errors.Join(joined...)
	}
	c := compiler{checkFiles: checkFiles}
	e := c.compile(cfg)
	if len(c.errs) > 0 {
		errs := make([]error, len(c.errs))
		for i, fe := range c.errs {
			errs[i] = fe
		}
		return nil, c.warnings, errors.Join(errs...)
	}
	e.warnings = c.warnings
	return e, c.warnings, nil
}

type compiler struct {
	errs     []*FieldError
	warnings []*FieldError
	// checkFiles: read the TLS files authorizers name, and look up the
	// variables and files of their static headers.
	checkFiles bool
}

func (c *compiler) errorf(path, format string, args ...any) {
	c.errs = append(c.errs, &FieldError{Path: limits.Cut(path), Message: fmt.Sprintf(format, cutArgs(args)...)})
}

func (c *compiler) warnf(path, format string, args ...any) {
	c.warnings = append(c.warnings, &FieldError{Path: limits.Cut(path), Message: fmt.Sprintf(format, cutArgs(args)...)})
}

func (c *compiler) compile(cfg *Config) *Engine {
	e := &Engine{
		byName: make(map[string]*compiledPolicy, len(cfg.Policies)),
		routes: routeTable{
			exactHosts:    make(map[string][]*routeGroup),
			wildcardHosts: make(map[string][]*routeGroup),
			empty:         true,
		},
	}
	if len(cfg.Policies) == 0 {
		c.errorf("policies", "no policies: write at least one policy with a name and allowed_origins")
	}
	firstIndex := make(map[string]int)
	for i := range cfg.Policies {
		path := fmt.Sprintf("policies[%d]", i)
		np, cp := c.compilePolicy(path, cfg.Policies[i])
		cp.index = i
		if np.Name != "" {
			if j, dup := firstIndex[np.Name]; dup {
				c.errorf(path+".name", "duplicate policy name %q (policies[%d] has it already): names must be unique", np.Name, j)
			} else {
				firstIndex[np.Name] = i
				e.byName[np.Name] = cp
			}
		}
		e.policies = append(e.policies, cp)
		e.config.Policies = append(e.config.Policies, np)
		e.routes.add(cp, np.Match)
	}
	e.routes.finish()
	c.checkGroups(&e.routes)
	if cfg.DefaultPolicy != "" {
		e.config.DefaultPolicy = cfg.DefaultPolicy
		e.defaultPolicy = e.byName[cfg.DefaultPolicy]
		if e.defaultPolicy == nil {
			c.errorf("default_policy", "default_policy %q names no policy: write one of %s, or leave it out", cfg.DefaultPolicy, quotedList(slices.Collect(maps.Keys(firstIndex))))
		}
	}
	c.compileAuthorizers(cfg, e)
	return e
}

// compilePolicy checks one policy, returning its normalised form and its
// compiled form.
func (c *compiler) compilePolicy(path string, p Policy) (Policy, *compiledPolicy) {
	cp := &compiledPolicy{
		name:         p.Name,
		reportOnly:   p.ReportOnly,
		reject:       p.RejectDisallowedOrigins,
		credentials:  p.AllowCredentials,
		allowPrivNet: p.AllowPrivateNetwork,
		headers:      make(map[string]struct{}, len(p.AllowedHeaders)),
	}
	switch {
	case p.Name == "":
		c.errorf(path+".name", "name is required: write a short name such as \"orders\" ([a-z0-9][a-z0-9_-]{0,63})")
	case !policyNameRE.MatchString(p.Name):
		c.errorf(path+".name", "invalid name %q: use 1 to 64 lower-case letters, digits, '-' or '_', starting with a letter or digit", p.Name)
	}
	p.Match = c.checkMatch(path+".match", p.Match)
	p.AllowedOrigins = c.compileOrigins(path, p, cp)
	cp.originList = p.AllowedOrigins // one list for the configuration and Explain
	p.AllowedMethods = c.compileMethods(path+".allowed_methods", p.AllowedMethods, cp)
	p.AllowedHeaders = c.compileAllowedHeaders(path+".allowed_headers", p.AllowedHeaders, cp)
	p.ExposedHeaders = c.compileExposedHeaders(path, p, cp)

	switch {
	case p.MaxAgeInSeconds < 0:
		c.errorf(path+".max_age_seconds", "max_age_seconds is %d: write 0 to send no Access-Control-Max-Age, or a number of seconds up to %d", p.MaxAgeInSeconds, MaxAgeLimitInSeconds)
	case p.MaxAgeInSeconds > MaxAgeLimitInSeconds:
		c.errorf(path+".max_age_seconds", "max_age_seconds %d is more than a day (%d): browsers cap it lower (Chromium at %d); write %d or less", p.MaxAgeInSeconds, MaxAgeLimitInSeconds, MaxAgeChromiumCapInSeconds, MaxAgeChromiumCapInSeconds)
	case p.MaxAgeInSeconds > MaxAgeChromiumCapInSeconds:
		c.warnf(path+".max_age_seconds", "max_age_seconds %d is more than Chromium's cap of %d: Chromium-based browsers will cache preflights for %d seconds only", p.MaxAgeInSeconds, MaxAgeChromiumCapInSeconds, MaxAgeChromiumCapInSeconds)
	}
	if p.AllowPrivateNetwork && cp.anyOrigin {
		c.errorf(path+".allow_private_network", "allow_private_network with allowed_origins \"*\" would open the private network to every web site: list the origins exactly")
	}
	cp.buildHeaders(p)
	return p, cp
}

func (c *compiler) checkMatch(path string, m Match) Match {
	var out Match
	for i, h := range m.Hosts {
		hp := fmt.Sprintf("%s.hosts[%d]", path, i)
		lower := strings.ToLower(h)
		if err := checkMatchHost(lower); err != nil {
			c.errorf(hp, "%v", err)
			continue
		}
		out.Hosts = append(out.Hosts, lower)
	}
	for i, prefix := range m.PathPrefixes {
		pp := fmt.Sprintf("%s.path_prefixes[%d]", path, i)
		if !strings.HasPrefix(prefix, "/") {
			c.errorf(pp, "path prefix %q must start with '/': did you mean %q?", prefix, "/"+prefix)
			continue
		}
		if strings.ContainsAny(prefix, "?#") {
			c.errorf(pp, "path prefix %q holds a query or fragment; prefixes match the path only", prefix)
			continue
		}
		out.PathPrefixes = append(out.PathPrefixes, prefix)
	}
	return out
}

func checkMatchHost(h string) error {
	if h == "" {
		return fmt.Errorf("empty host: write a host name such as \"api.example.com\"")
	}
	if strings.Contains(h, "://") || strings.ContainsAny(h, "/?#@") {
		msg := fmt.Sprintf("host %q must be a host name (and optional port), not a URL", h)
		if host, path := hostOfURL(h); host != "" && checkMatchHost(host) == nil {
			msg += fmt.Sprintf(": did you mean %q?", host)
			if path != "" && path != "/" {
				msg += fmt.Sprintf(" (and path_prefixes: [%q] for the path)", path)
			}
		}
		return errors.New(msg)
	}
	name := h
	wildcard := false
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		name, wildcard = rest, true
	}
	if strings.Contains(name, "*") {
		return fmt.Errorf("host %q has a wildcard that is not the whole first label: write \"*.example.com\"", h)
	}
	if strings.HasPrefix(name, "[") {
		if wildcard {
			return fmt.Errorf("host %q puts a wildcard on an IP address", h)
		}
		return nil
	}
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		if wildcard {
			return fmt.Errorf("host %q: a wildcard host matches any port; leave the port out", h)
		}
		port, err := strconv.Atoi(name[i+1:])
		if err != nil || port < 1 || port > 65535 {
			return fmt.Errorf("host %q has an invalid port: write a number from 1 to 65535", h)
		}
		name = name[:i]
	}
	for _, label := range strings.Split(name, ".") {
		if !origin.IsLabel(label) {
			return fmt.Errorf("host %q is not a valid host name", h)
		}
	}
	return nil
}

// checkGroups warns about a policy that shares its match with an earlier
// "*" policy: "*" admits every origin, so the later one never decides.
func (c *compiler) checkGroups(t *routeTable) {
	warned := map[*compiledPolicy]bool{}
	check := func(groups []*routeGroup) {
		for _, g := range groups {
			for i, p := range g.policies {
				if !p.anyOrigin {
					continue
				}
				for _, later := range g.policies[i+1:] {
					if !warned[later] {
						warned[later] = true
						c.warnf(fmt.Sprintf("policies[%d].match", later.index), "policy %q shares its match with %q, written before it, whose allowed_origins \"*\" admit every origin: %q never decides; put it first, or give it another match", later.name, p.name, later.name)
					}
				}
				break
			}
		}
	}
	for _, gs := range t.exactHosts {
		check(gs)
	}
	for _, gs := range t.wildcardHosts {
		check(gs)
	}
	check(t.anyHost)
}

// hostOfURL returns the host (and port) and the path of something written
// as a URL or as host/path, for a did-you-mean; "" when there is none.
func hostOfURL(s string) (host, path string) {
	if _, rest, ok := strings.Cut(s, "://"); ok {
		s = rest
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		s = s[i+1:]
	}
	host, path = s, ""
	if i := strings.IndexAny(s, "/?#"); i >= 0 {
		host, path = s[:i], s[i:]
		if j := strings.IndexAny(path, "?#"); j >= 0 {
			path = path[:j]
		}
	}
	return host, path
}

func (c *compiler) compileOrigins(path string, p Policy, cp *compiledPolicy) []string {
	fp := path + ".allowed_origins"
	if len(p.AllowedOrigins) == 0 {
		c.errorf(fp, "allowed_origins is empty: list the origins allowed to read responses, such as \"https://app.example.com\"")
		return nil
	}
	if len(p.AllowedOrigins) == 1 && p.AllowedOrigins[0] == "*" {
		if p.AllowCredentials {
			c.errorf(fp+"[0]", "allowed_origins \"*\" cannot be used with allow_credentials: browsers refuse \"Access-Control-Allow-Origin: *\" on credentialed requests, and allowing every origin with cookies would expose your users; list the origins exactly")
			return nil
		}
		cp.anyOrigin = true
		return []string{"*"}
	}
	out := make([]string, 0, len(p.AllowedOrigins))
	cp.exactOrigins.reserve(len(p.AllowedOrigins))
	seenPatterns := map[string]struct{}{} // a set: a policy may list thousands
	for i, o := range p.AllowedOrigins {
		// The field path is only written for a problem: building it for
		// each of 50,000 origins would cost more than checking them.
		op := func() string { return itemPath(fp, i) }
		if o == "*" {
			c.errorf(op(), "\"*\" allows every origin, so it must be the only entry: remove the other origins or the \"*\"")
			continue
		}
		if o == "null" {
			if p.AllowCredentials {
				c.errorf(op(), "\"null\" with allow_credentials lets any sandboxed iframe or file page read credentialed responses: remove \"null\" or allow_credentials")
				continue
			}
			c.addOrigin(fp, i, "null", cp, &out)
			continue
		}
		if strings.EqualFold(o, "null") {
			c.errorf(op(), "%q is not how browsers write the opaque origin: did you mean \"null\"?", o)
			continue
		}
		pat, notes, err := origin.Parse(o)
		if err != nil {
			c.errorf(op(), "%v", err)
			continue
		}
		norm := pat.String()
		if norm == o {
			norm = o // the configuration's string, rather than a second copy
		}
		for _, n := range notes {
			c.warnf(op(), "%s; write %q", n, norm)
		}
		if p.AllowCredentials {
			if pat.IsPublicSuffixWildcard() {
				c.errorf(op(), "%q puts a wildcard directly on the public suffix %q, so anyone who registers a domain there would get credentialed access: write the origins of your own domain, such as %q", o, pat.Host, pat.Scheme+"://*.example."+pat.Host)
				continue
			}
			if pat.Scheme == "http" && !pat.IsLoopback() {
				c.errorf(op(), "%q is plain http with allow_credentials: anyone on the network can impersonate it; write %q (http is accepted only for localhost and loopback addresses)", o, strings.Replace(norm, "http://", "https://", 1))
				continue
			}
		} else if pat.IsPublicSuffixWildcard() {
			c.warnf(op(), "%q puts a wildcard directly on the public suffix %q: any site registered there matches", o, pat.Host)
		}
		if pat.Wildcard {
			if _, dup := seenPatterns[norm]; dup {
				c.warnf(op(), "origin %q is listed twice", norm)
				continue
			}
			seenPatterns[norm] = struct{}{}
			cp.wildcards.Add(pat)
			out = append(out, norm)
			continue
		}
		c.addOrigin(fp, i, norm, cp, &out)
	}
	return out
}

// itemPath is the field path of item i of the list at path.
func itemPath(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// addOrigin adds the exact origin o, item i of the list at path.
func (c *compiler) addOrigin(path string, i int, o string, cp *compiledPolicy, out *[]string) {
	if cp.exactOrigins.has(*out, o) {
		c.warnf(itemPath(path, i), "origin %q is listed twice", o)
		return
	}
	*out = append(*out, o)
	cp.exactOrigins.add(*out, len(*out)-1)
}

// Methods the Fetch standard forbids scripts to use.
var forbiddenMethods = map[string]bool{"CONNECT": true, "TRACE": true, "TRACK": true}

// normalizedMethods are upper-cased by browsers whatever case a page uses;
// all others are sent exactly as written.
var normalizedMethods = map[string]bool{"DELETE": true, "GET": true, "HEAD": true, "OPTIONS": true, "POST": true, "PUT": true}

func (c *compiler) compileMethods(path string, methods []string, cp *compiledPolicy) []string {
	var out []string
	for i, m := range methods {
		mp := fmt.Sprintf("%s[%d]", path, i)
		upper := strings.ToUpper(m)
		switch {
		case m == "*":
			c.errorf(mp, "\"*\" is not accepted in allowed_methods: list the methods by name, such as [PUT, PATCH, DELETE]")
			continue
		case !httpsyntax.IsToken(m):
			c.errorf(mp, "%q is not a valid method name (letters, digits and !#$%%&'*+-.^_`|~ only)", m)
			continue
		case forbiddenMethods[upper]:
			c.errorf(mp, "%s is a forbidden method: browsers never send it from scripts, and allowing it only helps attacks; remove it", m)
			continue
		case normalizedMethods[upper] && m != upper:
			c.warnf(mp, "browsers send %q as %q; write %q", m, upper, upper)
			m = upper
		case m != upper:
			c.warnf(mp, "methods are case-sensitive and browsers send %q exactly as the page writes it; most pages write %q", m, upper)
		}
		if slices.Contains(out, m) {
			continue
		}
		out = append(out, m)
		switch m {
		case "GET", "HEAD", "POST":
			// Always allowed; no need to look them up.
		default:
			cp.methods = append(cp.methods, m)
		}
	}
	return out
}

// forbiddenRequestHeaders are request headers scripts cannot set (Fetch
// standard), so a preflight never asks for them.
var forbiddenRequestHeaders = map[string]bool{
	"accept-charset": true, "accept-encoding": true, "access-control-request-headers": true,
	"access-control-request-method": true, "access-control-request-private-network": true,
	"connection": true, "content-length": true, "cookie": true, "cookie2": true, "date": true,
	"dnt": true, "expect": true, "host": true, "keep-alive": true, "origin": true, "referer": true,
	"set-cookie": true, "te": true, "trailer": true, "transfer-encoding": true, "upgrade": true, "via": true,
}

func (c *compiler) checkHeaderName(path, h string) bool {
	switch {
	case !httpsyntax.IsToken(h):
		c.errorf(path, "%q is not a valid header name (letters, digits and !#$%%&'*+-.^_`|~, no spaces or colons)", h)
	case len(h) > maxHeaderNameLen:
		c.errorf(path, "header name is longer than %d bytes", maxHeaderNameLen)
	default:
		return true
	}
	return false
}

func (c *compiler) compileAllowedHeaders(path string, headers []string, cp *compiledPolicy) []string {
	var out []string
	for i, h := range headers {
		hp := fmt.Sprintf("%s[%d]", path, i)
		if h == "*" {
			cp.anyHeader = true
			out = append(out, h)
			continue
		}
		if !c.checkHeaderName(hp, h) {
			continue
		}
		lower := strings.ToLower(h)
		switch {
		case strings.HasPrefix(lower, "access-control-allow-") || lower == "access-control-expose-headers" || lower == "access-control-max-age":
			c.errorf(hp, "%s is a response header; allowed_headers lists request headers a page may send (use exposed_headers for headers it may read)", h)
			continue
		case forbiddenRequestHeaders[lower] || strings.HasPrefix(lower, "sec-") || strings.HasPrefix(lower, "proxy-"):
			c.errorf(hp, "%s is a forbidden request header: browsers set it themselves and never ask to send it; remove it (cookies need allow_credentials instead)", h)
			continue
		}
		if _, dup := cp.headers[lower]; dup {
			continue
		}
		cp.headers[lower] = struct{}{}
		out = append(out, h)
	}
	return out
}

func (c *compiler) compileExposedHeaders(path string, p Policy, cp *compiledPolicy) []string {
	fp := path + ".exposed_headers"
	var out []string
	seen := map[string]bool{}
	for i, h := range p.ExposedHeaders {
		hp := fmt.Sprintf("%s[%d]", fp, i)
		if h == "*" {
			if p.AllowCredentials {
				c.errorf(hp, "exposed_headers \"*\" with allow_credentials is taken literally by browsers (a header named \"*\"), so it exposes nothing: list the headers by name")
				continue
			}
		} else if !c.checkHeaderName(hp, h) {
			continue
		}
		lower := strings.ToLower(h)
		if lower == "set-cookie" || lower == "set-cookie2" {
			c.errorf(hp, "%s can never be exposed: browsers hide it from scripts whatever the server says; remove it", h)
			continue
		}
		if seen[lower] {
			continue
		}
		seen[lower] = true
		out = append(out, h)
	}
	cp.exposeHeaders = strings.Join(out, ", ")
	return out
}

// buildHeaders prepares every fixed header list the policy can answer with.
func (cp *compiledPolicy) buildHeaders(p Policy) {
	var common []Header
	if cp.credentials {
		common = append(common, Header{Name: HeaderAllowCredentials, Value: "true"})
	}
	actualAllowed := slices.Clone(common)
	if cp.exposeHeaders != "" {
		actualAllowed = append(actualAllowed, Header{Name: HeaderExposeHeaders, Value: cp.exposeHeaders})
	}
	varyOrigin := Header{Name: HeaderVary, Value: varyActual, Append: true}
	// A "*" answer is the same for every origin, so it needs no Vary,
	// except in a group, where another policy may answer another origin.
	cp.actualAllowedGrouped = newHeaderList(append(slices.Clone(actualAllowed), varyOrigin))
	cp.actualAllowed = cp.actualAllowedGrouped
	if cp.anyOrigin {
		cp.actualAllowed = newHeaderList(actualAllowed)
	}
	cp.actualDisallowed = varyOriginOnly

	// A request without Origin (Fetch, "CORS protocol and HTTP caches"):
	// a "*" policy answers as it answers any origin, so that a cached
	// response serves a later CORS request too; any other policy's answer
	// depends on the Origin, so the response says so for caches.
	cp.noOrigin = cp.actualDisallowed
	cp.noOriginGrouped = cp.noOrigin
	if cp.anyOrigin {
		cp.noOrigin = cp.actualAllowed
		cp.noOriginGrouped = cp.actualAllowedGrouped
	}

	pre := slices.Clone(common)
	if p.MaxAgeInSeconds > 0 {
		pre = append(pre, Header{Name: HeaderMaxAge, Value: strconv.Itoa(p.MaxAgeInSeconds)})
	}
	vary := Header{Name: HeaderVary, Value: varyPreflight, Append: true}
	cp.preflightAllowed = newHeaderList(append(slices.Clone(pre), vary))
	cp.preflightPrivNet = newHeaderList(append(slices.Clone(pre), Header{Name: HeaderAllowPrivateNetwork, Value: "true"}, vary))
	cp.preflightRejected = varyPreflightOnly
}

// The lists every policy has, shared.
var (
	varyOriginOnly    = newHeaderList([]Header{{Name: HeaderVary, Value: varyActual, Append: true}})
	varyPreflightOnly = newHeaderList([]Header{{Name: HeaderVary, Value: varyPreflight, Append: true}})
)

func hashConfig(cfg *Config) string {
	c := *cfg
	c.Authorizers = nil
	sum := sha256.Sum256(fmt.Appendf(nil, "%#v %s", c, hashAuthorizers(cfg.Authorizers)))
	return hex.EncodeToString(sum[:])
}

func quotedList(names []string) string {
	if len(names) == 0 {
		return "(no policies are configured)"
	}
	slices.Sort(names)
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}

package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/corsauthz/corsauthz/internal/limits"
	"github.com/corsauthz/corsauthz/policy/internal/acrh"
	"github.com/corsauthz/corsauthz/policy/internal/origin"
)

// Explanation is a Decision with the reasons spelled out for a person. It is
// built on the slow path (the CLI's explain command, the decision API), never
// for every request.
type Explanation struct {
	Decision Decision
	// Headers are the response headers of the decision, in order.
	Headers []Header
	// Reasons say, one sentence each, how the policy was chosen and which
	// rule matched or failed.
	Reasons []string
	// ClosestOrigin is, for a rejected origin, the allowed origin most like
	// it, and OriginDifferences what differs between them.
	ClosestOrigin     string
	OriginDifferences []string
}

// Verdict is a one-line summary of the decision.
func (x *Explanation) Verdict() string {
	d := &x.Decision
	var s string
	switch d.Kind {
	case KindNotCORS:
		s = "NOT CORS: pass on untouched"
		if len(d.fixed.Headers()) > 0 || d.allowOrigin != "" {
			s = "NOT CORS (no Origin): pass on; add the headers caches need to the response"
		}
	case KindPreflightAllowed:
		s = "PREFLIGHT ALLOWED: answer 204 with the CORS headers"
	case KindPreflightRejected:
		s = "PREFLIGHT REJECTED: answer 403 without CORS headers"
	case KindActualAllowed:
		s = "ACTUAL REQUEST ALLOWED: pass on; add the CORS headers to the response"
	case KindActualDisallowed:
		if d.Status == 403 {
			s = "ACTUAL REQUEST REJECTED: answer 403 (origin not allowed)"
		} else {
			s = "ACTUAL REQUEST NOT ALLOWED: pass on; the browser will hide the response (only Vary added)"
		}
	}
	if d.Policy != "" && d.Group != "" {
		s += fmt.Sprintf(" (policy %q of %s)", d.Policy, d.Group)
	} else if d.Policy != "" {
		s += fmt.Sprintf(" (policy %q)", d.Policy)
	}
	if d.ReportOnly {
		s = "REPORT ONLY, request passes untouched; would be: " + s
	}
	return s
}

// Explain decides r like [Engine.Decide] and says why.
func (e *Engine) Explain(r *Request) (Explanation, error) {
	d, err := e.Decide(r)
	if err != nil {
		return Explanation{}, err
	}
	x := Explanation{Decision: d, Headers: d.AppendHeaders(nil)}
	p := e.byName[d.Policy]
	x.Reasons = append(x.Reasons, e.explainSelection(r, p)...)
	if !r.isCORS() {
		x.Reasons = append(x.Reasons, "the request has no Origin header, so it is not a CORS request")
		x.explainNoOrigin(p, d.Group != "")
		return x, nil
	}
	if p == nil {
		return x, nil
	}
	preflight := r.isPreflight()
	switch {
	case preflight:
		x.Reasons = append(x.Reasons, fmt.Sprintf("OPTIONS with Origin and Access-Control-Request-Method: a preflight asking for %s", r.RequestMethod))
	case r.Method == "OPTIONS":
		x.Reasons = append(x.Reasons, "OPTIONS with Origin but without Access-Control-Request-Method: not a preflight, an actual cross-origin request")
	default:
		x.Reasons = append(x.Reasons, fmt.Sprintf("%s with Origin: an actual cross-origin request", orDash(r.Method)))
	}
	x.explainOrigin(p, r.Origin)
	if d.Reason == ReasonOriginNotAllowed || d.Reason == ReasonOriginTooLong {
		if !preflight && !p.reject {
			x.Reasons = append(x.Reasons, "reject_disallowed_origins is off, so the request goes on; without Access-Control-Allow-Origin the browser keeps the response from the page")
		}
	} else if preflight {
		x.explainMethod(p, r.RequestMethod, d)
		if d.Reason != ReasonMethodNotAllowed && d.Reason != ReasonMethodInvalid {
			x.explainHeaders(p, r.RequestHeaders, d)
		}
		if d.Kind == KindPreflightAllowed {
			x.explainPrivateNetwork(p, r.RequestPrivateNetwork)
		}
	}
	if d.Kind == KindActualAllowed || d.Kind == KindPreflightAllowed {
		if p.credentials {
			x.Reasons = append(x.Reasons, "allow_credentials is on: cookies and Authorization may be sent, and the page may read the response")
		}
	}
	if d.Kind == KindActualAllowed && p.anyOrigin && d.Group != "" {
		x.Reasons = append(x.Reasons, "Vary: Origin is added although the answer is \"*\": in a group, another origin may get another policy's answer")
	}
	if d.ReportOnly {
		x.Reasons = append(x.Reasons, "the policy is report_only: the decision is logged and counted, and the gateway changes nothing")
	}
	return x, nil
}

// explainNoOrigin says what a request without Origin gets under p, and why
// (Fetch, "CORS protocol and HTTP caches").
func (x *Explanation) explainNoOrigin(p *compiledPolicy, grouped bool) {
	switch {
	case p == nil:
		return
	case p.reportOnly:
		x.Reasons = append(x.Reasons, "the policy is report_only: the gateway changes nothing (it would add what is listed for a cache)")
	case p.anyOrigin && !grouped:
		x.Reasons = append(x.Reasons, "the policy allows any origin (\"*\") without credentials, so the response gets Access-Control-Allow-Origin: * as a CORS request's would, and no Vary: a cache may hand it to any page (Fetch, \"CORS protocol and HTTP caches\")")
	default:
		x.Reasons = append(x.Reasons, "the response gets Vary: Origin, so that no cache hands this answer, which has no Access-Control-Allow-Origin, to a later CORS request (Fetch, \"CORS protocol and HTTP caches\")")
	}
}

// explainSelection says how the policy was chosen: by name, by match, by
// default, and for a group which policies shared the match and why the
// Origin picked the one that decided.
func (e *Engine) explainSelection(r *Request, p *compiledPolicy) []string {
	switch {
	case r.Policy != "" && strings.Contains(r.Policy, policyListSep):
		return []string{fmt.Sprintf("the gateway named the group %q (cors_policy context extension); %s", r.Policy, explainPick(r, p))}
	case r.Policy != "":
		return []string{fmt.Sprintf("policy %q was named by the gateway (cors_policy context extension)", r.Policy)}
	case p == nil:
		return []string{fmt.Sprintf("no policy matches host %q and path %q, and there is no default_policy", r.Host, r.Path)}
	}
	var g *routeGroup
	if !e.routes.empty {
		g = e.routes.lookup(r.Host, r.Path)
	}
	if g == nil {
		return []string{fmt.Sprintf("no policy matches host %q and path %q; default_policy %q applies", r.Host, r.Path, p.name)}
	}
	var why []string
	if g.hostRules != "" {
		why = append(why, fmt.Sprintf("host %q matches %q", r.Host, g.hostRules))
	}
	if !g.anyPath {
		why = append(why, fmt.Sprintf("path %q is under %q", r.Path, g.prefix))
	}
	if len(g.policies) == 1 {
		return []string{fmt.Sprintf("policy %q was selected: %s", p.name, strings.Join(why, " and "))}
	}
	return []string{
		fmt.Sprintf("policies %s share this match (%s), so the Origin picks among them", quotedNames(g.policies), strings.Join(why, " and ")),
		explainPick(r, p),
	}
}

// explainPick says why p decided among the policies of a group.
func explainPick(r *Request, p *compiledPolicy) string {
	if !r.isCORS() {
		return fmt.Sprintf("without Origin the first, %q, decides", p.name)
	}
	if ok, _ := p.matchOrigin(r.Origin); ok {
		return fmt.Sprintf("policy %q decides: it is the first of them whose allowed_origins admit origin %q", p.name, r.Origin)
	}
	return fmt.Sprintf("none of them admits origin %q, so the first, %q, decides", r.Origin, p.name)
}

func quotedNames(ps []*compiledPolicy) string {
	q := make([]string, len(ps))
	for i, p := range ps {
		q[i] = strconv.Quote(p.name)
	}
	return strings.Join(q, ", ")
}

// explainOrigin says why o is allowed or not. The origin is quoted cut
// (limits.Cut): a rejected one can be 2,048 bytes, and quoting it whole
// would cost more than the decision.
func (x *Explanation) explainOrigin(p *compiledPolicy, o string) {
	switch {
	case p.anyOrigin:
		x.Reasons = append(x.Reasons, "the policy allows any origin (\"*\"), so Access-Control-Allow-Origin is \"*\"")
		return
	case len(o) > origin.MaxLen:
		x.Reasons = append(x.Reasons, fmt.Sprintf("origin is %d bytes long, more than the %d a real origin can be: it matches nothing", len(o), origin.MaxLen))
		return
	case o == "":
		x.Reasons = append(x.Reasons, "the Origin header is present but empty: a CORS request whose origin matches no listed origin or pattern")
		return
	}
	if p.exactOrigins.has(p.originList, o) {
		x.Reasons = append(x.Reasons, fmt.Sprintf("origin %q is listed in allowed_origins", limits.Cut(o)))
		return
	}
	if p.wildcards.Match(o) {
		if allowed := p.matchingPattern(o); allowed != "" {
			x.Reasons = append(x.Reasons, fmt.Sprintf("origin %q matches %q (one or more labels before the domain)", limits.Cut(o), allowed))
			return
		}
	}
	x.Reasons = append(x.Reasons, fmt.Sprintf("origin %q is not allowed: it is neither listed nor matched by a pattern (origins are compared byte for byte with what browsers send)", limits.Cut(o)))
	var compared int
	x.ClosestOrigin, x.OriginDifferences, compared = p.closestOrigin(o)
	if x.ClosestOrigin != "" {
		x.Reasons = append(x.Reasons, fmt.Sprintf("closest allowed origin: %q; %s", x.ClosestOrigin, strings.Join(x.OriginDifferences, "; ")))
	}
	if compared < len(p.originList) {
		x.Reasons = append(x.Reasons, fmt.Sprintf("the search for the closest allowed origin was cut: it compared %d of the policy's %d allowed origins (at most %d, under the same domain as the request's)", compared, len(p.originList), maxClosestCandidates))
	}
}

// matchingPattern returns the wildcard pattern of the policy that o
// matches, found by trying the patterns o can match, one per label of its
// host (at most a few dozen), rather than the policy's every pattern.
func (p *compiledPolicy) matchingPattern(o string) string {
	i := strings.Index(o, "://")
	if i < 0 {
		return ""
	}
	x := p.indexes()
	scheme, hostPort := o[:i], o[i+3:]
	host, port := hostPort, ""
	if j := strings.LastIndexByte(hostPort, ':'); j >= 0 && !strings.Contains(hostPort[j:], "]") {
		host, port = hostPort[:j], hostPort[j:]
	}
	for j := strings.IndexByte(host, '.'); j >= 0; {
		domain := host[j+1:]
		for _, cand := range [...]string{scheme + "://*." + domain + port, scheme + "://*." + domain} {
			if _, ok := x.wildcardSet[cand]; ok && matchesPattern(cand, o) {
				return cand
			}
		}
		k := strings.IndexByte(domain, '.')
		if k < 0 {
			break
		}
		j += 1 + k
	}
	return ""
}

func matchesPattern(pattern, o string) bool {
	pat, _, err := origin.Parse(pattern)
	if err != nil {
		return false
	}
	var m origin.WildcardMatcher
	m.Add(pat)
	return m.Match(o)
}

func (x *Explanation) explainMethod(p *compiledPolicy, m string, d Decision) {
	switch d.Reason {
	case ReasonMethodInvalid:
		x.Reasons = append(x.Reasons, fmt.Sprintf("Access-Control-Request-Method %q is not a valid method name", m))
		return
	case ReasonMethodNotAllowed:
		msg := fmt.Sprintf("method %q is not allowed; allowed_methods: %s (GET, HEAD and POST are always allowed)", m, listOrNone(p.methods))
		if upper := strings.ToUpper(m); upper != m && (slices.Contains(p.methods, upper) || upper == "GET" || upper == "HEAD" || upper == "POST") {
			msg += fmt.Sprintf("; methods are case-sensitive: the page sent %q, the policy allows %q", m, upper)
		}
		x.Reasons = append(x.Reasons, msg)
		return
	}
	switch m {
	case "GET", "HEAD", "POST":
		x.Reasons = append(x.Reasons, fmt.Sprintf("method %s is always allowed", m))
	default:
		x.Reasons = append(x.Reasons, fmt.Sprintf("method %s is in allowed_methods", m))
	}
}

func (x *Explanation) explainHeaders(p *compiledPolicy, v string, d Decision) {
	switch d.Reason {
	case ReasonHeadersTooLong:
		x.Reasons = append(x.Reasons, fmt.Sprintf("Access-Control-Request-Headers is %d bytes, over the limit of %d", len(v), acrh.MaxLen))
		return
	case ReasonHeaderInvalid:
		x.Reasons = append(x.Reasons, fmt.Sprintf("Access-Control-Request-Headers holds %q, which is not a header name", d.Detail))
		return
	case ReasonHeaderNotAllowed:
		msg := fmt.Sprintf("requested header %q is not allowed; allowed_headers: %s", d.Detail, listOrNone(p.allowedHeaderNames()))
		if p.anyHeader && strings.EqualFold(d.Detail, "authorization") {
			msg += "; \"*\" never covers Authorization: list it by name"
		}
		x.Reasons = append(x.Reasons, msg)
		return
	}
	var names []string
	for elem, i, ok := acrh.Next(v, 0); ok; elem, i, ok = acrh.Next(v, i) {
		names = append(names, strings.ToLower(elem))
	}
	if len(names) == 0 {
		x.Reasons = append(x.Reasons, "no headers were requested")
		return
	}
	x.Reasons = append(x.Reasons, fmt.Sprintf("requested headers %s are allowed", strings.Join(names, ", ")))
}

func (p *compiledPolicy) allowedHeaderNames() []string {
	names := make([]string, 0, len(p.headers)+1)
	if p.anyHeader {
		names = append(names, "*")
	}
	for h := range p.headers {
		names = append(names, h)
	}
	slices.Sort(names)
	return names
}

func (x *Explanation) explainPrivateNetwork(p *compiledPolicy, v string) {
	if v != "true" {
		return
	}
	// Chrome 142 replaced Private Network Access preflights with the Local
	// Network Access permission prompt; only older browsers still ask.
	const legacy = " (Private Network Access is legacy: Chrome 142 and later ask the user instead, with the Local Network Access permission prompt, and send no such preflight)"
	if p.allowPrivNet {
		x.Reasons = append(x.Reasons, "private network access was requested and allow_private_network is on"+legacy)
	} else {
		x.Reasons = append(x.Reasons, "private network access was requested but allow_private_network is off: the preflight is answered without Access-Control-Allow-Private-Network, so the browser blocks the private-network request"+legacy)
	}
}

// The closest-origin search is bounded, so that explaining a rejected
// origin costs the same on a policy of ten origins and on one of ten
// thousand (docs/operations-and-limits.md, "Limits"). On a policy with more than maxClosestCandidates
// allowed origins it compares at most that many: those whose host is the
// request's host or one of its parent domains, then those under the same
// site (the host's last two labels), each found in an index; and only the
// first maxClosestCompareLen bytes of each.
const (
	maxClosestCandidates = 8
	maxClosestCompareLen = 32
)

// closestOrigin finds the allowed origin (or pattern) most like o and says
// what differs: scheme, host or port. compared is how many allowed
// origins it looked at.
func (p *compiledPolicy) closestOrigin(o string) (closest string, diffs []string, compared int) {
	candidates := p.originList
	if len(candidates) > maxClosestCandidates {
		candidates = p.closestCandidates(splitOrigin(o).host)
	}
	best, bestDist := "", -1
	lo := strings.ToLower(prefix(o, maxClosestCompareLen))
	for _, a := range candidates {
		d := shortDistance(strings.ToLower(prefix(stripWildcard(a), maxClosestCompareLen)), lo)
		if bestDist < 0 || d < bestDist {
			best, bestDist = a, d
		}
	}
	if best == "" {
		return "", nil, len(candidates)
	}
	return best, originDifferences(best, o), len(candidates)
}

// shortDistance is levenshtein for strings of at most
// maxClosestCompareLen bytes, without allocating.
func shortDistance(a, b string) int {
	var prev, cur [maxClosestCompareLen + 1]int
	for j := range len(b) + 1 {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// closestCandidates returns at most maxClosestCandidates allowed origins
// for a request's host: those of the host itself and of its parent
// domains, nearest first, then those of its site.
func (p *compiledPolicy) closestCandidates(host string) []string {
	x := p.indexes()
	host = hostKey(host)
	var out []string
	seen := map[int32]bool{}
	add := func(idx []int32) {
		for _, i := range idx {
			if len(out) == maxClosestCandidates {
				return
			}
			if !seen[i] {
				seen[i] = true
				out = append(out, p.originList[i])
			}
		}
	}
	for h := host; h != ""; {
		add(x.byHost[h])
		i := strings.IndexByte(h, '.')
		if i < 0 {
			break
		}
		h = h[i+1:]
	}
	add(x.bySite[siteKey(host)])
	return out
}

// explainIndex is what Explain looks allowed origins up in: the
// wildcard patterns, and for a policy with more allowed origins than the
// closest-origin search compares, the indexes of originList by host and by
// site, at most maxClosestCandidates origins under each key.
type explainIndex struct {
	wildcardSet map[string]struct{}
	byHost      map[string][]int32
	bySite      map[string][]int32
}

// indexes returns p's explainIndex, building it on the first call: only
// Explain needs it, and only for a rejected origin or a pattern's match,
// so a configuration that is never explained never pays for it.
func (p *compiledPolicy) indexes() *explainIndex {
	p.explainOnce.Do(func() {
		x := &explainIndex{wildcardSet: map[string]struct{}{}}
		for _, o := range p.originList {
			if strings.Contains(o, "*.") {
				x.wildcardSet[o] = struct{}{}
			}
		}
		if len(p.originList) > maxClosestCandidates {
			x.byHost, x.bySite = map[string][]int32{}, map[string][]int32{}
			for i, o := range p.originList {
				host := hostKey(splitOrigin(stripWildcard(o)).host)
				if len(x.byHost[host]) < maxClosestCandidates {
					x.byHost[host] = append(x.byHost[host], int32(i))
				}
				if site := siteKey(host); len(x.bySite[site]) < maxClosestCandidates {
					x.bySite[site] = append(x.bySite[site], int32(i))
				}
			}
		}
		p.explain = x
	})
	return p.explain
}

// hostKey is how the indexes compare hosts: in lower case, without a
// trailing dot, at most 256 bytes.
func hostKey(host string) string {
	return strings.ToLower(strings.TrimSuffix(prefixEnd(host, 256), "."))
}

// siteKey is the last two labels of a hostKey: "example.com" for
// "app.example.com".
func siteKey(host string) string {
	i := strings.LastIndexByte(host, '.')
	if i < 0 {
		return host
	}
	if j := strings.LastIndexByte(host[:i], '.'); j >= 0 {
		return host[j+1:]
	}
	return host
}

// prefix is the first n bytes of s at most; prefixEnd the last n.
func prefix(s string, n int) string { return s[:min(len(s), n)] }

func prefixEnd(s string, n int) string { return s[max(0, len(s)-n):] }

func stripWildcard(o string) string { return strings.Replace(o, "*.", "", 1) }

type originParts struct {
	scheme, host, port string
}

// splitOrigin splits an origin loosely; it never fails, so that anything a
// client sends can be compared.
func splitOrigin(o string) originParts {
	var p originParts
	rest := o
	if i := strings.Index(o, "://"); i >= 0 {
		p.scheme, rest = o[:i], o[i+3:]
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.LastIndexByte(rest, ':'); i >= 0 && !strings.Contains(rest[i:], "]") {
		p.host, p.port = rest[:i], rest[i+1:]
	} else {
		p.host = rest
	}
	return p
}

func defaultPort(scheme string) string {
	switch scheme {
	case "https", "wss":
		return "443"
	case "http", "ws":
		return "80"
	}
	return ""
}

func originDifferences(allowed, o string) []string {
	a, r := splitOrigin(allowed), splitOrigin(o)
	var diffs []string
	if o == "null" {
		return []string{"the request's Origin is \"null\" (a sandboxed iframe, a file page or a redirect across origins); it matches only a listed \"null\""}
	}
	if r.scheme != a.scheme {
		if strings.EqualFold(r.scheme, a.scheme) {
			diffs = append(diffs, fmt.Sprintf("scheme differs only in case (%q): browsers send it in lower case", limits.Cut(r.scheme)))
		} else {
			diffs = append(diffs, fmt.Sprintf("scheme differs: the request has %q, the policy %q", limits.Cut(r.scheme), a.scheme))
		}
	}
	wildcard := strings.HasPrefix(a.host, "*.")
	domain := strings.TrimPrefix(a.host, "*.")
	switch {
	case strings.EqualFold(r.host, a.host) && r.host != a.host:
		diffs = append(diffs, fmt.Sprintf("host differs only in case (%q): browsers send it in lower case, and origins are compared byte for byte", limits.Cut(r.host)))
	case strings.TrimSuffix(r.host, ".") == a.host && r.host != a.host:
		diffs = append(diffs, "host has a trailing dot, which the policy's origin does not")
	case wildcard && r.host == domain:
		diffs = append(diffs, fmt.Sprintf("host %q is the apex: %q matches subdomains only; list %q too", limits.Cut(r.host), allowed, a.scheme+"://"+domain))
	case wildcard && strings.HasSuffix(r.host, domain) && !strings.HasSuffix(r.host, "."+domain):
		diffs = append(diffs, fmt.Sprintf("host %q only ends with %q; it is not a subdomain of it", limits.Cut(r.host), domain))
	case wildcard && strings.HasSuffix(r.host, "."+domain):
		// the host fits the pattern; something else differs
	case !wildcard && strings.HasSuffix(r.host, "."+a.host):
		diffs = append(diffs, fmt.Sprintf("host %q is a subdomain of %q, which is listed exactly; add it, or a pattern such as %q", limits.Cut(r.host), a.host, a.scheme+"://*."+a.host))
	case !wildcard && strings.HasSuffix(a.host, "."+r.host):
		diffs = append(diffs, fmt.Sprintf("host %q is a parent domain of the allowed %q", limits.Cut(r.host), a.host))
	case r.host != a.host && !wildcard:
		diffs = append(diffs, fmt.Sprintf("host differs: the request has %q, the policy %q", limits.Cut(r.host), a.host))
	case wildcard:
		diffs = append(diffs, fmt.Sprintf("host %q is not a subdomain of %q", limits.Cut(r.host), domain))
	}
	if r.port != a.port {
		switch {
		case r.port == defaultPort(r.scheme) && a.port == "":
			diffs = append(diffs, fmt.Sprintf("the request names the default port %s, which browsers never send", r.port))
		default:
			diffs = append(diffs, fmt.Sprintf("port differs: the request has %s, the policy %s", portOrDefault(limits.Cut(r.port)), portOrDefault(a.port)))
		}
	}
	if len(diffs) == 0 {
		diffs = append(diffs, "the request's Origin is not a serialized origin as browsers send it")
	}
	return diffs
}

func portOrDefault(p string) string {
	if p == "" {
		return "the default port"
	}
	if _, err := strconv.Atoi(p); err != nil {
		return strconv.Quote(p)
	}
	return p
}

func quoteAll(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = strconv.Quote(v)
	}
	return strings.Join(q, ", ")
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, ", ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

package policy

import (
	"strings"

	"github.com/corsauthz/corsauthz/policy/internal/httpsyntax"
)

// routeTable selects a policy from a request's host and path. Exact hosts
// are looked up in a map; "*.domain" hosts by each suffix of the request
// host; policies without hosts are tried last. Within the first bucket that
// has a group whose path prefix matches, the longest prefix wins.
//
// A group is every policy of a bucket with the same path prefix (or with
// none): policies that share a match. The request's Origin picks among
// them (see [routeGroup.pick]), which is how one path serves a first-party
// app with credentials and partners without.
type routeTable struct {
	exactHosts    map[string][]*routeGroup
	wildcardHosts map[string][]*routeGroup // ".domain" -> groups
	anyHost       []*routeGroup
	empty         bool
}

// routeGroup is the policies of one bucket that share a path prefix, in
// file order.
type routeGroup struct {
	prefix    string // "" with anyPath
	anyPath   bool   // the policies have no path_prefixes
	policies  []*compiledPolicy
	names     string // "app, partners" when there are several; "" otherwise
	hostRules string // the host rule the group shares, for Explain
}

// selection is the policy a request selects and how.
type selection struct {
	policy *compiledPolicy
	// group is set when the policy was picked from a match group of
	// several policies; names when picked from several, by match or by a
	// cors_policy list.
	group *routeGroup
	names string
}

// maxHostLen bounds the request hosts looked up: a longer authority selects
// no policy by host.
const maxHostLen = 255 + len(":65535")

// policyListSep separates the names of a cors_policy that names a group:
// "app,partners" (spaces around names are ignored).
const policyListSep = ","

func (e *Engine) selectPolicy(r *Request) (selection, error) {
	cors := r.isCORS()
	if r.Policy != "" {
		if !strings.Contains(r.Policy, policyListSep) {
			p := e.byName[r.Policy]
			if p == nil {
				return selection{}, &UnknownPolicyError{Name: r.Policy}
			}
			return selection{policy: p}, nil
		}
		return e.selectNamedGroup(r.Policy, r.Origin, cors)
	}
	if !e.routes.empty {
		if g := e.routes.lookup(r.Host, r.Path); g != nil {
			return selection{policy: g.pick(r.Origin, cors), group: g, names: g.names}, nil
		}
	}
	return selection{policy: e.defaultPolicy}, nil
}

// selectNamedGroup picks from a cors_policy that lists several policies,
// as a match group picks: the first that admits the Origin, else the first.
// Every name must name a policy, so that a typo is refused whatever the
// Origin, and every policy must ask the same authorizer (or all none), so
// that the Origin never chooses who authorizes (GroupAuthorizerError).
func (e *Engine) selectNamedGroup(list, o string, cors bool) (selection, error) {
	var first, chosen *compiledPolicy
	for rest, more := list, true; more; {
		var name string
		name, rest, more = strings.Cut(rest, policyListSep)
		name = strings.Trim(name, " \t")
		p := e.byName[name]
		if p == nil {
			return selection{}, &UnknownPolicyError{Name: name}
		}
		if first == nil {
			first = p
		} else if p.authorizer != first.authorizer {
			return selection{}, &GroupAuthorizerError{Group: list, First: first.name, FirstAuthorizer: first.authorizer, Other: p.name, OtherAuthorizer: p.authorizer}
		}
		if chosen == nil && cors {
			if ok, _ := p.matchOrigin(o); ok {
				chosen = p
			}
		}
	}
	if chosen == nil {
		chosen = first
	}
	return selection{policy: chosen, names: list}, nil
}

// pick returns the policy of the group that decides for a request with
// Origin o: the first in file order whose allowed_origins admit o, else
// the first. A request without Origin gets the first.
func (g *routeGroup) pick(o string, cors bool) *compiledPolicy {
	if cors && len(g.policies) > 1 {
		for _, p := range g.policies {
			if ok, _ := p.matchOrigin(o); ok {
				return p
			}
		}
	}
	return g.policies[0]
}

func (t *routeTable) add(p *compiledPolicy, m Match) {
	if len(m.Hosts) == 0 && len(m.PathPrefixes) == 0 {
		return
	}
	t.empty = false
	if len(m.Hosts) == 0 {
		t.anyHost = addToGroups(t.anyHost, p, m.PathPrefixes, "")
		return
	}
	for _, h := range m.Hosts {
		if suffix, ok := strings.CutPrefix(h, "*"); ok {
			t.wildcardHosts[suffix] = addToGroups(t.wildcardHosts[suffix], p, m.PathPrefixes, h)
		} else {
			t.exactHosts[h] = addToGroups(t.exactHosts[h], p, m.PathPrefixes, h)
		}
	}
}

// addToGroups adds p to the bucket's group for each of its prefixes (or to
// the any-path group), creating the groups it is the first of.
func addToGroups(groups []*routeGroup, p *compiledPolicy, prefixes []string, host string) []*routeGroup {
	add := func(prefix string, anyPath bool) {
		for _, g := range groups {
			if g.anyPath == anyPath && g.prefix == prefix {
				if g.policies[len(g.policies)-1] != p {
					g.policies = append(g.policies, p)
					g.names += ", " + p.name
				}
				return
			}
		}
		groups = append(groups, &routeGroup{prefix: prefix, anyPath: anyPath, policies: []*compiledPolicy{p}, names: p.name, hostRules: host})
	}
	if len(prefixes) == 0 {
		add("", true)
	}
	for _, prefix := range prefixes {
		add(prefix, false)
	}
	return groups
}

// finish clears the names of groups of one policy, so that only a real
// group is reported as one.
func (t *routeTable) finish() {
	clear := func(groups []*routeGroup) {
		for _, g := range groups {
			if len(g.policies) == 1 {
				g.names = ""
			}
		}
	}
	for _, gs := range t.exactHosts {
		clear(gs)
	}
	for _, gs := range t.wildcardHosts {
		clear(gs)
	}
	clear(t.anyHost)
}

func (t *routeTable) lookup(authority, path string) *routeGroup {
	if len(authority) > maxHostLen {
		return nil
	}
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	if httpsyntax.HasUpper(authority) {
		// Rare (browsers and Envoy send lower case), so the allocation is
		// accepted here rather than complicating every lookup.
		authority = strings.ToLower(authority)
	}
	host := stripPort(authority)
	if g := bestPrefix(t.exactHosts[authority], path); g != nil {
		return g
	}
	if host != authority {
		if g := bestPrefix(t.exactHosts[host], path); g != nil {
			return g
		}
	}
	if len(t.wildcardHosts) > 0 {
		// Longest suffix first: "*.eu.api.example.com" is more specific
		// than "*.example.com". The first label is never part of a suffix.
		for i := 0; i < len(host); i++ {
			if host[i] == '.' && i > 0 {
				if g := bestPrefix(t.wildcardHosts[host[i:]], path); g != nil {
					return g
				}
			}
		}
	}
	return bestPrefix(t.anyHost, path)
}

// stripPort removes a ":port" from an authority, minding IPv6 brackets.
func stripPort(authority string) string {
	i := strings.LastIndexByte(authority, ':')
	if i < 0 || strings.IndexByte(authority[i:], ']') >= 0 {
		return authority
	}
	return authority[:i]
}

func bestPrefix(groups []*routeGroup, path string) *routeGroup {
	var best *routeGroup
	bestLen := -1
	for _, g := range groups {
		if g.anyPath {
			if bestLen < 0 {
				best, bestLen = g, 0
			}
			continue
		}
		if len(g.prefix) > bestLen && prefixMatches(g.prefix, path) {
			best, bestLen = g, len(g.prefix)
		}
	}
	return best
}

// prefixMatches reports whether path (without its query) is under prefix,
// at a segment boundary: "/public" is under "/public" and "/public/x",
// never "/publicity"; a prefix ending in "/" takes whatever starts with it.
func prefixMatches(prefix, path string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || prefix[len(prefix)-1] == '/' || path[len(prefix)] == '/'
}

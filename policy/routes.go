package policy

import (
	"strings"

	"github.com/corsauthz/corsauthz/policy/internal/httpsyntax"
)

// routeTable selects a policy from a request's host and path. Exact hosts
// are looked up in a map; "*.domain" hosts by each suffix of the request
// host; policies without hosts are tried last. Within the first group that
// has a candidate whose path prefix matches, the longest prefix wins, and
// among equals the policy written first.
type routeTable struct {
	exactHosts    map[string][]route
	wildcardHosts map[string][]route // ".domain" -> routes
	anyHost       []route
	empty         bool
}

type route struct {
	prefixes []string // empty: any path
	policy   *compiledPolicy
}

// maxHostLen bounds the request hosts looked up: a longer authority selects
// no policy by host.
const maxHostLen = 255 + len(":65535")

func (e *Engine) selectPolicy(r *Request) (*compiledPolicy, error) {
	if r.Policy != "" {
		p := e.byName[r.Policy]
		if p == nil {
			return nil, &UnknownPolicyError{Name: r.Policy}
		}
		return p, nil
	}
	if !e.routes.empty {
		if p := e.routes.lookup(r.Host, r.Path); p != nil {
			return p, nil
		}
	}
	return e.defaultPolicy, nil
}

func (t *routeTable) add(p *compiledPolicy, m Match) {
	if len(m.Hosts) == 0 && len(m.PathPrefixes) == 0 {
		return
	}
	t.empty = false
	rt := route{prefixes: m.PathPrefixes, policy: p}
	if len(m.Hosts) == 0 {
		t.anyHost = append(t.anyHost, rt)
		return
	}
	for _, h := range m.Hosts {
		if suffix, ok := strings.CutPrefix(h, "*"); ok {
			t.wildcardHosts[suffix] = append(t.wildcardHosts[suffix], rt)
		} else {
			t.exactHosts[h] = append(t.exactHosts[h], rt)
		}
	}
}

func (t *routeTable) lookup(authority, path string) *compiledPolicy {
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
	if p := bestPrefix(t.exactHosts[authority], path); p != nil {
		return p
	}
	if host != authority {
		if p := bestPrefix(t.exactHosts[host], path); p != nil {
			return p
		}
	}
	if len(t.wildcardHosts) > 0 {
		// Longest suffix first: "*.eu.api.example.com" is more specific
		// than "*.example.com". The first label is never part of a suffix.
		for i := 0; i < len(host); i++ {
			if host[i] == '.' && i > 0 {
				if p := bestPrefix(t.wildcardHosts[host[i:]], path); p != nil {
					return p
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

func bestPrefix(routes []route, path string) *compiledPolicy {
	var best *compiledPolicy
	bestLen := -1
	for _, r := range routes {
		if len(r.prefixes) == 0 {
			if bestLen < 0 {
				best, bestLen = r.policy, 0
			}
			continue
		}
		for _, prefix := range r.prefixes {
			if len(prefix) > bestLen && strings.HasPrefix(path, prefix) {
				best, bestLen = r.policy, len(prefix)
			}
		}
	}
	return best
}

package origin

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
)

// Limits a request's Origin must stay within to match anything.
const (
	MaxLen     = 2048
	MaxHostLen = 253
)

// Pattern is one parsed and normalised entry of allowed_origins (other than
// "*" and "null").
type Pattern struct {
	Scheme string
	// Host is the host without brackets or the "*." of a wildcard.
	Host string
	// Port is 0 when the origin has none (or had the scheme's default).
	Port int
	// Wildcard marks "scheme://*.host": one or more labels before Host.
	Wildcard bool
	// IP marks a host that is an IP address.
	IP bool
}

// String returns the pattern as a browser would serialize a matching origin
// (with "*." for a wildcard).
func (p Pattern) String() string {
	var b strings.Builder
	b.WriteString(p.Scheme)
	b.WriteString("://")
	if p.Wildcard {
		b.WriteString("*.")
	}
	if p.IP && strings.Contains(p.Host, ":") {
		b.WriteString("[" + p.Host + "]")
	} else {
		b.WriteString(p.Host)
	}
	if p.Port != 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(p.Port))
	}
	return b.String()
}

// WildcardKey is the part of a matching origin that follows the labels the
// wildcard stands for: ".example.com" or ".example.com:8443". A request
// origin matches the pattern when, for some dot in its host, the rest of the
// origin from that dot equals the key and the scheme is the same.
func (p Pattern) WildcardKey() string {
	k := "." + p.Host
	if p.Port != 0 {
		k += ":" + strconv.Itoa(p.Port)
	}
	return k
}

// IsLoopback reports whether the pattern's host is a loopback address or
// localhost (or a subdomain of it), where plain http is as safe as https.
func (p Pattern) IsLoopback() bool {
	if p.IP {
		a, err := netip.ParseAddr(p.Host)
		return err == nil && a.IsLoopback()
	}
	return p.Host == "localhost" || strings.HasSuffix(p.Host, ".localhost")
}

// IsPublicSuffixWildcard reports whether the pattern is a wildcard directly
// on a public suffix (https://*.com, https://*.co.uk, https://*.github.io),
// which lets anyone who can register a domain match it.
func (p Pattern) IsPublicSuffixWildcard() bool {
	if !p.Wildcard || p.IP || p.IsLoopback() {
		// *.localhost is not on the public suffix list, so the list's
		// default rule would call it one; but only this machine serves it.
		return false
	}
	suffix, _ := publicsuffix.PublicSuffix(p.Host)
	return suffix == p.Host
}

// defaultPorts are the ports a browser leaves out of a serialized origin.
var defaultPorts = map[string]int{"http": 80, "https": 443, "ws": 80, "wss": 443}

// Parse parses one configured origin. It returns the pattern, the notes on
// what it normalised (each a sentence for a warning), or an error saying
// what is wrong and what to write instead.
func Parse(s string) (p Pattern, notes []string, err error) {
	if s == "" {
		return p, nil, fmt.Errorf("empty origin: write a serialized origin such as \"https://app.example.com\"")
	}
	if strings.TrimSpace(s) != s {
		return p, nil, fmt.Errorf("origin %q has surrounding spaces: did you mean %q?", s, strings.TrimSpace(s))
	}
	i := strings.Index(s, "://")
	if i < 0 {
		if strings.HasPrefix(strings.ToLower(s), "file:") {
			return p, nil, fmt.Errorf("file:// origins cannot be allowed: browsers send \"Origin: null\" for file pages; list \"null\" if you really mean it (never with credentials)")
		}
		return p, nil, fmt.Errorf("origin %q has no scheme: did you mean %q?", s, "https://"+strings.TrimRight(s, "/"))
	}
	scheme, rest := s[:i], s[i+3:]
	if !validScheme(scheme) {
		return p, nil, fmt.Errorf("origin %q has an invalid scheme %q: write a scheme such as https", s, scheme)
	}
	if lower := strings.ToLower(scheme); lower != scheme {
		notes = append(notes, fmt.Sprintf("scheme %q normalised to %q, as browsers send it", scheme, lower))
		scheme = lower
	}
	if scheme == "file" {
		return p, nil, fmt.Errorf("file:// origins cannot be allowed: browsers send \"Origin: null\" for file pages; list \"null\" if you really mean it (never with credentials)")
	}
	p.Scheme = scheme

	authority := rest
	if j := strings.IndexAny(rest, "/?#"); j >= 0 {
		authority = rest[:j]
		suggestion := scheme + "://" + authority
		switch {
		case rest[j:] == "/":
			return p, nil, fmt.Errorf("origin %q has a trailing slash, which browsers never send: did you mean %q?", s, suggestion)
		case rest[j] == '/':
			return p, nil, fmt.Errorf("origin %q has a path; an origin is only scheme, host and port: did you mean %q?", s, suggestion)
		case rest[j] == '?':
			return p, nil, fmt.Errorf("origin %q has a query; an origin is only scheme, host and port: did you mean %q?", s, suggestion)
		default:
			return p, nil, fmt.Errorf("origin %q has a fragment; an origin is only scheme, host and port: did you mean %q?", s, suggestion)
		}
	}
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		return p, nil, fmt.Errorf("origin %q has user information, which browsers never send in Origin: did you mean %q?", s, scheme+"://"+authority[at+1:])
	}
	if authority == "" {
		return p, nil, fmt.Errorf("origin %q has no host", s)
	}

	host, portStr, hasPort, err := splitHostPort(authority)
	if err != nil {
		return p, nil, fmt.Errorf("origin %q: %v", s, err)
	}
	if hasPort {
		port, err := strconv.Atoi(portStr)
		if err != nil || portStr == "" || portStr[0] == '+' || portStr[0] == '-' {
			return p, nil, fmt.Errorf("origin %q has an invalid port %q: write a number from 1 to 65535", s, portStr)
		}
		if port < 1 || port > 65535 {
			return p, nil, fmt.Errorf("origin %q has port %d, outside 1-65535", s, port)
		}
		if strconv.Itoa(port) != portStr {
			notes = append(notes, fmt.Sprintf("port %q normalised to %d, as browsers send it", portStr, port))
		}
		if defaultPorts[scheme] == port {
			notes = append(notes, fmt.Sprintf("default port %d removed: browsers leave it out of Origin", port))
		} else {
			p.Port = port
		}
	}

	if strings.HasPrefix(host, "[") {
		if !strings.HasSuffix(host, "]") {
			return p, nil, fmt.Errorf("origin %q has an unterminated IPv6 address", s)
		}
		a, err := netip.ParseAddr(host[1 : len(host)-1])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return p, nil, fmt.Errorf("origin %q has an invalid IPv6 address %s", s, host)
		}
		if norm := ipv6String(a); norm != host[1:len(host)-1] {
			notes = append(notes, fmt.Sprintf("IPv6 address %s normalised to [%s], as browsers send it", host, norm))
		}
		p.Host, p.IP = ipv6String(a), true
		return p, notes, nil
	}

	if strings.HasPrefix(host, "*.") {
		p.Wildcard = true
		host = host[2:]
	}
	if strings.Contains(host, "*") {
		return p, nil, fmt.Errorf("origin %q has a wildcard that is not the whole first label: write \"scheme://*.example.com\" for any subdomain of example.com, or list each origin", s)
	}
	if strings.HasSuffix(host, ".") {
		return p, nil, fmt.Errorf("origin %q ends its host with a dot, which never matches a browser's usual Origin: did you mean %q?", s, strings.Replace(s, host, strings.TrimSuffix(host, "."), 1))
	}

	ascii := host
	if !isASCII(host) {
		a, err := idna.Lookup.ToASCII(host)
		if err != nil {
			return p, nil, fmt.Errorf("origin %q has an invalid international host name: %v", s, err)
		}
		notes = append(notes, fmt.Sprintf("host %q normalised to its Punycode form %q, as browsers send it", host, a))
		ascii = a
	} else if lower := strings.ToLower(host); lower != host {
		notes = append(notes, fmt.Sprintf("host %q normalised to %q: browsers send host names in lower case", host, lower))
		ascii = lower
	}
	if a, err := netip.ParseAddr(ascii); err == nil && a.Is4() {
		if p.Wildcard {
			return p, nil, fmt.Errorf("origin %q puts a wildcard on an IP address, which has no subdomains", s)
		}
		p.Host, p.IP = a.String(), true
		return p, notes, nil
	}
	if endsInNumber(ascii) {
		return p, nil, fmt.Errorf("origin %q has a host that ends in a number but is not an IPv4 address in dotted-decimal form: browsers rewrite such a host as an IPv4 address or refuse it; write the address as four decimal numbers, such as \"https://192.0.2.1\"", s)
	}
	if err := checkHostName(ascii); err != nil {
		return p, nil, fmt.Errorf("origin %q: %v", s, err)
	}
	p.Host = ascii
	return p, notes, nil
}

// ipv6String serializes an IPv6 address as browsers do: RFC 5952, except
// that an IPv4-mapped address is written in hexadecimal ("::ffff:7f00:1"),
// never with a dotted IPv4 part.
func ipv6String(a netip.Addr) string {
	if !a.Is4In6() {
		return a.String()
	}
	b := a.As16()
	return fmt.Sprintf("::ffff:%x:%x", uint16(b[12])<<8|uint16(b[13]), uint16(b[14])<<8|uint16(b[15]))
}

// endsInNumber reports whether the last label of a lower-case host is a
// number (decimal, or hexadecimal with "0x"): the URL standard then parses
// the whole host as an IPv4 address, so a browser never sends it as written
// unless it is already in dotted-decimal form.
func endsInNumber(h string) bool {
	last := h[strings.LastIndexByte(h, '.')+1:]
	if hex, ok := strings.CutPrefix(last, "0x"); ok {
		return strings.Trim(hex, "0123456789abcdef") == ""
	}
	return last != "" && strings.Trim(last, "0123456789") == ""
}

func splitHostPort(authority string) (host, port string, hasPort bool, err error) {
	if strings.HasPrefix(authority, "[") {
		end := strings.IndexByte(authority, ']')
		if end < 0 {
			return "", "", false, fmt.Errorf("unterminated IPv6 address")
		}
		host, rest := authority[:end+1], authority[end+1:]
		if rest == "" {
			return host, "", false, nil
		}
		if rest[0] != ':' {
			return "", "", false, fmt.Errorf("unexpected %q after the IPv6 address", rest)
		}
		return host, rest[1:], true, nil
	}
	if strings.Count(authority, ":") > 1 {
		return "", "", false, fmt.Errorf("IPv6 addresses must be written in brackets, as in \"https://[::1]:8443\"")
	}
	if i := strings.LastIndexByte(authority, ':'); i >= 0 {
		return authority[:i], authority[i+1:], true, nil
	}
	return authority, "", false, nil
}

func validScheme(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// checkHostName checks a lower-case ASCII host name: labels of 1 to 63
// letters, digits, hyphens or underscores, 253 bytes in all.
func checkHostName(h string) error {
	if h == "" {
		return fmt.Errorf("empty host")
	}
	if len(h) > MaxHostLen {
		return fmt.Errorf("host is longer than %d bytes", MaxHostLen)
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" {
			return fmt.Errorf("host %q has an empty label", h)
		}
		if len(label) > 63 {
			return fmt.Errorf("host %q has a label longer than 63 bytes", h)
		}
		if !IsLabel(label) {
			return fmt.Errorf("host %q has characters a host name cannot hold", h)
		}
	}
	return nil
}

// IsLabel reports whether s is non-empty and made only of lower-case
// letters, digits, hyphens and underscores (browsers accept underscores in
// host names).
func IsLabel(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !hostChar[s[i]] {
			return false
		}
	}
	return true
}

var hostChar = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	t['-'], t['_'] = true, true
	return t
}()

// WildcardMatcher finds whether a request origin matches any of a set of
// wildcard patterns, in time that depends on the number of labels in the
// origin's host, not on the number of patterns.
type WildcardMatcher struct {
	// byScheme maps a scheme to the set of WildcardKeys for it.
	byScheme map[string]map[string]struct{}
}

// Add adds a wildcard pattern.
func (m *WildcardMatcher) Add(p Pattern) {
	if m.byScheme == nil {
		m.byScheme = make(map[string]map[string]struct{})
	}
	keys := m.byScheme[p.Scheme]
	if keys == nil {
		keys = make(map[string]struct{})
		m.byScheme[p.Scheme] = keys
	}
	keys[p.WildcardKey()] = struct{}{}
}

// Empty reports whether no pattern was added.
func (m *WildcardMatcher) Empty() bool { return len(m.byScheme) == 0 }

// Match reports whether origin, a request's Origin value, matches one of the
// patterns. Only a well-formed lower-case origin can match: the labels the
// wildcard stands for must be non-empty and made of host characters.
func (m *WildcardMatcher) Match(origin string) bool {
	i := strings.Index(origin, "://")
	if i <= 0 {
		return false
	}
	keys := m.byScheme[origin[:i]]
	if keys == nil {
		return false
	}
	hostStart := i + 3
	hostEnd := len(origin)
	for j := hostStart; j < len(origin); j++ {
		if origin[j] == ':' {
			hostEnd = j
			break
		}
	}
	if hostEnd-hostStart > MaxHostLen {
		return false
	}
	labelStart := hostStart
	for j := hostStart; j < hostEnd; j++ {
		c := origin[j]
		if c == '.' {
			if j == labelStart {
				return false // empty label
			}
			if _, ok := keys[origin[j:]]; ok {
				return true
			}
			labelStart = j + 1
			continue
		}
		if !hostChar[c] {
			return false
		}
	}
	return false
}

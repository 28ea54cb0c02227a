package origin_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/corsauthz/corsauthz/policy/internal/origin"
)

var parseCases = []struct {
	desc  string
	in    string
	want  origin.Pattern
	notes []string
	err   string // the whole error message; empty when Parse succeeds
}{
	{desc: "https", in: "https://app.example.com", want: origin.Pattern{Scheme: "https", Host: "app.example.com"}},
	{desc: "port", in: "https://app.example.com:8443", want: origin.Pattern{Scheme: "https", Host: "app.example.com", Port: 8443}},
	{desc: "http localhost", in: "http://localhost:3000", want: origin.Pattern{Scheme: "http", Host: "localhost", Port: 3000}},
	{desc: "wildcard", in: "https://*.example.com", want: origin.Pattern{Scheme: "https", Host: "example.com", Wildcard: true}},
	{desc: "wildcard with port", in: "https://*.example.com:8443", want: origin.Pattern{Scheme: "https", Host: "example.com", Port: 8443, Wildcard: true}},
	{desc: "IPv4", in: "http://192.0.2.1:8080", want: origin.Pattern{Scheme: "http", Host: "192.0.2.1", Port: 8080, IP: true}},
	{desc: "IPv6", in: "https://[2001:db8::1]", want: origin.Pattern{Scheme: "https", Host: "2001:db8::1", IP: true}},
	{desc: "underscore and hyphen", in: "https://a_b-c.example.com", want: origin.Pattern{Scheme: "https", Host: "a_b-c.example.com"}},
	{desc: "other scheme", in: "chrome-extension://abcdefgh", want: origin.Pattern{Scheme: "chrome-extension", Host: "abcdefgh"}},
	{desc: "Punycode", in: "https://xn--bcher-kva.example", want: origin.Pattern{Scheme: "https", Host: "xn--bcher-kva.example"}},

	// normalised, with a note
	{
		desc:  "upper-case host",
		in:    "https://APP.Example.com",
		want:  origin.Pattern{Scheme: "https", Host: "app.example.com"},
		notes: []string{`host "APP.Example.com" normalised to "app.example.com": browsers send host names in lower case`},
	},
	{
		desc:  "upper-case scheme",
		in:    "HTTPS://app.example.com",
		want:  origin.Pattern{Scheme: "https", Host: "app.example.com"},
		notes: []string{`scheme "HTTPS" normalised to "https", as browsers send it`},
	},
	{
		desc:  "default https port",
		in:    "https://app.example.com:443",
		want:  origin.Pattern{Scheme: "https", Host: "app.example.com"},
		notes: []string{"default port 443 removed: browsers leave it out of Origin"},
	},
	{
		desc:  "default http port",
		in:    "http://app.example.com:80",
		want:  origin.Pattern{Scheme: "http", Host: "app.example.com"},
		notes: []string{"default port 80 removed: browsers leave it out of Origin"},
	},
	{
		desc:  "https on port 80 keeps it",
		in:    "https://app.example.com:80",
		want:  origin.Pattern{Scheme: "https", Host: "app.example.com", Port: 80},
		notes: nil,
	},
	{
		desc:  "port with leading zeros",
		in:    "https://app.example.com:0443",
		want:  origin.Pattern{Scheme: "https", Host: "app.example.com"},
		notes: []string{`port "0443" normalised to 443, as browsers send it`, "default port 443 removed: browsers leave it out of Origin"},
	},
	{
		desc:  "uncompressed IPv6",
		in:    "https://[0:0:0:0:0:0:0:1]:8443",
		want:  origin.Pattern{Scheme: "https", Host: "::1", Port: 8443, IP: true},
		notes: []string{"IPv6 address [0:0:0:0:0:0:0:1] normalised to [::1], as browsers send it"},
	},
	{
		desc:  "upper-case IPv6",
		in:    "https://[2001:DB8::1]",
		want:  origin.Pattern{Scheme: "https", Host: "2001:db8::1", IP: true},
		notes: []string{"IPv6 address [2001:DB8::1] normalised to [2001:db8::1], as browsers send it"},
	},
	{
		desc:  "IPv4-mapped IPv6 is written in hexadecimal",
		in:    "https://[::ffff:127.0.0.1]",
		want:  origin.Pattern{Scheme: "https", Host: "::ffff:7f00:1", IP: true},
		notes: []string{"IPv6 address [::ffff:127.0.0.1] normalised to [::ffff:7f00:1], as browsers send it"},
	},
	{
		desc:  "Unicode host",
		in:    "https://bücher.example",
		want:  origin.Pattern{Scheme: "https", Host: "xn--bcher-kva.example"},
		notes: []string{`host "bücher.example" normalised to its Punycode form "xn--bcher-kva.example", as browsers send it`},
	},
	{
		desc:  "Unicode wildcard",
		in:    "https://*.Bücher.example",
		want:  origin.Pattern{Scheme: "https", Host: "xn--bcher-kva.example", Wildcard: true},
		notes: []string{`host "Bücher.example" normalised to its Punycode form "xn--bcher-kva.example", as browsers send it`},
	},

	// refused
	{desc: "empty", in: "", err: `empty origin: write a serialized origin such as "https://app.example.com"`},
	{desc: "spaces", in: " https://app.example.com", err: `origin " https://app.example.com" has surrounding spaces: did you mean "https://app.example.com"?`},
	{desc: "no scheme", in: "app.example.com", err: `origin "app.example.com" has no scheme: did you mean "https://app.example.com"?`},
	{desc: "no scheme, trailing slash", in: "app.example.com/", err: `origin "app.example.com/" has no scheme: did you mean "https://app.example.com"?`},
	{desc: "empty scheme", in: "://app.example.com", err: `origin "://app.example.com" has an invalid scheme "": write a scheme such as https`},
	{desc: "scheme starting with a digit", in: "1http://app.example.com", err: `origin "1http://app.example.com" has an invalid scheme "1http": write a scheme such as https`},
	{desc: "file URL", in: "file:///etc/passwd", err: `file:// origins cannot be allowed: browsers send "Origin: null" for file pages; list "null" if you really mean it (never with credentials)`},
	{desc: "file without slashes", in: "file:index.html", err: `file:// origins cannot be allowed: browsers send "Origin: null" for file pages; list "null" if you really mean it (never with credentials)`},
	{desc: "trailing slash", in: "https://app.example.com/", err: `origin "https://app.example.com/" has a trailing slash, which browsers never send: did you mean "https://app.example.com"?`},
	{desc: "path", in: "https://app.example.com/a/b", err: `origin "https://app.example.com/a/b" has a path; an origin is only scheme, host and port: did you mean "https://app.example.com"?`},
	{desc: "query", in: "https://app.example.com?a", err: `origin "https://app.example.com?a" has a query; an origin is only scheme, host and port: did you mean "https://app.example.com"?`},
	{desc: "fragment", in: "https://app.example.com#a", err: `origin "https://app.example.com#a" has a fragment; an origin is only scheme, host and port: did you mean "https://app.example.com"?`},
	{desc: "userinfo", in: "https://u:p@app.example.com", err: `origin "https://u:p@app.example.com" has user information, which browsers never send in Origin: did you mean "https://app.example.com"?`},
	{desc: "no host", in: "https://", err: `origin "https://" has no host`},
	{desc: "port 0", in: "https://app.example.com:0", err: `origin "https://app.example.com:0" has port 0, outside 1-65535`},
	{desc: "port 65536", in: "https://app.example.com:65536", err: `origin "https://app.example.com:65536" has port 65536, outside 1-65535`},
	{desc: "empty port", in: "https://app.example.com:", err: `origin "https://app.example.com:" has an invalid port "": write a number from 1 to 65535`},
	{desc: "signed port", in: "https://app.example.com:+443", err: `origin "https://app.example.com:+443" has an invalid port "+443": write a number from 1 to 65535`},
	{desc: "wildcard inside a label", in: "https://*example.com", err: `origin "https://*example.com" has a wildcard that is not the whole first label: write "scheme://*.example.com" for any subdomain of example.com, or list each origin`},
	{desc: "wildcard not first", in: "https://a.*.example.com", err: `origin "https://a.*.example.com" has a wildcard that is not the whole first label: write "scheme://*.example.com" for any subdomain of example.com, or list each origin`},
	{desc: "wildcard alone", in: "https://*", err: `origin "https://*" has a wildcard that is not the whole first label: write "scheme://*.example.com" for any subdomain of example.com, or list each origin`},
	{desc: "wildcard on an IPv4 address", in: "https://*.192.0.2.1", err: `origin "https://*.192.0.2.1" puts a wildcard on an IP address, which has no subdomains`},
	{desc: "trailing dot", in: "https://app.example.com.", err: `origin "https://app.example.com." ends its host with a dot, which never matches a browser's usual Origin: did you mean "https://app.example.com"?`},
	{desc: "empty label", in: "https://app..example.com", err: `origin "https://app..example.com": host "app..example.com" has an empty label`},
	{desc: "long label", in: "https://" + strings.Repeat("a", 64) + ".example.com", err: `origin "https://` + strings.Repeat("a", 64) + `.example.com": host "` + strings.Repeat("a", 64) + `.example.com" has a label longer than 63 bytes`},
	{desc: "long host", in: "https://" + strings.Repeat("a.", 127) + "com", err: `origin "https://` + strings.Repeat("a.", 127) + `com": host is longer than 253 bytes`},
	{desc: "space in host", in: "https://a b.example", err: `origin "https://a b.example": host "a b.example" has characters a host name cannot hold`},
	{desc: "IPv6 without brackets", in: "https://::1", err: `origin "https://::1": IPv6 addresses must be written in brackets, as in "https://[::1]:8443"`},
	{desc: "unterminated IPv6", in: "https://[::1", err: `origin "https://[::1": unterminated IPv6 address`},
	{desc: "IPv6 zone", in: "https://[fe80::1%eth0]", err: `origin "https://[fe80::1%eth0]" has an invalid IPv6 address [fe80::1%eth0]`},
	{desc: "IPv4 in brackets", in: "https://[192.0.2.1]", err: `origin "https://[192.0.2.1]" has an invalid IPv6 address [192.0.2.1]`},
	{desc: "IPv4 with leading zeros", in: "https://127.000.000.001", err: `origin "https://127.000.000.001" has a host that ends in a number but is not an IPv4 address in dotted-decimal form: browsers rewrite such a host as an IPv4 address or refuse it; write the address as four decimal numbers, such as "https://192.0.2.1"`},
	{desc: "IPv4 as one number", in: "https://2130706433", err: `origin "https://2130706433" has a host that ends in a number but is not an IPv4 address in dotted-decimal form: browsers rewrite such a host as an IPv4 address or refuse it; write the address as four decimal numbers, such as "https://192.0.2.1"`},
	{desc: "IPv4 in hexadecimal", in: "https://0x7f.1", err: `origin "https://0x7f.1" has a host that ends in a number but is not an IPv4 address in dotted-decimal form: browsers rewrite such a host as an IPv4 address or refuse it; write the address as four decimal numbers, such as "https://192.0.2.1"`},
	{desc: "host ending in a hexadecimal number", in: "https://*.example.0x", err: `origin "https://*.example.0x" has a host that ends in a number but is not an IPv4 address in dotted-decimal form: browsers rewrite such a host as an IPv4 address or refuse it; write the address as four decimal numbers, such as "https://192.0.2.1"`},
	{desc: "host ending in a number", in: "https://app.example.123", err: `origin "https://app.example.123" has a host that ends in a number but is not an IPv4 address in dotted-decimal form: browsers rewrite such a host as an IPv4 address or refuse it; write the address as four decimal numbers, such as "https://192.0.2.1"`},
}

func TestParse(t *testing.T) {
	t.Parallel()
	for _, tc := range parseCases {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			got, notes, err := origin.Parse(tc.in)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("Parse(%q) error = %v, want %q", tc.in, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("Parse(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
			if !slices.Equal(notes, tc.notes) {
				t.Errorf("notes = %q, want %q", notes, tc.notes)
			}
		})
	}
}

func TestPatternString(t *testing.T) {
	t.Parallel()
	cases := []struct {
		desc string
		p    origin.Pattern
		want string
	}{
		{desc: "host", p: origin.Pattern{Scheme: "https", Host: "app.example.com"}, want: "https://app.example.com"},
		{desc: "port", p: origin.Pattern{Scheme: "http", Host: "localhost", Port: 3000}, want: "http://localhost:3000"},
		{desc: "wildcard", p: origin.Pattern{Scheme: "https", Host: "example.com", Port: 8443, Wildcard: true}, want: "https://*.example.com:8443"},
		{desc: "IPv6", p: origin.Pattern{Scheme: "https", Host: "::1", Port: 8443, IP: true}, want: "https://[::1]:8443"},
		{desc: "IPv4", p: origin.Pattern{Scheme: "https", Host: "192.0.2.1", IP: true}, want: "https://192.0.2.1"},
	}
	for _, tc := range cases {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("%s: String() = %q, want %q", tc.desc, got, tc.want)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want bool
	}{
		{"http://localhost", true},
		{"http://localhost:3000", true},
		{"http://app.localhost", true},
		{"http://127.0.0.1", true},
		{"http://127.1.2.3:8080", true},
		{"http://[::1]:8080", true},
		{"http://[::ffff:127.0.0.1]", true},
		{"http://localhost.example.com", false},
		{"http://notlocalhost", false},
		{"http://192.0.2.1", false},
		{"http://[::2]", false},
		{"http://app.example.com", false},
	}
	for _, tc := range cases {
		p, _, err := origin.Parse(tc.in)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.in, err)
		}
		if got := p.IsLoopback(); got != tc.want {
			t.Errorf("Parse(%q).IsLoopback() = %t, want %t", tc.in, got, tc.want)
		}
	}
}

func TestIsPublicSuffixWildcard(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want bool
	}{
		{"https://*.com", true},
		{"https://*.co.uk", true},
		{"https://*.github.io", true},
		{"https://*.example.com", false},
		{"https://*.example.co.uk", false},
		{"https://*.app.github.io", false},
		{"http://*.localhost", false}, // not on the list, but only this machine serves it
		{"https://com", false},
		{"https://co.uk", false},
	}
	for _, tc := range cases {
		p, _, err := origin.Parse(tc.in)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.in, err)
		}
		if got := p.IsPublicSuffixWildcard(); got != tc.want {
			t.Errorf("Parse(%q).IsPublicSuffixWildcard() = %t, want %t", tc.in, got, tc.want)
		}
	}
}

var wildcardCases = []struct {
	desc     string
	patterns []string
	origin   string
	want     bool
}{
	{desc: "one label", patterns: []string{"https://*.example.com"}, origin: "https://a.example.com", want: true},
	{desc: "two labels", patterns: []string{"https://*.example.com"}, origin: "https://a.b.example.com", want: true},
	{desc: "apex", patterns: []string{"https://*.example.com"}, origin: "https://example.com"},
	{desc: "no dot boundary", patterns: []string{"https://*.example.com"}, origin: "https://evilexample.com"},
	{desc: "domain as a prefix", patterns: []string{"https://*.example.com"}, origin: "https://a.example.com.evil.net"},
	{desc: "empty first label", patterns: []string{"https://*.example.com"}, origin: "https://.example.com"},
	{desc: "empty inner label", patterns: []string{"https://*.example.com"}, origin: "https://a..example.com"},
	{desc: "scheme", patterns: []string{"https://*.example.com"}, origin: "http://a.example.com"},
	{desc: "no scheme", patterns: []string{"https://*.example.com"}, origin: "a.example.com"},
	{desc: "empty scheme", patterns: []string{"https://*.example.com"}, origin: "://a.example.com"},
	{desc: "port not in pattern", patterns: []string{"https://*.example.com"}, origin: "https://a.example.com:8443"},
	{desc: "default port", patterns: []string{"https://*.example.com"}, origin: "https://a.example.com:443"},
	{desc: "port in pattern", patterns: []string{"https://*.example.com:8443"}, origin: "https://a.example.com:8443", want: true},
	{desc: "port in pattern, none in origin", patterns: []string{"https://*.example.com:8443"}, origin: "https://a.example.com"},
	{desc: "upper case", patterns: []string{"https://*.example.com"}, origin: "https://A.example.com"},
	{desc: "upper-case domain", patterns: []string{"https://*.example.com"}, origin: "https://a.Example.com"},
	{desc: "trailing dot", patterns: []string{"https://*.example.com"}, origin: "https://a.example.com."},
	{desc: "path", patterns: []string{"https://*.example.com"}, origin: "https://a.example.com/"},
	{desc: "userinfo", patterns: []string{"https://*.example.com"}, origin: "https://u@a.example.com"},
	{desc: "percent-encoding", patterns: []string{"https://*.example.com"}, origin: "https://a%2e.example.com"},
	{desc: "most specific of several", patterns: []string{"https://*.example.com", "https://*.eu.example.com"}, origin: "https://a.eu.example.com", want: true},
	{desc: "several schemes", patterns: []string{"https://*.example.com", "http://*.example.net"}, origin: "http://a.example.net", want: true},
	{desc: "several schemes, crossed", patterns: []string{"https://*.example.com", "http://*.example.net"}, origin: "http://a.example.com"},
	{desc: "host of 253 bytes", patterns: []string{"https://*.example.com"}, origin: "https://b" + strings.Repeat(".a", 120) + ".example.com", want: true},
	{desc: "host of 254 bytes", patterns: []string{"https://*.example.com"}, origin: "https://bb" + strings.Repeat(".a", 120) + ".example.com"},
	{desc: "no patterns", origin: "https://a.example.com"},
}

func TestWildcardMatcher(t *testing.T) {
	t.Parallel()
	for _, tc := range wildcardCases {
		var m origin.WildcardMatcher
		for _, s := range tc.patterns {
			p, _, err := origin.Parse(s)
			if err != nil {
				t.Fatalf("%s: Parse(%q): %v", tc.desc, s, err)
			}
			m.Add(p)
		}
		if m.Empty() != (len(tc.patterns) == 0) {
			t.Errorf("%s: Empty() = %t with %d patterns", tc.desc, m.Empty(), len(tc.patterns))
		}
		if got := m.Match(tc.origin); got != tc.want {
			t.Errorf("%s: Match(%q) = %t, want %t", tc.desc, tc.origin, got, tc.want)
		}
	}
}

func TestIsLabel(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{"a": true, "a-b_c9": true, "": false, "A": false, "a.b": false, "a b": false, "*": false, "ü": false} {
		if got := origin.IsLabel(s); got != want {
			t.Errorf("IsLabel(%q) = %t, want %t", s, got, want)
		}
	}
}

// FuzzParseOrigin: Parse never panics, and what it accepts it writes as a
// browser would, so that the written form parses again to the same pattern
// with nothing left to normalise.
func FuzzParseOrigin(f *testing.F) {
	for _, tc := range parseCases {
		f.Add(tc.in)
	}
	for _, tc := range wildcardCases {
		f.Add(tc.origin)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, notes, err := origin.Parse(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("Parse(%q): empty error message", s)
			}
			return
		}
		written := p.String()
		if len(notes) == 0 && written != s {
			t.Errorf("Parse(%q) made no note but writes it as %q", s, written)
		}
		again, notes2, err := origin.Parse(written)
		if err != nil {
			t.Fatalf("Parse(%q) = %+v, written %q, which does not parse: %v", s, p, written, err)
		}
		if again != p || len(notes2) > 0 {
			t.Fatalf("Parse(%q) = %+v, written %q, parses to %+v with notes %q", s, p, written, again, notes2)
		}
		if p.Wildcard && len(p.Host)+2 <= origin.MaxHostLen {
			var m origin.WildcardMatcher
			m.Add(p)
			sub := strings.Replace(written, "*.", "a.", 1)
			apex := strings.Replace(written, "*.", "", 1)
			if !m.Match(sub) || m.Match(apex) {
				t.Errorf("pattern %q: Match(%q) = %t, Match(%q) = %t; want true, false", written, sub, m.Match(sub), apex, m.Match(apex))
			}
		}
	})
}

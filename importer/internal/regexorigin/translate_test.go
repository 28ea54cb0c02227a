package regexorigin

import (
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/corsauthz/corsauthz/policy"
)

var translateTable = []struct {
	desc      string
	expr      string
	opt       Options
	same      bool
	any       bool
	exact     []string
	wildcards []string
	extra     string // one origin Extra must hold
	missing   string // one origin Missing must hold
}{
	{desc: "every subdomain", expr: `https://.*\.example\.com`, same: true, wildcards: []string{"https://*.example.com"}},
	{desc: "anchored", expr: `^https://app\.example\.com$`, same: true, exact: []string{"https://app.example.com"}},
	{desc: "optional www and scheme", expr: `https?://(www\.)?example\.com`, same: true, exact: []string{"https://www.example.com", "https://example.com", "http://www.example.com", "http://example.com"}},
	{desc: "any", expr: `.*`, same: true, any: true},
	{desc: "any, one or more", expr: `.+`, same: true, any: true},
	{desc: "subdomain with a port", expr: `https://.+\.example\.com:8443`, same: true, wildcards: []string{"https://*.example.com:8443"}},
	{desc: "istio#57104: an unescaped dot", expr: `https://dashboard.(alpha\.test\.xyz|beta\.test\.xyz)`, exact: []string{"https://dashboard.alpha.test.xyz", "https://dashboard.beta.test.xyz"}, extra: "https://dashboardxalpha.test.xyz"},
	{desc: "one label only", expr: `https://[a-z0-9-]+\.example\.com`, wildcards: []string{"https://*.example.com"}, missing: "https://x.y.example.com"},
	{desc: "kgateway#10013: an unescaped dot after a class", expr: `https://[a-zA-Z0-9]*.example.com`, wildcards: []string{"https://*.example.com"}, extra: "https://evilexample.com"},
	{desc: "no dot before the domain", expr: `https://.*example\.com`, exact: []string{"https://example.com"}, wildcards: []string{"https://*.example.com"}, extra: "https://evilexample.com"},
	{desc: "no scheme", expr: `.*\.envoyproxy\.io`, extra: "http://x.envoyproxy.io"},
	{desc: "upper case never matches", expr: `https://App\.example\.com`, exact: []string{"https://app.example.com"}, missing: "https://app.example.com"},
	{desc: "upper case, ignoring case", expr: `https://App\.example\.com`, opt: Options{FoldCase: true}, same: true, exact: []string{"https://app.example.com"}},
	{desc: "default port", expr: `https://app\.example\.com:443`, exact: []string{"https://app.example.com"}, missing: "https://app.example.com"},
	{desc: "ingress-nginx's list, anchored at the end", expr: `((https://app\.example\.com)|(https://[A-Za-z0-9\-]+\.example\.org))$`, opt: Options{FoldCase: true, Anchor: End}, exact: []string{"https://app.example.com"}, wildcards: []string{"https://*.example.org"}, extra: "xhttps://app.example.com"},
	{desc: "any https origin", expr: `https://.*`, extra: "https://evil.example"},
}

func TestTranslate(t *testing.T) {
	for _, tc := range translateTable {
		t.Run(tc.desc, func(t *testing.T) {
			res, err := Translate(tc.expr, tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			if res.Same != tc.same || res.Any != tc.any {
				t.Errorf("Same %t Any %t, want %t %t (extra %q, missing %q)", res.Same, res.Any, tc.same, tc.any, res.Extra, res.Missing)
			}
			if !tc.any && (!slices.Equal(res.Exact, tc.exact) || !slices.Equal(res.Wildcards, tc.wildcards)) {
				t.Errorf("exact %q wildcards %q, want %q %q", res.Exact, res.Wildcards, tc.exact, tc.wildcards)
			}
			if tc.extra != "" && !slices.Contains(res.Extra, tc.extra) {
				t.Errorf("extra %q, want it to hold %q", res.Extra, tc.extra)
			}
			if tc.missing != "" && !slices.Contains(res.Missing, tc.missing) {
				t.Errorf("missing %q, want it to hold %q", res.Missing, tc.missing)
			}
			if tc.same && (len(res.Extra) > 0 || len(res.Missing) > 0) {
				t.Errorf("same, but extra %q missing %q", res.Extra, res.Missing)
			}
		})
	}
}

func TestTranslateErrors(t *testing.T) {
	if _, err := Translate(`*`, Options{}); err == nil {
		t.Error("invalid expression accepted")
	}
	if _, err := Translate(strings.Repeat("a", MaxLen+1), Options{}); err == nil {
		t.Error("too long expression accepted")
	}
	if _, err := Translate(`\bhttps://a\.b`, Options{}); err == nil {
		t.Error("word boundary accepted")
	}
	// A blow-up of states stops at the work bound instead of running on
	// (the bound counts steps, not time: 0.74 s on an idle 2-core machine).
	_, err := Translate(`(.*a.*b.*c.*d.*e.*f.*g.*h.*i.*j.*k){1,30}`, Options{Anchor: End})
	if !errors.Is(err, ErrTooComplex) {
		t.Errorf("error %v, want ErrTooComplex", err)
	}
}

func TestIsBrowserOrigin(t *testing.T) {
	for o, want := range map[string]bool{
		"https://app.example.com": true, "http://localhost:8080": true, "null": true,
		"https://[::1]:8443": true, "capacitor://localhost": true,
		"https://app.example.com:443": false, "http://a.example:80": false,
		"https://App.example.com": false, "https://app.example.com/": false,
		"https://app.example.com.": false, "https://:8443": false, "": false,
		"https://app.example.com:0443": false,
	} {
		if got := IsBrowserOrigin(o); got != want {
			t.Errorf("IsBrowserOrigin(%q) = %t, want %t", o, got, want)
		}
	}
}

// corpus returns origins to compare a translation on: the probes and the
// examples the proof found, each with its characters swapped for others
// that matter in origins, and labels added and removed.
func corpus(res *Result, expr string) []string {
	seeds := probes(res, res.Exact, res.Wildcards)
	seeds = append(seeds, res.Admitted...)
	seeds = append(seeds, res.Exact...)
	for _, w := range res.Wildcards {
		seeds = append(seeds, strings.Replace(w, "*", "a", 1), strings.Replace(w, "*", "a.b", 1), strings.Replace(w, "*.", "", 1))
	}
	// The literal text of the expression, read as an origin.
	plain := strings.NewReplacer(`\`, "", "^", "", "$", "", "(", "", ")", "", "?", "", "*", "", "+", "").Replace(expr)
	seeds = append(seeds, plain, "https://"+plain, "http://"+plain)
	out := map[string]bool{}
	for _, s := range seeds {
		out[s] = true
		for i := 0; i < len(s) && len(out) < 5000; i++ {
			for _, c := range []byte{'x', '.', '-', '_', '1', ':'} {
				out[s[:i]+string(c)+s[i+1:]] = true
			}
			out[s[:i]+s[i+1:]] = true
		}
		out["x."+s] = true
		out[s+".evil.net"] = true
		out[s+":8443"] = true
	}
	list := make([]string, 0, len(out))
	for s := range out {
		list = append(list, s)
	}
	slices.Sort(list)
	return list
}

// FuzzTranslate: for every expression Translate reads as exactly the same
// set, corsauthz (policy.Engine) admits exactly the origins Go's regexp,
// anchored as the source anchors it, admits, on a corpus of browser
// origins made from the expression.
func FuzzTranslate(f *testing.F) {
	for _, tc := range translateTable {
		f.Add(tc.expr, tc.opt.FoldCase, tc.opt.Anchor == End)
	}
	f.Fuzz(func(t *testing.T, expr string, fold, end bool) {
		if len(expr) > 128 {
			return
		}
		opt := Options{FoldCase: fold}
		src := `^(?:` + expr + `)$`
		if end {
			opt.Anchor = End
			src = `(?:` + expr + `)$`
		}
		if fold {
			src = `(?i)` + src
		}
		res, err := Translate(expr, opt)
		if err != nil || !res.Same {
			return
		}
		re, err := regexp.Compile(src)
		if err != nil {
			t.Fatalf("Translate read %q, which Go's regexp refuses: %v", expr, err)
		}
		origins := append(slices.Clone(res.Exact), res.Wildcards...)
		if res.Any {
			origins = []string{"*"}
		}
		if len(origins) == 0 {
			origins = []string{"https://never.invalid"} // admits no browser origin
		}
		e, _, err := policy.Compile(&policy.Config{Policies: []policy.Policy{{Name: "p", AllowedOrigins: origins}}})
		if err != nil {
			// An origin corsauthz refuses (a host ending in a number, say)
			// is one the importer reports as unsupported, never emits.
			return
		}
		for _, o := range corpus(res, expr) {
			if !IsBrowserOrigin(o) {
				continue
			}
			d, err := e.Decide(&policy.Request{Method: "GET", Origin: o, Policy: "p"})
			if err != nil {
				t.Fatal(err)
			}
			got := d.Kind == policy.KindActualAllowed
			if want := re.MatchString(o); got != want && !(len(res.Exact)+len(res.Wildcards) == 0 && !res.Any && !want) {
				t.Fatalf("%q (fold %t, end-anchored %t) translated to %q: corsauthz admits %q: %t, the regexp: %t", expr, fold, end, origins, o, got, want)
			}
		}
	})
}

package importer_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/corsauthz/corsauthz/importer"
	"github.com/corsauthz/corsauthz/policy"
)

var update = flag.Bool("update", false, "rewrite the golden files of TestGolden")

// importFile imports one test file, whose directory names its format.
func importFile(t *testing.T, path string) *importer.Result {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	format := importer.Format(filepath.Base(filepath.Dir(path)))
	res, err := importer.Import(format, []importer.Input{{Name: filepath.ToSlash(path), Data: data}})
	if err != nil {
		t.Fatalf("import --from %s %s: %v", format, path, err)
	}
	return res
}

// TestGolden imports every file under testdata and compares what
// corsauthz import prints (notes and findings, then the configuration)
// with the file's .golden; go test -run TestGolden -update rewrites them.
// Every configuration printed must load as it is.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test data: %v", err)
	}
	for _, path := range files {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			res := importFile(t, path)
			var got bytes.Buffer
			for _, n := range res.Notes {
				fmt.Fprintln(&got, n)
			}
			for _, f := range res.Findings {
				fmt.Fprintln(&got, f)
			}
			got.WriteString("--- stdout\n")
			got.Write(res.YAML())

			golden := strings.TrimSuffix(path, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update to write it)", err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("output differs from %s (go test -run TestGolden -update rewrites it):\n%s", golden, got.String())
			}
			if len(res.Policies) == 0 {
				return
			}
			e, warnings, err := policy.Load(path+" (imported)", res.YAML())
			if err != nil {
				t.Fatalf("the imported configuration does not load:\n%v\n%s", err, res.YAML())
			}
			if len(warnings) > 0 {
				t.Errorf("the imported configuration loads with warnings: %v", warnings)
			}
			if n := len(e.PolicyNames()); n != len(res.Policies) {
				t.Errorf("%d policies loaded, %d imported", n, len(res.Policies))
			}
		})
	}
}

// sourceRegex says whether the source's RE2 regex (a full match, as
// Envoy's safe_regex) admits origin: the source's own answer, computed
// independently of the importer.
func sourceRegex(expr string) func(string) bool {
	re := regexp.MustCompile(`^(?:` + expr + `)$`)
	return re.MatchString
}

func exactly(origins ...string) func(string) bool {
	return func(o string) bool {
		for _, x := range origins {
			if o == x {
				return true
			}
		}
		return false
	}
}

func prefixed(p string) func(string) bool {
	return func(o string) bool { return strings.HasPrefix(o, p) }
}
func always(string) bool { return true }

// nginxOrigins is ingress-nginx's origin check: each listed origin
// quoted, its first "*" one label of letters, digits and hyphens, the
// alternatives matched case-insensitively and anchored at the end.
func nginxOrigins(list ...string) func(string) bool {
	var alts []string
	for _, o := range list {
		q := strings.Replace(regexp.QuoteMeta(o), `\*`, `[A-Za-z0-9\-]+`, 1)
		alts = append(alts, "("+q+")")
	}
	re := regexp.MustCompile(`(?i)(` + strings.Join(alts, "|") + `)$`)
	return re.MatchString
}

// decision is a row of a request table: the request, whether the source
// lets the page through (computed by source), whether corsauthz does,
// and, where they differ, words of the finding that says so.
type decision struct {
	desc   string
	host   string
	path   string
	origin string
	method string // a preflight for this method; "" for an actual GET
	header string // Access-Control-Request-Headers of the preflight
	source func(origin string) bool
	// sourceMethod, when set, is the source's answer instead of source.
	sourceAnswer *bool
	corsauthz    bool
	because      string
}

func yes() *bool { b := true; return &b }
func no() *bool  { b := false; return &b }

// TestDecisions runs a table of requests through the imported policies
// and checks each decision: the same as the source's where no finding
// says otherwise, and where it differs, a finding says so.
func TestDecisions(t *testing.T) {
	tables := map[string][]decision{
		"testdata/istio/reference-example.yaml": {
			{desc: "the listed origin", host: "ratings.prod.svc.cluster.local", path: "/", origin: "https://example.com", source: exactly("https://example.com"), corsauthz: true},
			{desc: "a confusion origin", host: "ratings.prod.svc.cluster.local", path: "/", origin: "https://example.com.evil.net", source: exactly("https://example.com"), corsauthz: false},
			{desc: "http variant", host: "ratings.prod.svc.cluster.local", path: "/", origin: "http://example.com", source: exactly("https://example.com"), corsauthz: false},
			{desc: "null", host: "ratings.prod.svc.cluster.local", path: "/", origin: "null", source: exactly("https://example.com"), corsauthz: false},
			{desc: "a listed header", host: "ratings.prod.svc.cluster.local", path: "/", origin: "https://example.com", method: "POST", header: "x-foo-bar", source: always, corsauthz: true},
			{desc: "an unlisted method", host: "ratings.prod.svc.cluster.local", path: "/", origin: "https://example.com", method: "PUT", sourceAnswer: no(), corsauthz: false},
			{desc: "a preflight from another origin is answered 403 where Istio forwards it", host: "ratings.prod.svc.cluster.local", path: "/", origin: "https://evil.example", method: "PUT", sourceAnswer: yes(), corsauthz: false, because: "go on to the service"},
		},
		"testdata/istio/regex-unescaped-dot.yaml": {
			{desc: "an origin of the regex", host: "api.test.xyz", path: "/api/x", origin: "https://dashboard.beta.test.xyz", source: sourceRegex(`https://dashboard.(alpha\.test\.xyz|beta\.test\.xyz|gamma\.test\.xyz)`), corsauthz: true},
			{desc: "the unescaped dot", host: "api.test.xyz", path: "/api/x", origin: "https://dashboardxalpha.test.xyz", source: sourceRegex(`https://dashboard.(alpha\.test\.xyz|beta\.test\.xyz|gamma\.test\.xyz)`), corsauthz: false, because: "https://dashboardxalpha.test.xyz"},
			{desc: "a confusion origin", host: "api.test.xyz", path: "/api/x", origin: "https://dashboard.alpha.test.xyz.evil.net", source: sourceRegex(`https://dashboard.(alpha\.test\.xyz|beta\.test\.xyz|gamma\.test\.xyz)`), corsauthz: false},
			{desc: "http variant", host: "api.test.xyz", path: "/api/x", origin: "http://dashboard.alpha.test.xyz", source: sourceRegex(`https://dashboard.(alpha\.test\.xyz|beta\.test\.xyz|gamma\.test\.xyz)`), corsauthz: false},
			{desc: "another path selects no policy", host: "api.test.xyz", path: "/other", origin: "https://dashboard.alpha.test.xyz", sourceAnswer: no(), corsauthz: false},
		},
		"testdata/istio/regex-any.yaml": {
			{desc: "regex .* with credentials: imported as * without", host: "hostname", path: "/anything", origin: "https://evil.example", source: always, corsauthz: true},
			{desc: "the invalid regex admits nothing (Envoy refuses the configuration)", host: "hostname", path: "/", origin: "https://evil.example", sourceAnswer: no(), corsauthz: false},
		},
		"testdata/istio/authorizationpolicy-options.yaml": {
			{desc: "a subdomain, by the regex", host: "api.example.com", path: "/v1/x", origin: "https://a.b.example.com", source: sourceRegex(`https://.*\.example\.com`), corsauthz: true},
			{desc: "the prefix matcher's confusion origin", host: "api.example.com", path: "/v1/x", origin: "https://app.example.com.evil.net", source: prefixed("https://app.example.com"), corsauthz: false, because: "https://app.example.com.evil.net"},
			{desc: "the apex", host: "api.example.com", path: "/v1/x", origin: "https://example.com", source: sourceRegex(`https://.*\.example\.com`), corsauthz: false},
			{desc: "the normalised exact origin, never matched by the source", host: "api.example.com", path: "/v1/x", origin: "https://app.example.com", source: prefixed("https://app.example.com"), corsauthz: true},
			{desc: "the Envoy prefix also matched /v1x", host: "api.example.com", path: "/v1x", origin: "https://app.example.com", sourceAnswer: yes(), corsauthz: false, because: `also matches "/v1x"`},
		},
		"testdata/envoy/typed-per-filter-config.yaml": {
			{desc: "vhost policy, exact", host: "api.example.com", path: "/x", origin: "https://app.example.com", source: exactly("https://app.example.com"), corsauthz: true},
			{desc: "vhost policy, suffix matcher read as a wildcard", host: "api.example.com", path: "/x", origin: "https://a.example.com", source: always, corsauthz: true},
			{desc: "vhost policy, suffix matcher on http", host: "api.example.com", path: "/x", origin: "http://evil.example.com", source: always, corsauthz: false, because: `the suffix matcher ".example.com"`},
			{desc: "vhost policy, prefix confusion origin", host: "api.example.com", path: "/x", origin: "https://partner.example.org.evil.net", source: always, corsauthz: false, because: "https://partner.example.org.evil.net"},
			{desc: "route policy, contains matcher not imported", host: "api.example.com:8443", path: "/public/x", origin: "https://evilexample.com", source: always, corsauthz: false, because: `the contains matcher "example"`},
			{desc: "TRACE is not imported", host: "api.example.com", path: "/x", origin: "https://app.example.com", method: "TRACE", sourceAnswer: yes(), corsauthz: false, because: "method TRACE"},
		},
		"testdata/envoy/integration-test-routes.yaml": {
			{desc: "vhost \"*\" without credentials", host: "test-host", path: "/cors-vhost-config/test", origin: "https://test-origin.example", source: always, corsauthz: true},
			{desc: "route origins", host: "test-host", path: "/cors-route-config/test", origin: "https://test-origin-1.example", source: exactly("https://test-origin-1.example", "https://test-host-2.example"), corsauthz: true},
			{desc: "route origins, another origin", host: "test-host", path: "/cors-route-config/test", origin: "https://test-origin.example", source: exactly("https://test-origin-1.example", "https://test-host-2.example"), corsauthz: false},
			{desc: "the scheme-less regex is not imported", host: "test-host", path: "/cors-allow-origin-regex/x", origin: "https://www.envoyproxy.io", source: sourceRegex(`.*\.envoyproxy\.io`), corsauthz: false, because: `safe_regex ".*\\.envoyproxy\\.io"`},
		},
		"testdata/ingress-nginx/enable-cors-bare.yaml": {
			{desc: "any origin without credentials", host: "foo.bar.com", path: "/", origin: "https://evil.example", source: always, corsauthz: true},
			{desc: "null", host: "foo.bar.com", path: "/", origin: "null", source: always, corsauthz: true},
			{desc: "Authorization is in the default headers", host: "foo.bar.com", path: "/x", origin: "https://a.example", method: "PATCH", header: "authorization", sourceAnswer: yes(), corsauthz: true},
		},
		"testdata/ingress-nginx/annotations-examples.yaml": {
			{desc: "listed origin with its port", host: "shop.example.com", path: "/api/x", origin: "https://origin-site.com:4443", source: nginxOrigins("https://origin-site.com:4443", "http://origin-site.com", "myprotocol://example.org:1199"), corsauthz: true},
			{desc: "http origin without credentials", host: "shop.example.com", path: "/api/x", origin: "http://origin-site.com", source: nginxOrigins("https://origin-site.com:4443", "http://origin-site.com", "myprotocol://example.org:1199"), corsauthz: true},
			{desc: "confusion origin", host: "shop.example.com", path: "/api/x", origin: "https://origin-site.com:4443.evil.net", source: nginxOrigins("https://origin-site.com:4443"), corsauthz: false},
			{desc: "one label, as in ingress-nginx", host: "wild.example.com", path: "/", origin: "https://a.origin-site.com:4443", source: nginxOrigins("https://*.origin-site.com:4443"), corsauthz: true},
			{desc: "two labels: corsauthz admits more", host: "wild.example.com", path: "/", origin: "https://a.b.origin-site.com:4443", source: nginxOrigins("https://*.origin-site.com:4443"), corsauthz: true, because: "admits one or more labels"},
			{desc: "http wildcard with credentials is dropped", host: "wild.example.com", path: "/", origin: "http://a.origin-site.com", source: nginxOrigins("http://*.origin-site.com"), corsauthz: false, because: "plain http with allow_credentials"},
		},
		"testdata/gateway-api/gep-1767-conformance-routes.yaml": {
			{desc: "exact", path: "/cors-1", origin: "https://www.foo.com", source: always, corsauthz: true},
			{desc: "wildcard, two labels", path: "/cors-1", origin: "https://xpto.www.bar.com", source: always, corsauthz: true},
			{desc: "non-matching", path: "/cors-1", origin: "https://foobar.com", sourceAnswer: no(), corsauthz: false},
			{desc: "confusion origin", path: "/cors-1", origin: "https://www.bar.com.evil.net", sourceAnswer: no(), corsauthz: false},
			{desc: "* with credentials is imported without", path: "/cors-wildcard-methods-headers", origin: "https://other.foo.com", method: "PUT", header: "x-header-1", sourceAnswer: yes(), corsauthz: true},
		},
		"testdata/envoy-gateway/e2e-cors-security-policy.yaml": {
			{desc: "exact", path: "/cors-exact", origin: "https://www.foo.com", source: always, corsauthz: true},
			{desc: "wildcard", path: "/cors-exact", origin: "https://a.b.foobar.com", source: sourceRegex(`https://.*\.foobar\.com`), corsauthz: true},
			{desc: "apex", path: "/cors-exact", origin: "https://foobar.com", source: sourceRegex(`https://.*\.foobar\.com`), corsauthz: false},
			{desc: "* origins", path: "/cors-wildcard", origin: "https://evil.example", source: always, corsauthz: true},
		},
	}
	for file, rows := range tables {
		t.Run(file, func(t *testing.T) {
			res := importFile(t, file)
			e, _, err := policy.Load(file, res.YAML())
			if err != nil {
				t.Fatalf("does not load: %v", err)
			}
			var findings []string
			for _, f := range res.Findings {
				findings = append(findings, f.String())
			}
			for _, row := range rows {
				req := &policy.Request{Method: "GET", Host: row.host, Path: row.path, Origin: row.origin}
				if row.method != "" {
					req.Method, req.RequestMethod, req.RequestHeaders = "OPTIONS", row.method, row.header
				}
				d, err := e.Decide(req)
				if err != nil {
					t.Fatalf("%s: %v", row.desc, err)
				}
				got := d.Kind == policy.KindActualAllowed || d.Kind == policy.KindPreflightAllowed
				if got != row.corsauthz {
					t.Errorf("%s: %s from %s: corsauthz allows %t (%s), want %t", row.desc, req.Method, row.origin, got, d.Reason, row.corsauthz)
				}
				source := false
				if row.sourceAnswer != nil {
					source = *row.sourceAnswer
				} else {
					source = row.source(row.origin)
				}
				if source == row.corsauthz {
					continue
				}
				if row.because == "" {
					t.Errorf("%s: the source allows %t and corsauthz %t, and the row names no finding", row.desc, source, row.corsauthz)
					continue
				}
				found := false
				for _, f := range findings {
					if strings.Contains(f, row.because) {
						found = true
					}
				}
				if !found {
					t.Errorf("%s: the source allows %t and corsauthz %t, but no finding says %q:\n%s", row.desc, source, row.corsauthz, row.because, strings.Join(findings, "\n"))
				}
			}
		})
	}
}

// TestParseErrors: an input that cannot be read fails with its position.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		desc   string
		format importer.Format
		data   string
		want   string
	}{
		{desc: "YAML syntax", format: importer.Istio, data: "kind: VirtualService\nspec: [\n", want: "bad.yaml:2:1: invalid YAML"},
		{desc: "not a mapping", format: importer.GatewayAPI, data: "- a\n- b\n", want: "bad.yaml:1:1: a document must be a mapping"},
		{desc: "a wrong type in a spec", format: importer.Istio, data: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec:\n  hosts: 3\n", want: "bad.yaml:5:3: VirtualService x: spec does not decode"},
		{desc: "a wrong type in an HTTPRoute", format: importer.GatewayAPI, data: "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: x}\nspec:\n  rules: 3\n", want: "bad.yaml:1:1: HTTPRoute x does not decode"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := importer.Import(tc.format, []importer.Input{{Name: "bad.yaml", Data: []byte(tc.data)}})
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error %v, want one starting %q", err, tc.want)
			}
		})
	}
	if _, err := importer.Import("traefik", nil); err == nil {
		t.Fatal("unknown format accepted")
	}
}

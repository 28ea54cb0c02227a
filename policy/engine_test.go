package policy_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/policy/internal/acrh"
)

// decideConfig holds one policy per behaviour under test; the cases pick
// theirs by name, as Envoy's cors_policy context extension does.
const decideConfig = `
policies:
  - name: creds
    allowed_origins:
      - https://app.example.com
      - https://*.preview.example.com
      - http://localhost:3000
    allowed_methods: [PUT, PATCH, DELETE]
    allowed_headers: [Content-Type, Authorization, X-Request-Id]
    exposed_headers: [X-Request-Id, ETag]
    allow_credentials: true
    max_age_seconds: 600
    allow_private_network: true
  - name: exact
    allowed_origins:
      - https://app.example.com
      - http://localhost:3000
      - https://[::1]:8443
      - https://xn--bcher-kva.example
  - name: wild
    allowed_origins: [https://*.example.com]
  - name: wildport
    allowed_origins: [https://*.example.com:8443]
  - name: public
    allowed_origins: ["*"]
    allowed_methods: [PUT]
    allowed_headers: ["*"]
    exposed_headers: [X-Total]
  - name: anyheader
    allowed_origins: [https://app.example.com]
    allowed_headers: ["*"]
  - name: anyheader-auth
    allowed_origins: [https://app.example.com]
    allowed_headers: ["*", Authorization]
  - name: nulls
    allowed_origins: ["null", https://app.example.com]
  - name: strict
    allowed_origins: [https://app.example.com]
    reject_disallowed_origins: true
  - name: report
    allowed_origins: [https://app.example.com]
    allowed_methods: [PUT]
    report_only: true
  - name: lowercase-method
    allowed_origins: [https://app.example.com]
    allowed_methods: [patch]
`

// mustLoad compiles yaml or stops the test.
func mustLoad(tb testing.TB, yaml string) *policy.Engine {
	tb.Helper()
	e, _, err := policy.Load("test.yaml", []byte(yaml))
	if err != nil {
		tb.Fatalf("Load: %v", err)
	}
	return e
}

func preflight(pol, origin, method, headers string) policy.Request {
	return policy.Request{
		Method: "OPTIONS", Host: "api.example.com", Path: "/v1/orders", Policy: pol,
		Origin: origin, RequestMethod: method, RequestHeaders: headers,
	}
}

func actual(pol, method, origin string) policy.Request {
	return policy.Request{Method: method, Host: "api.example.com", Path: "/v1/orders", Policy: pol, Origin: origin}
}

// emptyOrigin marks r as carrying an Origin header with an empty value.
func emptyOrigin(r policy.Request) policy.Request {
	r.OriginPresent = true
	return r
}

func hdr(name, value string) policy.Header { return policy.Header{Name: name, Value: value} }

var (
	varyPreflight = policy.Header{Name: "Vary", Value: "Origin, Access-Control-Request-Method, Access-Control-Request-Headers", Append: true}
	varyOrigin    = policy.Header{Name: "Vary", Value: "Origin", Append: true}
)

// headersOf returns the decision's headers, sorted by name so that tests
// compare the set, not the order.
func headersOf(d *policy.Decision) []policy.Header {
	hs := d.AppendHeaders(nil)
	slices.SortStableFunc(hs, func(a, b policy.Header) int { return strings.Compare(a.Name, b.Name) })
	return hs
}

// headerValue returns the value of the header named name in hs, or "".
func headerValue(hs []policy.Header, name string) string {
	for _, h := range hs {
		if h.Name == name {
			return h.Value
		}
	}
	return ""
}

func sortedHeaders(hs ...policy.Header) []policy.Header {
	hs = slices.Clone(hs)
	slices.SortStableFunc(hs, func(a, b policy.Header) int { return strings.Compare(a.Name, b.Name) })
	return hs
}

// decideCases cover every row of the decision table.
var decideCases = []struct {
	desc       string
	req        policy.Request
	kind       policy.Kind
	status     int
	reason     policy.Reason
	detail     string
	reportOnly bool
	headers    []policy.Header
}{
	// no Origin (Fetch, "CORS protocol and HTTP caches")
	{
		desc:    "no Origin, a policy with credentials: not CORS, Vary: Origin for caches",
		req:     actual("creds", "GET", ""),
		kind:    policy.KindNotCORS,
		reason:  policy.ReasonNoOrigin,
		headers: []policy.Header{varyOrigin},
	},
	{
		desc:    "no Origin, a policy of listed origins without credentials: Vary: Origin",
		req:     actual("exact", "GET", ""),
		kind:    policy.KindNotCORS,
		reason:  policy.ReasonNoOrigin,
		headers: []policy.Header{varyOrigin},
	},
	{
		desc:    "no Origin, a wildcard-pattern policy: Vary: Origin",
		req:     actual("wild", "POST", ""),
		kind:    policy.KindNotCORS,
		reason:  policy.ReasonNoOrigin,
		headers: []policy.Header{varyOrigin},
	},
	{
		desc:    "no Origin, a reject_disallowed_origins policy: passes on with Vary: Origin, never 403",
		req:     actual("strict", "GET", ""),
		kind:    policy.KindNotCORS,
		reason:  policy.ReasonNoOrigin,
		headers: []policy.Header{varyOrigin},
	},
	{
		desc:   "no Origin, a * policy without credentials: Access-Control-Allow-Origin: * and Expose-Headers, no Vary",
		req:    actual("public", "GET", ""),
		kind:   policy.KindNotCORS,
		reason: policy.ReasonNoOrigin,
		headers: []policy.Header{
			hdr("Access-Control-Allow-Origin", "*"),
			hdr("Access-Control-Expose-Headers", "X-Total"),
		},
	},
	{
		desc:       "no Origin, a report_only policy: reported, nothing added",
		req:        actual("report", "GET", ""),
		kind:       policy.KindNotCORS,
		reason:     policy.ReasonNoOrigin,
		reportOnly: true,
		headers:    []policy.Header{varyOrigin},
	},
	{
		desc:    "OPTIONS with Access-Control-Request-Method but no Origin is not a preflight: Vary: Origin",
		req:     preflight("creds", "", "PUT", "content-type"),
		kind:    policy.KindNotCORS,
		reason:  policy.ReasonNoOrigin,
		headers: []policy.Header{varyOrigin},
	},
	{
		desc: "OPTIONS with Access-Control-Request-Method but no Origin, a * policy: Access-Control-Allow-Origin: *",
		req:  preflight("public", "", "PUT", ""),
		kind: policy.KindNotCORS, reason: policy.ReasonNoOrigin,
		headers: []policy.Header{
			hdr("Access-Control-Allow-Origin", "*"),
			hdr("Access-Control-Expose-Headers", "X-Total"),
		},
	},

	// Origin present but empty: a CORS request matching nothing listed
	{
		desc:    "empty Origin, listed origins: an actual request from an origin not allowed",
		req:     emptyOrigin(actual("exact", "GET", "")),
		kind:    policy.KindActualDisallowed,
		reason:  policy.ReasonOriginNotAllowed,
		headers: []policy.Header{varyOrigin},
	},
	{
		desc:    "empty Origin with reject_disallowed_origins: 403",
		req:     emptyOrigin(actual("strict", "GET", "")),
		kind:    policy.KindActualDisallowed,
		status:  403,
		reason:  policy.ReasonOriginNotAllowed,
		headers: []policy.Header{varyOrigin},
	},
	{
		desc:   "empty Origin, a * policy: Access-Control-Allow-Origin: *, as for any other value",
		req:    emptyOrigin(actual("public", "GET", "")),
		kind:   policy.KindActualAllowed,
		reason: policy.ReasonAnyOrigin,
		headers: []policy.Header{
			hdr("Access-Control-Allow-Origin", "*"),
			hdr("Access-Control-Expose-Headers", "X-Total"),
		},
	},
	{
		desc:    "empty Origin, a preflight: rejected",
		req:     emptyOrigin(preflight("creds", "", "PUT", "")),
		kind:    policy.KindPreflightRejected,
		status:  403,
		reason:  policy.ReasonOriginNotAllowed,
		headers: []policy.Header{varyPreflight},
	},
	{
		desc:   "empty Origin, a preflight to a * policy: allowed with *",
		req:    emptyOrigin(preflight("public", "", "PUT", "")),
		kind:   policy.KindPreflightAllowed,
		status: 204,
		reason: policy.ReasonAnyOrigin,
		headers: []policy.Header{
			hdr("Access-Control-Allow-Origin", "*"),
			hdr("Access-Control-Allow-Methods", "PUT"),
			varyPreflight,
		},
	},

	// preflight allowed
	{
		desc:   "preflight allowed: origin, method, headers, credentials, max-age",
		req:    preflight("creds", "https://app.example.com", "PUT", "content-type,x-request-id"),
		kind:   policy.KindPreflightAllowed,
		status: 204,
		reason: policy.ReasonOriginAllowed,
		headers: []policy.Header{
			hdr("Access-Control-Allow-Origin", "https://app.example.com"),
			hdr("Access-Control-Allow-Methods", "PUT"),
			hdr("Access-Control-Allow-Headers", "content-type,x-request-id"),
			hdr("Access-Control-Allow-Credentials", "true"),
			hdr("Access-Control-Max-Age", "600"),
			varyPreflight,
		},
	},
	{
		desc:   "preflight allowed without requested headers leaves Access-Control-Allow-Headers out",
		req:    preflight("creds", "https://app.example.com", "DELETE", ""),
		kind:   policy.KindPreflightAllowed,
		status: 204,
		reason: policy.ReasonOriginAllowed,
		headers: []policy.Header{
			hdr("Access-Control-Allow-Origin", "https://app.example.com"),
			hdr("Access-Control-Allow-Methods", "DELETE"),
			hdr("Access-Control-Allow-Credentials", "true"),
			hdr("Access-Control-Max-Age", "600"),
			varyPreflight,
		},
	},
	{
		desc:   "preflight allowed from a wildcard-matched origin echoes that origin",
		req:    preflight("creds", "https://pr-42.preview.example.com", "PATCH", "Authorization"),
		kind:   policy.KindPreflightAllowed,
		status: 204,
		reason: policy.ReasonOriginAllowed,
		headers: []policy.Header{
			hdr("Access-Control-Allow-Origin", "https://pr-42.preview.example.com"),
			hdr("Access-Control-Allow-Methods", "PATCH"),
			hdr("Access-Control-Allow-Headers", "Authorization"),
			hdr("Access-Control-Allow-Credentials", "true"),
			hdr("Access-Control-Max-Age", "600"),
			varyPreflight,
		},
	},
	{
		desc:   "preflight for GET is allowed although allowed_methods is empty; no credentials, no max-age",
		req:    preflight("exact", "https://app.example.com", "GET", ""),
		kind:   policy.KindPreflightAllowed,
		status: 204,
		reason: policy.ReasonOriginAllowed,
		headers: []policy.Header{
			hdr("Access-Control-Allow-Origin", "https://app.example.com"),
			hdr("Access-Control-Allow-Methods", "GET"),
			varyPreflight,
		},
	},
	{
		desc: "preflight asking for private network access from a policy that allows it",
		req: policy.Request{
			Method: "OPTIONS", Policy: "creds", Origin: "http://localhost:3000",
			RequestMethod: "PUT", RequestPrivateNetwork: "true",
		},
		kind:   policy.KindPreflightAllowed,
		status: 204,
		reason: policy.ReasonOriginAllowed,
		headers: []policy.Header{
			hdr("Access-Control-Allow-Origin", "http://localhost:3000"),
			hdr("Access-Control-Allow-Methods", "PUT"),
			hdr("Access-Control-Allow-Credentials", "true"),
			hdr("Access-Control-Max-Age", "600"),
			hdr("Access-Control-Allow-Private-Network", "true"),
			varyPreflight,
		},
	},
	{
		desc: "Access-Control-Request-Private-Network other than \"true\" gets no private-network header",
		req: policy.Request{
			Method: "OPTIONS", Policy: "creds", Origin: "https://app.example.com",
			RequestMethod: "PUT", RequestPrivateNetwork: "TRUE",
		},
		kind:   policy.KindPreflightAllowed,
		status: 204,
		reason: policy.ReasonOriginAllowed,
		headers: []policy.Header{
			hdr("Access-Control-Allow-Origin", "https://app.example.com"),
			hdr("Access-Control-Allow-Methods", "PUT"),
			hdr("Access-Control-Allow-Credentials", "true"),
			hdr("Access-Control-Max-Age", "600"),
			varyPreflight,
		},
	},
	{
		desc: "private network requested but not allowed: still 204, without the header",
		req: policy.Request{
			Method: "OPTIONS", Policy: "exact", Origin: "https://app.example.com",
			RequestMethod: "POST", RequestPrivateNetwork: "true",
		},
		kind:   policy.KindPreflightAllowed,
		status: 204,
		reason: policy.ReasonOriginAllowed,
		headers: []policy.Header{
			hdr("Access-Control-Allow-Origin", "https://app.example.com"),
			hdr("Access-Control-Allow-Methods", "POST"),
			varyPreflight,
		},
	},
	{
		desc:   "preflight to a * policy answers Access-Control-Allow-Origin: *",
		req:    preflight("public", "https://anyone.test", "PUT", "x-custom,content-type"),
		kind:   policy.KindPreflightAllowed,
		status: 204,
		reason: policy.ReasonAnyOrigin,
		headers: []policy.Header{
			hdr("Access-Control-Allow-Origin", "*"),
			hdr("Access-Control-Allow-Methods", "PUT"),
			hdr("Access-Control-Allow-Headers", "x-custom,content-type"),
			varyPreflight,
		},
	},
	{
		desc:   "preflight to a * policy from Origin: null",
		req:    preflight("public", "null", "PUT", ""),
		kind:   policy.KindPreflightAllowed,
		status: 204,
		reason: policy.ReasonAnyOrigin,
		headers: []policy.Header{
			hdr("Access-Control-Allow-Origin", "*"),
			hdr("Access-Control-Allow-Methods", "PUT"),
			varyPreflight,
		},
	},

	// preflight rejected
	{
		desc:    "preflight from an origin not allowed: 403, only Vary",
		req:     preflight("creds", "https://evil.example.net", "PUT", "content-type"),
		kind:    policy.KindPreflightRejected,
		status:  403,
		reason:  policy.ReasonOriginNotAllowed,
		headers: []policy.Header{varyPreflight},
	},
	{
		desc:    "preflight for a method not allowed: 403, only Vary",
		req:     preflight("exact", "https://app.example.com", "PUT", ""),
		kind:    policy.KindPreflightRejected,
		status:  403,
		reason:  policy.ReasonMethodNotAllowed,
		detail:  "PUT",
		headers: []policy.Header{varyPreflight},
	},
	{
		desc:    "methods are case-sensitive: patch is not PATCH",
		req:     preflight("creds", "https://app.example.com", "patch", ""),
		kind:    policy.KindPreflightRejected,
		status:  403,
		reason:  policy.ReasonMethodNotAllowed,
		detail:  "patch",
		headers: []policy.Header{varyPreflight},
	},
	{
		desc:    "a requested method that is not a token",
		req:     preflight("creds", "https://app.example.com", "GE T", ""),
		kind:    policy.KindPreflightRejected,
		status:  403,
		reason:  policy.ReasonMethodInvalid,
		detail:  "GE T",
		headers: []policy.Header{varyPreflight},
	},
	{
		desc:    "preflight for a header not allowed: 403, only Vary",
		req:     preflight("creds", "https://app.example.com", "PUT", "content-type,x-other"),
		kind:    policy.KindPreflightRejected,
		status:  403,
		reason:  policy.ReasonHeaderNotAllowed,
		detail:  "x-other",
		headers: []policy.Header{varyPreflight},
	},
	{
		desc:    "a requested header name that is not a token",
		req:     preflight("anyheader", "https://app.example.com", "GET", "content-type,x y"),
		kind:    policy.KindPreflightRejected,
		status:  403,
		reason:  policy.ReasonHeaderInvalid,
		detail:  "x y",
		headers: []policy.Header{varyPreflight},
	},
	{
		desc:    "allowed_headers * does not cover Authorization",
		req:     preflight("anyheader", "https://app.example.com", "GET", "x-anything,authorization"),
		kind:    policy.KindPreflightRejected,
		status:  403,
		reason:  policy.ReasonHeaderNotAllowed,
		detail:  "authorization",
		headers: []policy.Header{varyPreflight},
	},
	{
		desc:    "Access-Control-Request-Headers of 10,000 bytes fails fast, even with allowed_headers *",
		req:     preflight("anyheader", "https://app.example.com", "GET", strings.Repeat("x-a,", 2500)),
		kind:    policy.KindPreflightRejected,
		status:  403,
		reason:  policy.ReasonHeadersTooLong,
		headers: []policy.Header{varyPreflight},
	},
	{
		desc:    "a rejected preflight to a * policy has no Access-Control-Allow-Origin either",
		req:     preflight("public", "https://anyone.test", "DELETE", ""),
		kind:    policy.KindPreflightRejected,
		status:  403,
		reason:  policy.ReasonMethodNotAllowed,
		detail:  "DELETE",
		headers: []policy.Header{varyPreflight},
	},

	// actual request, origin allowed
	{
		desc:   "actual request allowed: origin, credentials, exposed headers, Vary: Origin",
		req:    actual("creds", "GET", "https://app.example.com"),
		kind:   policy.KindActualAllowed,
		reason: policy.ReasonOriginAllowed,
		headers: []policy.Header{
			hdr("Access-Control-Allow-Origin", "https://app.example.com"),
			hdr("Access-Control-Allow-Credentials", "true"),
			hdr("Access-Control-Expose-Headers", "X-Request-Id, ETag"),
			varyOrigin,
		},
	},
	{
		desc:   "actual request allowed without credentials or exposed headers",
		req:    actual("exact", "POST", "https://app.example.com"),
		kind:   policy.KindActualAllowed,
		reason: policy.ReasonOriginAllowed,
		headers: []policy.Header{
			hdr("Access-Control-Allow-Origin", "https://app.example.com"),
			varyOrigin,
		},
	},
	{
		desc:   "OPTIONS without Access-Control-Request-Method is an actual request",
		req:    actual("exact", "OPTIONS", "https://app.example.com"),
		kind:   policy.KindActualAllowed,
		reason: policy.ReasonOriginAllowed,
		headers: []policy.Header{
			hdr("Access-Control-Allow-Origin", "https://app.example.com"),
			varyOrigin,
		},
	},
	{
		desc:   "actual request to a * policy: Access-Control-Allow-Origin: * and no Vary",
		req:    actual("public", "GET", "https://anyone.test"),
		kind:   policy.KindActualAllowed,
		reason: policy.ReasonAnyOrigin,
		headers: []policy.Header{
			hdr("Access-Control-Allow-Origin", "*"),
			hdr("Access-Control-Expose-Headers", "X-Total"),
		},
	},

	// actual request, origin not allowed
	{
		desc:    "actual request from an origin not allowed: pass on with only Vary: Origin",
		req:     actual("creds", "GET", "https://evil.example.net"),
		kind:    policy.KindActualDisallowed,
		reason:  policy.ReasonOriginNotAllowed,
		headers: []policy.Header{varyOrigin},
	},
	{
		desc:    "actual request from an origin not allowed, with reject_disallowed_origins: 403",
		req:     actual("strict", "GET", "https://evil.example.net"),
		kind:    policy.KindActualDisallowed,
		status:  403,
		reason:  policy.ReasonOriginNotAllowed,
		headers: []policy.Header{varyOrigin},
	},
	{
		desc:   "reject_disallowed_origins changes nothing for an allowed origin",
		req:    actual("strict", "GET", "https://app.example.com"),
		kind:   policy.KindActualAllowed,
		reason: policy.ReasonOriginAllowed,
		headers: []policy.Header{
			hdr("Access-Control-Allow-Origin", "https://app.example.com"),
			varyOrigin,
		},
	},

	// report_only
	{
		desc:       "report_only: an allowed preflight is reported, not answered",
		req:        preflight("report", "https://app.example.com", "PUT", ""),
		kind:       policy.KindPreflightAllowed,
		status:     204,
		reason:     policy.ReasonOriginAllowed,
		reportOnly: true,
		headers: []policy.Header{
			hdr("Access-Control-Allow-Origin", "https://app.example.com"),
			hdr("Access-Control-Allow-Methods", "PUT"),
			varyPreflight,
		},
	},
	{
		desc:       "report_only: a rejected preflight is reported, not answered",
		req:        preflight("report", "https://evil.example.net", "PUT", ""),
		kind:       policy.KindPreflightRejected,
		status:     403,
		reason:     policy.ReasonOriginNotAllowed,
		reportOnly: true,
		headers:    []policy.Header{varyPreflight},
	},
	{
		desc:       "report_only: an actual request from an origin not allowed",
		req:        actual("report", "GET", "https://evil.example.net"),
		kind:       policy.KindActualDisallowed,
		reason:     policy.ReasonOriginNotAllowed,
		reportOnly: true,
		headers:    []policy.Header{varyOrigin},
	},
}

// TestDecide runs decideCases.
func TestDecide(t *testing.T) {
	t.Parallel()
	e := mustLoad(t, decideConfig)
	for _, tc := range decideCases {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			d, err := e.Decide(&tc.req)
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			if d.Kind != tc.kind || d.Status != tc.status || d.Reason != tc.reason || d.Detail != tc.detail || d.ReportOnly != tc.reportOnly {
				t.Errorf("Decide = {Kind: %v, Status: %d, Reason: %v, Detail: %q, ReportOnly: %t}, want {%v, %d, %v, %q, %t}",
					d.Kind, d.Status, d.Reason, d.Detail, d.ReportOnly, tc.kind, tc.status, tc.reason, tc.detail, tc.reportOnly)
			}
			if d.Policy != tc.req.Policy {
				t.Errorf("Policy = %q, want %q", d.Policy, tc.req.Policy)
			}
			if got, want := headersOf(&d), sortedHeaders(tc.headers...); !slices.Equal(got, want) {
				t.Errorf("headers:\n got %v\nwant %v", got, want)
			}
			if want := tc.status != 0 && !tc.reportOnly; d.Direct() != want {
				t.Errorf("Direct() = %t, want %t", d.Direct(), want)
			}
		})
	}
}

// Hosts of exactly 253 and 254 bytes under a wildcard, and an Origin of
// more than 2048 bytes.
var (
	host253    = "b" + strings.Repeat(".a", 120) + ".example.com"
	host254    = "bb" + strings.Repeat(".a", 120) + ".example.com"
	longOrigin = "https://" + strings.Repeat("a", 2030) + ".example.com"
)

// originCases check the byte-for-byte comparison, wildcard label
// boundaries, null, the length limits and the * policy.
var originCases = []struct {
	desc    string
	policy  string
	origin  string
	allowed bool
}{
	{desc: "exact origin", policy: "exact", origin: "https://app.example.com", allowed: true},
	{desc: "upper-case host", policy: "exact", origin: "https://APP.example.com"},
	{desc: "upper-case scheme", policy: "exact", origin: "HTTPS://app.example.com"},
	{desc: "explicit default port", policy: "exact", origin: "https://app.example.com:443"},
	{desc: "other port", policy: "exact", origin: "https://app.example.com:8443"},
	{desc: "trailing dot", policy: "exact", origin: "https://app.example.com."},
	{desc: "trailing slash", policy: "exact", origin: "https://app.example.com/"},
	{desc: "path", policy: "exact", origin: "https://app.example.com/app"},
	{desc: "other scheme", policy: "exact", origin: "http://app.example.com"},
	{desc: "surrounding space", policy: "exact", origin: " https://app.example.com"},
	{desc: "subdomain of an exact origin", policy: "exact", origin: "https://a.app.example.com"},
	{desc: "http localhost with port", policy: "exact", origin: "http://localhost:3000", allowed: true},
	{desc: "localhost without the port", policy: "exact", origin: "http://localhost"},
	{desc: "localhost with another port", policy: "exact", origin: "http://localhost:3001"},
	{desc: "compressed IPv6", policy: "exact", origin: "https://[::1]:8443", allowed: true},
	{desc: "uncompressed IPv6", policy: "exact", origin: "https://[0:0:0:0:0:0:0:1]:8443"},
	{desc: "Punycode host", policy: "exact", origin: "https://xn--bcher-kva.example", allowed: true},
	{desc: "Unicode host", policy: "exact", origin: "https://bücher.example"},
	{desc: "null not listed", policy: "exact", origin: "null"},

	{desc: "wildcard: one label", policy: "wild", origin: "https://a.example.com", allowed: true},
	{desc: "wildcard: two labels", policy: "wild", origin: "https://a.b.example.com", allowed: true},
	{desc: "wildcard: hyphen, underscore, digits", policy: "wild", origin: "https://a-1_b.example.com", allowed: true},
	{desc: "wildcard: Punycode label", policy: "wild", origin: "https://xn--bcher-kva.example.com", allowed: true},
	{desc: "wildcard: never the apex", policy: "wild", origin: "https://example.com"},
	{desc: "wildcard: empty label", policy: "wild", origin: "https://.example.com"},
	{desc: "wildcard: empty inner label", policy: "wild", origin: "https://a..example.com"},
	{desc: "wildcard: suffix without a dot boundary", policy: "wild", origin: "https://evilexample.com"},
	{desc: "wildcard: label ending in the domain name", policy: "wild", origin: "https://a.evilexample.com"},
	{desc: "wildcard: domain as a prefix of another", policy: "wild", origin: "https://a.example.com.evil.net"},
	{desc: "wildcard: http instead of https", policy: "wild", origin: "http://a.example.com"},
	{desc: "wildcard: other scheme", policy: "wild", origin: "wss://a.example.com"},
	{desc: "wildcard: explicit default port", policy: "wild", origin: "https://a.example.com:443"},
	{desc: "wildcard: other port", policy: "wild", origin: "https://a.example.com:8443"},
	{desc: "wildcard: upper-case label", policy: "wild", origin: "https://A.example.com"},
	{desc: "wildcard: upper-case domain", policy: "wild", origin: "https://a.EXAMPLE.com"},
	{desc: "wildcard: upper-case scheme", policy: "wild", origin: "HTTPS://a.example.com"},
	{desc: "wildcard: trailing dot", policy: "wild", origin: "https://a.example.com."},
	{desc: "wildcard: trailing slash", policy: "wild", origin: "https://a.example.com/"},
	{desc: "wildcard: path", policy: "wild", origin: "https://a.example.com/x"},
	{desc: "wildcard: userinfo", policy: "wild", origin: "https://user@a.example.com"},
	{desc: "wildcard: space in label", policy: "wild", origin: "https://a b.example.com"},
	{desc: "wildcard: literal star", policy: "wild", origin: "https://*.example.com"},
	{desc: "wildcard: Unicode label", policy: "wild", origin: "https://bücher.example.com"},
	{desc: "wildcard: no scheme", policy: "wild", origin: "a.example.com"},
	{desc: "wildcard: host of 253 bytes", policy: "wild", origin: "https://" + host253, allowed: true},
	{desc: "wildcard: host longer than 253 bytes", policy: "wild", origin: "https://" + host254},
	{desc: "wildcard: Origin longer than 2048 bytes", policy: "wild", origin: longOrigin},
	{desc: "wildcard with port: same port", policy: "wildport", origin: "https://a.example.com:8443", allowed: true},
	{desc: "wildcard with port: no port", policy: "wildport", origin: "https://a.example.com"},
	{desc: "wildcard with port: other port", policy: "wildport", origin: "https://a.example.com:443"},
	{desc: "wildcard with port: port with a leading zero", policy: "wildport", origin: "https://a.example.com:08443"},
	{desc: "wildcard with port: apex", policy: "wildport", origin: "https://example.com:8443"},

	{desc: "null listed", policy: "nulls", origin: "null", allowed: true},
	{desc: "null listed, upper case", policy: "nulls", origin: "NULL"},
	{desc: "null listed, capitalised", policy: "nulls", origin: "Null"},

	{desc: "* policy: serialized origin", policy: "public", origin: "https://app.example.com", allowed: true},
	{desc: "* policy: null", policy: "public", origin: "null", allowed: true},
	{desc: "* policy: not a serialized origin", policy: "public", origin: "https://APP.example.com:443/", allowed: true},
	{desc: "* policy: garbage", policy: "public", origin: "garbage \x01", allowed: true},
}

// TestOriginMatching runs originCases through actual requests.
func TestOriginMatching(t *testing.T) {
	t.Parallel()
	e := mustLoad(t, decideConfig)
	if len(host253) != 253 || len(host254) != 254 || len(longOrigin) <= 2048 {
		t.Fatalf("test values are %d, %d and %d bytes", len(host253), len(host254), len(longOrigin))
	}
	for _, tc := range originCases {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			req := actual(tc.policy, "GET", tc.origin)
			d, err := e.Decide(&req)
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			if got := d.Kind == policy.KindActualAllowed; got != tc.allowed {
				t.Fatalf("Origin %q allowed = %t (%v, %v), want %t", tc.origin, got, d.Kind, d.Reason, tc.allowed)
			}
			acao := headerValue(d.AppendHeaders(nil), policy.HeaderAllowOrigin)
			want := ""
			switch {
			case tc.allowed && tc.policy == "public":
				want = "*"
			case tc.allowed:
				want = tc.origin
			}
			if acao != want {
				t.Errorf("Access-Control-Allow-Origin = %q, want %q", acao, want)
			}
		})
	}
}

func TestOriginTooLongReason(t *testing.T) {
	t.Parallel()
	e := mustLoad(t, decideConfig)
	req := actual("wild", "GET", "https://"+strings.Repeat("a.", 1100)+"example.com")
	d, err := e.Decide(&req)
	if err != nil {
		t.Fatal(err)
	}
	if d.Kind != policy.KindActualDisallowed || d.Reason != policy.ReasonOriginTooLong {
		t.Errorf("Decide = %v, %v; want %v, %v", d.Kind, d.Reason, policy.KindActualDisallowed, policy.ReasonOriginTooLong)
	}
}

var methodCases = []struct {
	desc    string
	policy  string
	method  string
	allowed bool
}{
	{desc: "listed", policy: "creds", method: "PUT", allowed: true},
	{desc: "listed PATCH", policy: "creds", method: "PATCH", allowed: true},
	{desc: "lower case of a listed method", policy: "creds", method: "patch"},
	{desc: "mixed case of a listed method", policy: "creds", method: "Patch"},
	{desc: "lower-case put", policy: "creds", method: "put"},
	{desc: "GET always allowed", policy: "creds", method: "GET", allowed: true},
	{desc: "HEAD always allowed", policy: "creds", method: "HEAD", allowed: true},
	{desc: "POST always allowed", policy: "creds", method: "POST", allowed: true},
	{desc: "lower-case get is another method", policy: "creds", method: "get"},
	{desc: "not listed", policy: "creds", method: "OPTIONS"},
	{desc: "forbidden method", policy: "creds", method: "CONNECT"},
	{desc: "custom method", policy: "creds", method: "PROPFIND"},
	{desc: "listed in lower case: the lower-case one", policy: "lowercase-method", method: "patch", allowed: true},
	{desc: "listed in lower case: not the upper-case one", policy: "lowercase-method", method: "PATCH"},
	{desc: "not a token", policy: "creds", method: "PUT,PATCH"},
	{desc: "* policy: listed", policy: "public", method: "PUT", allowed: true},
	{desc: "* policy: not listed", policy: "public", method: "DELETE"},
}

func TestMethodMatching(t *testing.T) {
	t.Parallel()
	e := mustLoad(t, decideConfig)
	for _, tc := range methodCases {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			origin := "https://app.example.com"
			req := preflight(tc.policy, origin, tc.method, "")
			d, err := e.Decide(&req)
			if err != nil {
				t.Fatal(err)
			}
			if got := d.Kind == policy.KindPreflightAllowed; got != tc.allowed {
				t.Fatalf("method %q allowed = %t (%v, %v), want %t", tc.method, got, d.Kind, d.Reason, tc.allowed)
			}
			if !tc.allowed {
				return
			}
			if !slices.Contains(headersOf(&d), hdr(policy.HeaderAllowMethods, tc.method)) {
				t.Errorf("headers %v do not allow %q", headersOf(&d), tc.method)
			}
		})
	}
}

// maxLenHeaders is a valid Access-Control-Request-Headers value of exactly
// acrh.MaxLen bytes.
var maxLenHeaders = strings.Repeat("x-a,", acrh.MaxLen/4)

var requestHeadersCases = []struct {
	desc    string
	policy  string
	headers string
	allowed bool
}{
	{desc: "none requested", policy: "creds", headers: "", allowed: true},
	{desc: "browser form: lower case, sorted, no spaces", policy: "creds", headers: "content-type,x-request-id", allowed: true},
	{desc: "configured case", policy: "creds", headers: "Content-Type,X-Request-Id", allowed: true},
	{desc: "upper case", policy: "creds", headers: "CONTENT-TYPE,X-REQUEST-ID", allowed: true},
	{desc: "any order", policy: "creds", headers: "x-request-id,authorization,content-type", allowed: true},
	{desc: "spaces around commas", policy: "creds", headers: "content-type , x-request-id", allowed: true},
	{desc: "tabs around commas", policy: "creds", headers: "content-type\t,\tx-request-id", allowed: true},
	{desc: "leading and trailing whitespace", policy: "creds", headers: " \tcontent-type \t", allowed: true},
	{desc: "empty elements", policy: "creds", headers: ",content-type,,x-request-id,", allowed: true},
	{desc: "only separators", policy: "creds", headers: " , ,\t", allowed: true},
	{desc: "duplicates", policy: "creds", headers: "content-type,Content-Type,CONTENT-TYPE", allowed: true},
	{desc: "Authorization listed by name", policy: "creds", headers: "Authorization", allowed: true},
	{desc: "one not listed", policy: "creds", headers: "content-type,x-other"},
	{desc: "space inside an element", policy: "creds", headers: "content-type x-request-id"},
	{desc: "semicolon separator", policy: "creds", headers: "content-type;x-request-id"},
	{desc: "name longer than any configured one", policy: "creds", headers: strings.Repeat("x", 300)},
	{desc: "*: name longer than any that can be configured", policy: "anyheader", headers: "x-a," + strings.Repeat("x", 300), allowed: true},
	{desc: "*: any name", policy: "anyheader", headers: "x-anything,content-type,x-other", allowed: true},
	{desc: "*: not authorization", policy: "anyheader", headers: "authorization"},
	{desc: "*: not Authorization in any case", policy: "anyheader", headers: "x-a,AUTHORIZATION"},
	{desc: "*: not authorization with spaces", policy: "anyheader", headers: "x-a , authorization "},
	{desc: "*: name not a token", policy: "anyheader", headers: "x-a,x(b)"},
	{desc: "* and Authorization by name", policy: "anyheader-auth", headers: "x-anything,authorization", allowed: true},
	{desc: "exactly acrh.MaxLen bytes", policy: "anyheader", headers: maxLenHeaders, allowed: true},
	{desc: "one byte over acrh.MaxLen", policy: "anyheader", headers: maxLenHeaders + "b"},
	{desc: "10,000 bytes", policy: "anyheader", headers: strings.Repeat("x-a,", 2500)},
	{desc: "10,000 bytes of separators", policy: "anyheader", headers: strings.Repeat(",", 10000)},
	{desc: "no policy headers listed", policy: "exact", headers: "content-type"},
}

func TestRequestHeadersMatching(t *testing.T) {
	t.Parallel()
	e := mustLoad(t, decideConfig)
	if len(maxLenHeaders) != acrh.MaxLen {
		t.Fatalf("test value is %d bytes", len(maxLenHeaders))
	}
	for _, tc := range requestHeadersCases {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			req := preflight(tc.policy, "https://app.example.com", "GET", tc.headers)
			d, err := e.Decide(&req)
			if err != nil {
				t.Fatal(err)
			}
			if got := d.Kind == policy.KindPreflightAllowed; got != tc.allowed {
				t.Fatalf("Access-Control-Request-Headers %.40q allowed = %t (%v, %v %.40q), want %t", tc.headers, got, d.Kind, d.Reason, d.Detail, tc.allowed)
			}
			if !tc.allowed {
				return
			}
			allow := headerValue(d.AppendHeaders(nil), policy.HeaderAllowHeaders)
			if missing := notCovered(tc.headers, allow); len(missing) > 0 {
				t.Errorf("Access-Control-Allow-Headers %.60q does not cover %q", allow, missing)
			}
			if strings.Trim(tc.headers, " ,\t") == "" && allow != "" {
				t.Errorf("no header was requested, yet Access-Control-Allow-Headers is %q", allow)
			}
		})
	}
}

// notCovered returns the names requested in the Access-Control-Request-Headers
// value req that the Access-Control-Allow-Headers value allow leaves out,
// splitting both as a browser does.
func notCovered(req, allow string) []string {
	allowed := map[string]bool{}
	for name := range strings.SplitSeq(allow, ",") {
		allowed[strings.ToLower(strings.Trim(name, " \t"))] = true
	}
	var missing []string
	for name := range strings.SplitSeq(req, ",") {
		name = strings.ToLower(strings.Trim(name, " \t"))
		if name != "" && !allowed[name] {
			missing = append(missing, name)
		}
	}
	return missing
}

const selectionConfig = `
policies:
  - name: api
    match:
      hosts: [api.example.com]
    allowed_origins: [https://app.example.com]
  - name: api-v2
    match:
      hosts: [api.example.com]
      path_prefixes: [/v2/]
    allowed_origins: [https://app.example.com]
  - name: api-v2-admin
    match:
      hosts: [API.example.com]
      path_prefixes: [/v2/, /v2/admin/]
    allowed_origins: [https://app.example.com]
  - name: alt-port
    match:
      hosts: ["api.example.com:8443"]
    allowed_origins: [https://app.example.com]
  - name: tenants
    match:
      hosts: ["*.api.example.com"]
    allowed_origins: [https://app.example.com]
  - name: eu-tenants
    match:
      hosts: ["*.eu.api.example.com"]
    allowed_origins: [https://app.example.com]
  - name: static
    match:
      path_prefixes: [/static/]
    allowed_origins: [https://app.example.com]
  - name: static-fonts
    match:
      path_prefixes: [/static/fonts/]
    allowed_origins: [https://app.example.com]
  - name: fallback
    allowed_origins: [https://app.example.com]
default_policy: fallback
`

func TestPolicySelection(t *testing.T) {
	t.Parallel()
	e := mustLoad(t, selectionConfig)
	cases := []struct {
		desc   string
		policy string // Request.Policy, the cors_policy context extension
		host   string
		path   string
		want   string
	}{
		{desc: "cors_policy first, whatever the host and path", policy: "static", host: "api.example.com", path: "/v2/admin/x", want: "static"},
		{desc: "cors_policy naming the default policy", policy: "fallback", host: "api.example.com", want: "fallback"},
		{desc: "host", host: "api.example.com", path: "/v1/orders", want: "api"},
		{desc: "host, case-insensitive", host: "API.Example.COM", path: "/v1/orders", want: "api"},
		{desc: "host with a port matches a host written without one", host: "api.example.com:443", path: "/v1/orders", want: "api"},
		{desc: "host with a port written with that port", host: "api.example.com:8443", path: "/v2/orders", want: "alt-port"},
		{desc: "host, path prefix", host: "api.example.com", path: "/v2/orders", want: "api-v2"},
		{desc: "host, longest path prefix wins", host: "api.example.com", path: "/v2/admin/users", want: "api-v2-admin"},
		{desc: "host, longest path prefix, with a port", host: "api.example.com:443", path: "/v2/admin/users", want: "api-v2-admin"},
		{desc: "path prefixes are not path segments", host: "api.example.com", path: "/v2", want: "api"},
		{desc: "a query does not take part", host: "api.example.com", path: "/v1?next=/v2/admin/", want: "api"},
		{desc: "a query after the prefix", host: "api.example.com", path: "/v2/admin/?x=1", want: "api-v2-admin"},
		{desc: "path prefixes are case-sensitive", host: "api.example.com", path: "/V2/orders", want: "api"},
		{desc: "wildcard host: one label", host: "t1.api.example.com", path: "/", want: "tenants"},
		{desc: "wildcard host: two labels", host: "a.b.api.example.com", path: "/", want: "tenants"},
		{desc: "wildcard host: case-insensitive, with a port", host: "T1.API.Example.com:443", path: "/", want: "tenants"},
		{desc: "wildcard host: the most specific wins", host: "t1.eu.api.example.com", path: "/", want: "eu-tenants"},
		{desc: "wildcard host: a label that is the next wildcard's domain", host: "eu.api.example.com", path: "/", want: "tenants"},
		{desc: "wildcard host: never the apex", host: "api.example.com.evil.net", path: "/", want: "fallback"},
		{desc: "wildcard host: label boundary", host: "evilapi.example.com", path: "/", want: "fallback"},
		{desc: "wildcard host: empty first label", host: ".api.example.com", path: "/", want: "fallback"},
		{desc: "host rules come before path-only rules", host: "api.example.com", path: "/static/app.js", want: "api"},
		{desc: "path-only rule", host: "www.example.com", path: "/static/app.js", want: "static"},
		{desc: "path-only rule, longest prefix", host: "www.example.com", path: "/static/fonts/a.woff2", want: "static-fonts"},
		{desc: "default_policy", host: "www.example.com", path: "/index.html", want: "fallback"},
		{desc: "default_policy without host or path", want: "fallback"},
		{desc: "overlong host selects nothing by host", host: strings.Repeat("a", 300) + ".api.example.com", path: "/", want: "fallback"},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			req := policy.Request{Method: "GET", Host: tc.host, Path: tc.path, Policy: tc.policy, Origin: "https://app.example.com"}
			d, err := e.Decide(&req)
			if err != nil {
				t.Fatal(err)
			}
			if d.Policy != tc.want || d.Kind != policy.KindActualAllowed {
				t.Errorf("Decide(host %q, path %q, cors_policy %q) = policy %q (%v), want %q (%v)", tc.host, tc.path, tc.policy, d.Policy, d.Kind, tc.want, policy.KindActualAllowed)
			}
		})
	}
}

// groupConfig has policies that share a match: the app with credentials
// and partners without on /v1, and a group whose first policy is "*".
const groupConfig = `
policies:
  - name: app
    match:
      hosts: [api.example.com]
      path_prefixes: [/v1]
    allowed_origins: [https://app.example.com]
    allowed_methods: [PUT]
    allow_credentials: true
  - name: partners
    match:
      hosts: [api.example.com]
      path_prefixes: [/v1]
    allowed_origins: [https://partner.example.net, https://*.partners.example.org]
    allowed_methods: [PUT]
  - name: public
    match:
      path_prefixes: [/public]
    allowed_origins: ["*"]
    exposed_headers: [X-Total]
  - name: public-app
    match:
      path_prefixes: [/public]
    allowed_origins: [https://app.example.com]
    allow_credentials: true
  - name: assets
    match:
      path_prefixes: [/assets/]
    allowed_origins: [https://app.example.com]
  - name: fallback
    allowed_origins: [https://other.example]
default_policy: fallback
`

// TestPolicyGroups: the Origin picks among policies that share a match,
// the first in file order that admits it, else the first; path prefixes
// match at segment boundaries.
func TestPolicyGroups(t *testing.T) {
	t.Parallel()
	e := mustLoad(t, groupConfig)
	cases := []struct {
		desc      string
		req       policy.Request
		want      string
		group     string
		kind      policy.Kind
		headers   []policy.Header
		wantError bool
	}{
		{
			desc: "the app's origin picks the app's policy, with credentials",
			req:  policy.Request{Method: "GET", Host: "api.example.com", Path: "/v1/orders", Origin: "https://app.example.com"},
			want: "app", group: "app, partners", kind: policy.KindActualAllowed,
			headers: []policy.Header{hdr("Access-Control-Allow-Origin", "https://app.example.com"), hdr("Access-Control-Allow-Credentials", "true"), varyOrigin},
		},
		{
			desc: "a partner's origin picks the partners' policy, without credentials",
			req:  policy.Request{Method: "GET", Host: "api.example.com", Path: "/v1/orders", Origin: "https://partner.example.net"},
			want: "partners", group: "app, partners", kind: policy.KindActualAllowed,
			headers: []policy.Header{hdr("Access-Control-Allow-Origin", "https://partner.example.net"), varyOrigin},
		},
		{
			desc: "a partner's preflight, by pattern",
			req:  policy.Request{Method: "OPTIONS", Host: "api.example.com", Path: "/v1", Origin: "https://a.partners.example.org", RequestMethod: "PUT"},
			want: "partners", group: "app, partners", kind: policy.KindPreflightAllowed,
			headers: []policy.Header{hdr("Access-Control-Allow-Origin", "https://a.partners.example.org"), hdr("Access-Control-Allow-Methods", "PUT"), varyPreflight},
		},
		{
			desc: "an origin no policy of the group admits: the first decides",
			req:  policy.Request{Method: "GET", Host: "api.example.com", Path: "/v1/orders", Origin: "https://evil.example"},
			want: "app", group: "app, partners", kind: policy.KindActualDisallowed,
			headers: []policy.Header{varyOrigin},
		},
		{
			desc: "no Origin: the first decides, Vary: Origin",
			req:  policy.Request{Method: "GET", Host: "api.example.com", Path: "/v1/orders"},
			want: "app", group: "app, partners", kind: policy.KindNotCORS,
			headers: []policy.Header{varyOrigin},
		},
		{
			desc: "a group whose first is *: another origin gets * with Vary: Origin, as the answer depends on the Origin",
			req:  policy.Request{Method: "GET", Host: "www.example.com", Path: "/public/x", Origin: "https://anyone.example"},
			want: "public", group: "public, public-app", kind: policy.KindActualAllowed,
			headers: []policy.Header{hdr("Access-Control-Allow-Origin", "*"), hdr("Access-Control-Expose-Headers", "X-Total"), varyOrigin},
		},
		{
			desc: "a group whose first is *: * admits every origin, so it decides for the app's origin too",
			req:  policy.Request{Method: "GET", Host: "www.example.com", Path: "/public", Origin: "https://app.example.com"},
			want: "public", group: "public, public-app", kind: policy.KindActualAllowed,
			headers: []policy.Header{hdr("Access-Control-Allow-Origin", "*"), hdr("Access-Control-Expose-Headers", "X-Total"), varyOrigin},
		},
		{
			desc: "a group whose first is *, no Origin: * and Vary: Origin",
			req:  policy.Request{Method: "GET", Host: "www.example.com", Path: "/public?q=1"},
			want: "public", group: "public, public-app", kind: policy.KindNotCORS,
			headers: []policy.Header{hdr("Access-Control-Allow-Origin", "*"), hdr("Access-Control-Expose-Headers", "X-Total"), varyOrigin},
		},
		{
			desc: "segment boundary: /public does not select /publicity",
			req:  policy.Request{Method: "GET", Host: "www.example.com", Path: "/publicity/secret", Origin: "https://other.example"},
			want: "fallback", kind: policy.KindActualAllowed,
			headers: []policy.Header{hdr("Access-Control-Allow-Origin", "https://other.example"), varyOrigin},
		},
		{
			desc: "segment boundary: /v1 does not select /v10",
			req:  policy.Request{Method: "GET", Host: "api.example.com", Path: "/v10/orders", Origin: "https://app.example.com"},
			want: "fallback", kind: policy.KindActualDisallowed,
			headers: []policy.Header{varyOrigin},
		},
		{
			desc: "a prefix ending in / selects what starts with it",
			req:  policy.Request{Method: "GET", Host: "www.example.com", Path: "/assets/app.js", Origin: "https://app.example.com"},
			want: "assets", kind: policy.KindActualAllowed,
			headers: []policy.Header{hdr("Access-Control-Allow-Origin", "https://app.example.com"), varyOrigin},
		},
		{
			desc: "a prefix ending in / does not select the path without it",
			req:  policy.Request{Method: "GET", Host: "www.example.com", Path: "/assets", Origin: "https://app.example.com"},
			want: "fallback", kind: policy.KindActualDisallowed,
			headers: []policy.Header{varyOrigin},
		},
		{
			desc: "cors_policy naming a group: the Origin picks",
			req:  policy.Request{Method: "GET", Policy: "app,partners", Origin: "https://partner.example.net"},
			want: "partners", group: "app,partners", kind: policy.KindActualAllowed,
			headers: []policy.Header{hdr("Access-Control-Allow-Origin", "https://partner.example.net"), varyOrigin},
		},
		{
			desc: "cors_policy naming a group, spaces around names: the first when none admits",
			req:  policy.Request{Method: "GET", Policy: " app , partners ", Origin: "https://evil.example"},
			want: "app", group: " app , partners ", kind: policy.KindActualDisallowed,
			headers: []policy.Header{varyOrigin},
		},
		{
			desc:      "cors_policy naming a group with an unknown name: refused, even when an earlier one admits the Origin",
			req:       policy.Request{Method: "GET", Policy: "app,partner", Origin: "https://app.example.com"},
			wantError: true,
		},
		{
			desc:      "cors_policy with an empty name in the list: refused",
			req:       policy.Request{Method: "GET", Policy: "app,", Origin: "https://app.example.com"},
			wantError: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			d, err := e.Decide(&tc.req)
			if tc.wantError {
				if !errors.Is(err, policy.ErrUnknownPolicy) {
					t.Fatalf("Decide: err = %v, want ErrUnknownPolicy", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.Policy != tc.want || d.Kind != tc.kind || d.Group != tc.group {
				t.Errorf("Decide = policy %q, group %q, %v; want %q, group %q, %v", d.Policy, d.Group, d.Kind, tc.want, tc.group, tc.kind)
			}
			if got, want := headersOf(&d), sortedHeaders(tc.headers...); !slices.Equal(got, want) {
				t.Errorf("headers:\n got %v\nwant %v", got, want)
			}
		})
	}
}

func TestNoPolicyApplies(t *testing.T) {
	t.Parallel()
	e := mustLoad(t, `
policies:
  - name: api
    match:
      hosts: [api.example.com]
    allowed_origins: [https://app.example.com]
`)
	for _, req := range []policy.Request{
		{Method: "GET", Origin: "https://app.example.com"},
		{Method: "GET", Host: "www.example.com", Path: "/", Origin: "https://app.example.com"},
		{Method: "OPTIONS", Host: "www.example.com", Origin: "https://app.example.com", RequestMethod: "PUT"},
		{Method: "GET", Host: "www.example.com"},
	} {
		d, err := e.Decide(&req)
		if err != nil {
			t.Fatalf("Decide(%+v): %v", req, err)
		}
		wantReason := policy.ReasonNoPolicy
		if req.Origin == "" {
			wantReason = policy.ReasonNoOrigin
		}
		if d.Kind != policy.KindNotCORS || d.Reason != wantReason || d.Policy != "" || d.Status != 0 || len(d.AppendHeaders(nil)) != 0 {
			t.Errorf("Decide(%+v) = %+v, want not CORS, %v, no policy, no headers", req, d, wantReason)
		}
	}
}

func TestUnknownPolicy(t *testing.T) {
	t.Parallel()
	e := mustLoad(t, selectionConfig)
	for _, origin := range []string{"https://app.example.com", ""} {
		req := policy.Request{Method: "GET", Host: "api.example.com", Policy: "orders", Origin: origin}
		_, err := e.Decide(&req)
		if !errors.Is(err, policy.ErrUnknownPolicy) {
			t.Fatalf("Decide with Origin %q: err = %v, want ErrUnknownPolicy", origin, err)
		}
		var upe *policy.UnknownPolicyError
		if !errors.As(err, &upe) || upe.Name != "orders" {
			t.Errorf("err = %#v, want *UnknownPolicyError naming \"orders\"", err)
		}
	}
}

func TestReportOnlyIsNeverDirect(t *testing.T) {
	t.Parallel()
	e := mustLoad(t, decideConfig)
	for _, req := range []policy.Request{
		preflight("report", "https://app.example.com", "PUT", ""),
		preflight("report", "https://evil.example.net", "PUT", ""),
		actual("report", "GET", "https://app.example.com"),
		actual("report", "GET", "https://evil.example.net"),
	} {
		d, err := e.Decide(&req)
		if err != nil {
			t.Fatal(err)
		}
		if !d.ReportOnly || d.Direct() {
			t.Errorf("Decide(%+v): ReportOnly = %t, Direct() = %t; want true, false", req, d.ReportOnly, d.Direct())
		}
	}
}

// TestDecideDoesNotAllocate guards the hot path; the benchmarks say how fast.
func TestDecideDoesNotAllocate(t *testing.T) {
	e := mustLoad(t, decideConfig)
	reqs := map[string]policy.Request{
		"actual allowed":       actual("creds", "GET", "https://app.example.com"),
		"actual wildcard":      actual("creds", "GET", "https://pr-1.preview.example.com"),
		"actual disallowed":    actual("creds", "GET", "https://evil.example.net"),
		"preflight allowed":    preflight("creds", "https://app.example.com", "PUT", "Content-Type, X-Request-Id"),
		"preflight rejected":   preflight("creds", "https://app.example.com", "PUT", "x-other"),
		"preflight * policy":   preflight("public", "null", "PUT", "x-a"),
		"selected by host":     {Method: "GET", Host: "api.example.com", Origin: "https://app.example.com"},
		"actual no origin":     actual("creds", "GET", ""),
		"preflight anyheader":  preflight("anyheader", "https://app.example.com", "GET", "X-A,X-B"),
		"actual report only":   actual("report", "GET", "https://app.example.com"),
		"actual reject origin": actual("strict", "GET", "https://evil.example.net"),
		"no origin * policy":   actual("public", "GET", ""),
		"empty origin":         emptyOrigin(actual("exact", "GET", "")),
		"named group":          actual("exact, public", "GET", "https://other.example"),
	}
	dst := make([]policy.Header, 0, policy.MaxHeaders)
	for name, req := range reqs {
		allocs := testing.AllocsPerRun(100, func() {
			d, _ := e.Decide(&req)
			dst = d.AppendHeaders(dst[:0])
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per Decide and AppendHeaders, want 0", name, allocs)
		}
	}
}

func TestKindAndReasonNames(t *testing.T) {
	t.Parallel()
	kinds := map[policy.Kind]string{
		policy.KindNotCORS:           "not_cors",
		policy.KindPreflightAllowed:  "preflight_allowed",
		policy.KindPreflightRejected: "preflight_rejected",
		policy.KindActualAllowed:     "actual_allowed",
		policy.KindActualDisallowed:  "actual_disallowed",
		policy.Kind(200):             "unknown",
	}
	for k, want := range kinds {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, got, want)
		}
	}
	for r := policy.ReasonNoOrigin; r <= policy.ReasonHeadersTooLong; r++ {
		if r.String() == "unknown" || r.Text() == "unknown reason" {
			t.Errorf("Reason(%d) has no name or text: %q, %q", r, r.String(), r.Text())
		}
	}
	if got := policy.Reason(200).String(); got != "unknown" {
		t.Errorf("Reason(200).String() = %q, want \"unknown\"", got)
	}
}

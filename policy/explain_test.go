package policy_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/corsauthz/corsauthz/policy"
)

// TestExplainNewRows: Explain says why for the rows of the decision table
// on requests without Origin, with an empty Origin, OPTIONS without
// Access-Control-Request-Method, groups and private network access.
func TestExplainNewRows(t *testing.T) {
	t.Parallel()
	e := mustLoad(t, decideConfig)
	groups := mustLoad(t, groupConfig)
	cases := []struct {
		desc    string
		engine  *policy.Engine
		req     policy.Request
		verdict string
		reason  string // one of the reasons, exactly
		headers []policy.Header
	}{
		{
			desc: "no Origin, credentials", engine: e, req: actual("creds", "GET", ""),
			verdict: `NOT CORS (no Origin): pass on; add the headers caches need to the response (policy "creds")`,
			reason:  `the response gets Vary: Origin, so that no cache hands this answer, which has no Access-Control-Allow-Origin, to a later CORS request (Fetch, "CORS protocol and HTTP caches")`,
			headers: []policy.Header{varyOrigin},
		},
		{
			desc: "no Origin, a * policy", engine: e, req: actual("public", "GET", ""),
			verdict: `NOT CORS (no Origin): pass on; add the headers caches need to the response (policy "public")`,
			reason:  `the policy allows any origin ("*") without credentials, so the response gets Access-Control-Allow-Origin: * as a CORS request's would, and no Vary: a cache may hand it to any page (Fetch, "CORS protocol and HTTP caches")`,
			headers: []policy.Header{hdr("Access-Control-Allow-Origin", "*"), hdr("Access-Control-Expose-Headers", "X-Total")},
		},
		{
			desc: "no Origin, report_only", engine: e, req: actual("report", "GET", ""),
			verdict: `REPORT ONLY, request passes untouched; would be: NOT CORS (no Origin): pass on; add the headers caches need to the response (policy "report")`,
			reason:  "the policy is report_only: the gateway changes nothing (it would add what is listed for a cache)",
			headers: []policy.Header{varyOrigin},
		},
		{
			desc: "no Origin, no policy", engine: e, req: policy.Request{Method: "GET", Host: "nowhere.example", Path: "/x"},
			verdict: "NOT CORS: pass on untouched",
			reason:  "the request has no Origin header, so it is not a CORS request",
		},
		{
			desc: "empty Origin", engine: e, req: emptyOrigin(actual("exact", "GET", "")),
			verdict: `ACTUAL REQUEST NOT ALLOWED: pass on; the browser will hide the response (only Vary added) (policy "exact")`,
			reason:  "the Origin header is present but empty: a CORS request whose origin matches no listed origin or pattern",
			headers: []policy.Header{varyOrigin},
		},
		{
			desc: "OPTIONS without Access-Control-Request-Method", engine: e, req: actual("exact", "OPTIONS", "https://app.example.com"),
			verdict: `ACTUAL REQUEST ALLOWED: pass on; add the CORS headers to the response (policy "exact")`,
			reason:  "OPTIONS with Origin but without Access-Control-Request-Method: not a preflight, an actual cross-origin request",
			headers: []policy.Header{hdr("Access-Control-Allow-Origin", "https://app.example.com"), varyOrigin},
		},
		{
			desc: "a group picks by Origin", engine: groups,
			req:     policy.Request{Method: "GET", Host: "api.example.com", Path: "/v1/x", Origin: "https://a.partners.example.org"},
			verdict: `ACTUAL REQUEST ALLOWED: pass on; add the CORS headers to the response (policy "partners" of app, partners)`,
			reason:  `policy "partners" decides: it is the first of them whose allowed_origins admit origin "https://a.partners.example.org"`,
			headers: []policy.Header{hdr("Access-Control-Allow-Origin", "https://a.partners.example.org"), varyOrigin},
		},
		{
			desc: "a group whose first is *: Vary explained", engine: groups,
			req:     policy.Request{Method: "GET", Host: "www.example.com", Path: "/public", Origin: "https://x.example"},
			verdict: `ACTUAL REQUEST ALLOWED: pass on; add the CORS headers to the response (policy "public" of public, public-app)`,
			reason:  `Vary: Origin is added although the answer is "*": in a group, another origin may get another policy's answer`,
			headers: []policy.Header{hdr("Access-Control-Allow-Origin", "*"), hdr("Access-Control-Expose-Headers", "X-Total"), varyOrigin},
		},
		{
			desc: "private network access is legacy", engine: e,
			req:     policy.Request{Method: "OPTIONS", Policy: "creds", Origin: "https://app.example.com", RequestMethod: "PUT", RequestPrivateNetwork: "true"},
			verdict: `PREFLIGHT ALLOWED: answer 204 with the CORS headers (policy "creds")`,
			reason:  "private network access was requested and allow_private_network is on (Private Network Access is legacy: Chrome 142 and later ask the user instead, with the Local Network Access permission prompt, and send no such preflight)",
		},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			x, err := tc.engine.Explain(&tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if got := x.Verdict(); got != tc.verdict {
				t.Errorf("verdict:\n %q\nwant\n %q", got, tc.verdict)
			}
			if tc.reason != "" && !slices.Contains(x.Reasons, tc.reason) {
				t.Errorf("reasons lack %q:\n%s", tc.reason, strings.Join(x.Reasons, "\n"))
			}
			if tc.headers != nil {
				if got, want := sortedHeaders(x.Headers...), sortedHeaders(tc.headers...); !slices.Equal(got, want) {
					t.Errorf("headers %v, want %v", got, want)
				}
			}
			// Explain decides as Decide does.
			d, _ := tc.engine.Decide(&tc.req)
			if d.Kind != x.Decision.Kind || d.Policy != x.Decision.Policy || d.Group != x.Decision.Group {
				t.Errorf("Explain decided %+v, Decide %+v", x.Decision, d)
			}
		})
	}
}

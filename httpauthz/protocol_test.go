package httpauthz_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/corsauthz/corsauthz/internal/limits"

	"github.com/corsauthz/corsauthz/httpauthz"
)

const varyPreflight = "Vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers"

// protocolCases are the rows of docs/nginx.md and its precedence rules, as
// a gateway sends them over HTTP.
var protocolCases = []struct {
	desc    string
	prefix  string // Options.PathPrefix
	method  string
	target  string
	headers []string
	status  int
	want    []string // the CORS headers of the answer, sorted
	body    string   // a substring of a one-line body (for 4xx and 5xx)
}{
	// The decision table.
	{
		desc: "preflight allowed: 204 with its headers", method: "OPTIONS", target: "/v1/x",
		headers: []string{"Host: api.example.com", "Origin: https://app.example.com", "Access-Control-Request-Method: PUT", "Access-Control-Request-Headers: content-type,authorization"},
		status:  204,
		want: []string{
			"Access-Control-Allow-Credentials: true", "Access-Control-Allow-Headers: content-type,authorization",
			"Access-Control-Allow-Methods: PUT", "Access-Control-Allow-Origin: https://app.example.com",
			"Access-Control-Max-Age: 600", varyPreflight,
		},
	},
	{
		desc: "preflight allowed with private network access", method: "OPTIONS", target: "/",
		headers: []string{"Host: api.example.com", "Origin: https://app.example.com", "Access-Control-Request-Method: GET", "Access-Control-Request-Private-Network: true"},
		status:  204,
		want: []string{
			"Access-Control-Allow-Credentials: true", "Access-Control-Allow-Methods: GET",
			"Access-Control-Allow-Origin: https://app.example.com", "Access-Control-Allow-Private-Network: true",
			"Access-Control-Max-Age: 600", varyPreflight,
		},
	},
	{
		desc: "preflight rejected (method): 403, no Allow headers", method: "OPTIONS", target: "/",
		headers: []string{"Host: api.example.com", "Origin: https://app.example.com", "Access-Control-Request-Method: PATCH"},
		status:  403, want: []string{varyPreflight},
	},
	{
		desc: "preflight rejected (origin)", method: "OPTIONS", target: "/",
		headers: []string{"Host: api.example.com", "Origin: https://evil.example.net", "Access-Control-Request-Method: GET"},
		status:  403, want: []string{varyPreflight},
	},
	{
		desc: "actual, origin allowed: 200 with the headers for the response", method: "GET", target: "/v1/x?q=1",
		headers: []string{"Host: api.example.com", "Origin: https://pr-7.preview.example.com"},
		status:  200,
		want: []string{
			"Access-Control-Allow-Credentials: true", "Access-Control-Allow-Origin: https://pr-7.preview.example.com",
			"Access-Control-Expose-Headers: X-Request-Id, X-Total", "Vary: Origin",
		},
	},
	{
		desc: "actual, origin not allowed: 200 with only Vary", method: "POST", target: "/",
		headers: []string{"Host: api.example.com", "Origin: https://evil.example.net"},
		status:  200, want: []string{"Vary: Origin"},
	},
	{
		desc: "actual, origin not allowed, reject_disallowed_origins: 403 with Vary", method: "GET", target: "/",
		headers: []string{"Host: strict.example.com", "Origin: https://evil.example.net"},
		status:  403, want: []string{"Vary: Origin"},
	},
	{
		desc: "report_only: 200, nothing added", method: "GET", target: "/",
		headers: []string{"Host: shadow.example.com", "Origin: https://evil.example.net"},
		status:  200,
	},
	{
		desc: "report_only preflight: 200, nothing added", method: "OPTIONS", target: "/",
		headers: []string{"Host: shadow.example.com", "Origin: https://evil.example.net", "Access-Control-Request-Method: PUT"},
		status:  200,
	},
	{
		desc: "not CORS (no policy for the host): 200, nothing added", method: "GET", target: "/",
		headers: []string{"Host: nothing.example.com", "Origin: https://app.example.com"},
		status:  200,
	},
	{
		desc: "X-Corsauthz-Policy names a policy: it applies", method: "GET", target: "/",
		headers: []string{"Host: api.example.com", "Origin: null", "X-Corsauthz-Policy: public"},
		status:  200, want: []string{"Access-Control-Allow-Origin: *"},
	},
	{
		desc: "X-Corsauthz-Policy names no policy: 503", method: "GET", target: "/",
		headers: []string{"Host: api.example.com", "Origin: https://app.example.com", "X-Corsauthz-Policy: nope"},
		status:  503, body: `X-Corsauthz-Policy names no configured policy: "nope"`,
	},

	// Requests without Origin, an empty Origin, and groups (docs/configuration-and-decisions.md).
	{
		desc: "no Origin, a policy selected: 200 with Vary: Origin", method: "GET", target: "/v1/x",
		headers: []string{"Host: api.example.com"},
		status:  200, want: []string{"Vary: Origin"},
	},
	{
		desc: "no Origin, a * policy without credentials: 200 with ACAO *, no Vary", method: "GET", target: "/",
		headers: []string{"Host: api.example.com", "X-Corsauthz-Policy: public"},
		status:  200, want: []string{"Access-Control-Allow-Origin: *"},
	},
	{
		desc: "no Origin, a report_only policy: 200, nothing added", method: "GET", target: "/",
		headers: []string{"Host: shadow.example.com"},
		status:  200,
	},
	{
		desc: "no Origin, no policy: 200, nothing added", method: "GET", target: "/",
		headers: []string{"Host: nothing.example.com"},
		status:  200,
	},
	{
		desc: "an empty Origin is present: matches no listed origin", method: "GET", target: "/",
		headers: []string{"Host: api.example.com", "Origin:"},
		status:  200, want: []string{"Vary: Origin"},
	},
	{
		desc: "an empty Origin, reject_disallowed_origins: 403", method: "GET", target: "/",
		headers: []string{"Host: strict.example.com", "Origin:"},
		status:  403, want: []string{"Vary: Origin"},
	},
	{
		desc: "an empty Origin, preflight: 403", method: "OPTIONS", target: "/",
		headers: []string{"Host: api.example.com", "Origin:", "Access-Control-Request-Method: GET"},
		status:  403, want: []string{varyPreflight},
	},
	{
		desc: "an empty Origin, a * policy: ACAO *", method: "GET", target: "/",
		headers: []string{"Host: api.example.com", "Origin:", "X-Corsauthz-Policy: public"},
		status:  200, want: []string{"Access-Control-Allow-Origin: *"},
	},
	{
		desc: "X-Corsauthz-Policy lists a group: the Origin picks the first that admits it", method: "GET", target: "/",
		headers: []string{"Host: api.example.com", "Origin: https://v1.example.com", "X-Corsauthz-Policy: strict, v1"},
		status:  200, want: []string{"Access-Control-Allow-Origin: https://v1.example.com", "Vary: Origin"},
	},
	{
		desc: "X-Corsauthz-Policy lists a group: an Origin none admits gets the first", method: "GET", target: "/",
		headers: []string{"Host: api.example.com", "Origin: https://evil.example.net", "X-Corsauthz-Policy: strict,v1"},
		status:  403, want: []string{"Vary: Origin"},
	},
	{
		desc: "X-Corsauthz-Policy lists a group with a * policy, no Origin: Vary, as the group's answer depends on it", method: "GET", target: "/",
		headers: []string{"Host: api.example.com", "X-Corsauthz-Policy: v1,public"},
		status:  200, want: []string{"Vary: Origin"},
	},
	{
		desc: "X-Corsauthz-Policy lists a group naming no policy: 503", method: "GET", target: "/",
		headers: []string{"Host: api.example.com", "Origin: https://v1.example.com", "X-Corsauthz-Policy: v1,nope"},
		status:  503, body: `X-Corsauthz-Policy names no configured policy: "nope"`,
	},

	// Method precedence.
	{
		desc: "X-Forwarded-Method before the request's own", method: "GET", target: "/",
		headers: []string{"Host: api.example.com", "X-Forwarded-Method: OPTIONS", "Origin: https://app.example.com", "Access-Control-Request-Method: PATCH"},
		status:  403, want: []string{varyPreflight},
	},
	{
		desc: "X-Forwarded-Method before X-Original-Method", method: "OPTIONS", target: "/",
		headers: []string{"Host: api.example.com", "X-Forwarded-Method: GET", "X-Original-Method: OPTIONS", "Origin: https://evil.example.net", "Access-Control-Request-Method: PUT"},
		status:  200, want: []string{"Vary: Origin"},
	},
	{
		desc: "X-Original-Method when X-Forwarded-Method is empty", method: "GET", target: "/",
		headers: []string{"Host: api.example.com", "X-Forwarded-Method:", "X-Original-Method: OPTIONS", "Origin: https://evil.example.net", "Access-Control-Request-Method: PUT"},
		status:  403, want: []string{varyPreflight},
	},
	{
		desc: "the request's own method when neither is sent", method: "OPTIONS", target: "/",
		headers: []string{"Host: api.example.com", "Origin: https://evil.example.net", "Access-Control-Request-Method: PUT"},
		status:  403, want: []string{varyPreflight},
	},

	// Host precedence.
	{
		desc: "X-Forwarded-Host before X-Original-Host and Host", method: "GET", target: "/",
		headers: []string{"Host: corsauthz.internal", "X-Forwarded-Host: strict.example.com", "X-Original-Host: api.example.com", "Origin: https://evil.example.net"},
		status:  403, want: []string{"Vary: Origin"},
	},
	{
		desc: "X-Original-Host when X-Forwarded-Host is empty", method: "GET", target: "/",
		headers: []string{"Host: corsauthz.internal", "X-Forwarded-Host:", "X-Original-Host: strict.example.com", "Origin: https://evil.example.net"},
		status:  403, want: []string{"Vary: Origin"},
	},
	{
		desc: "Host when neither is sent (its port ignored by the match)", method: "GET", target: "/",
		headers: []string{"Host: strict.example.com:8443", "Origin: https://evil.example.net"},
		status:  403, want: []string{"Vary: Origin"},
	},

	// Path precedence.
	{
		desc: "X-Forwarded-Uri before X-Original-URI and the request's path", method: "GET", target: "/other",
		headers: []string{"Host: paths.example.com", "X-Forwarded-Uri: /v1/orders?x=1", "X-Original-URI: /other", "Origin: https://v1.example.com"},
		status:  200, want: []string{"Access-Control-Allow-Origin: https://v1.example.com", "Vary: Origin"},
	},
	{
		desc: "X-Original-URI when X-Forwarded-Uri is empty", method: "GET", target: "/other",
		headers: []string{"Host: paths.example.com", "X-Forwarded-Uri:", "X-Original-URI: /v1/orders", "Origin: https://v1.example.com"},
		status:  200, want: []string{"Access-Control-Allow-Origin: https://v1.example.com", "Vary: Origin"},
	},
	{
		desc: "X-Original-URI selects no policy: not CORS", method: "GET", target: "/v1/orders",
		headers: []string{"Host: paths.example.com", "X-Original-URI: /v2/orders", "Origin: https://v1.example.com"},
		status:  200,
	},
	{
		desc: "the request's own path when neither is sent", method: "GET", target: "/v1/orders",
		headers: []string{"Host: paths.example.com", "Origin: https://v1.example.com"},
		status:  200, want: []string{"Access-Control-Allow-Origin: https://v1.example.com", "Vary: Origin"},
	},
	{
		desc: "the path prefix is removed from the request's own path", prefix: "/cors", method: "GET", target: "/cors/v1/orders",
		headers: []string{"Host: paths.example.com", "Origin: https://v1.example.com"},
		status:  200, want: []string{"Access-Control-Allow-Origin: https://v1.example.com", "Vary: Origin"},
	},
	{
		desc: "the path prefix alone is the path /", prefix: "/cors/", method: "GET", target: "/cors?v1",
		headers: []string{"Host: paths.example.com", "Origin: https://v1.example.com"},
		status:  200,
	},
	{
		desc: "the path prefix does not apply to X-Original-URI", prefix: "/cors", method: "GET", target: "/check",
		headers: []string{"Host: paths.example.com", "X-Original-URI: /v1/orders", "Origin: https://v1.example.com"},
		status:  200, want: []string{"Access-Control-Allow-Origin: https://v1.example.com", "Vary: Origin"},
	},
	{
		desc: "a path outside the prefix: 400", prefix: "/cors", method: "GET", target: "/v1/orders",
		headers: []string{"Host: paths.example.com", "Origin: https://v1.example.com"},
		status:  400, body: `does not start with the path prefix "/cors"`,
	},
	{
		desc: "the prefix matches at a segment boundary only: 400", prefix: "/cors", method: "GET", target: "/corsx/v1/orders",
		headers: []string{"Host: paths.example.com", "Origin: https://v1.example.com"},
		status:  400, body: "path prefix",
	},

	// Origin and Access-Control-Request-*: the request's own.
	{
		desc: "Access-Control-Request-Headers on several lines are one list", method: "OPTIONS", target: "/",
		headers: []string{"Host: api.example.com", "Origin: https://app.example.com", "Access-Control-Request-Method: PUT", "Access-Control-Request-Headers: content-type", "Access-Control-Request-Headers: authorization"},
		status:  204,
		want: []string{
			"Access-Control-Allow-Credentials: true", "Access-Control-Allow-Headers: content-type,authorization",
			"Access-Control-Allow-Methods: PUT", "Access-Control-Allow-Origin: https://app.example.com",
			"Access-Control-Max-Age: 600", varyPreflight,
		},
	},

	// Requests that cannot be decided.
	{
		desc: "a repeated Origin: 400", method: "GET", target: "/",
		headers: []string{"Host: api.example.com", "Origin: https://app.example.com", "Origin: https://evil.example.net"},
		status:  400, body: "the header Origin is sent 2 times",
	},
	{
		desc: "a repeated X-Forwarded-Host: 400", method: "GET", target: "/",
		headers: []string{"Host: api.example.com", "X-Forwarded-Host: a.example.com", "X-Forwarded-Host: b.example.com"},
		status:  400, body: "X-Forwarded-Host is sent 2 times",
	},
	{
		desc: "a repeated X-Corsauthz-Policy: 400", method: "GET", target: "/",
		headers: []string{"Host: api.example.com", "X-Corsauthz-Policy: api", "X-Corsauthz-Policy: public"},
		status:  400, body: "X-Corsauthz-Policy is sent 2 times",
	},
	{
		desc: "an original path that is not a path: 400", method: "GET", target: "/",
		headers: []string{"Host: api.example.com", "X-Original-URI: v1/orders"},
		status:  400, body: "does not start with /",
	},
	{
		desc: "a request target that is not a path: 400", method: "OPTIONS", target: "*",
		headers: []string{"Host: api.example.com", "Origin: https://app.example.com", "Access-Control-Request-Method: GET"},
		status:  400, body: "not a path",
	},
	{
		desc: "an absolute-form request target: 400", method: "GET", target: "http://api.example.com/v1/x",
		headers: []string{"Host: api.example.com"},
		status:  400, body: "not a path",
	},
	{
		desc: "an Origin that is not UTF-8: 400", method: "GET", target: "/",
		headers: []string{"Host: api.example.com", "Origin: https://\xff\xfe.example.com"},
		status:  400, body: "the Origin is not valid UTF-8",
	},
	{
		desc: "an original path that is not UTF-8: 400", method: "GET", target: "/",
		headers: []string{"Host: api.example.com", "X-Forwarded-Uri: /caf\xe9"},
		status:  400, body: "the path is not valid UTF-8",
	},
	{
		desc: "a method past the limit: 431", method: "GET", target: "/",
		headers: []string{"Host: api.example.com", "X-Forwarded-Method: " + strings.Repeat("M", limits.MethodLen+1)},
		status:  431, body: "the method is 65 bytes long, more than the limit of 64",
	},
	{
		desc: "a host past the limit: 431", method: "GET", target: "/",
		headers: []string{"Host: api.example.com", "X-Original-Host: " + strings.Repeat("h", limits.HostLen+1)},
		status:  431, body: "the host is",
	},
	{
		desc: "an Access-Control-Request-Headers past the limit: 431", method: "OPTIONS", target: "/",
		headers: []string{"Host: api.example.com", "Origin: https://app.example.com", "Access-Control-Request-Method: PUT", "Access-Control-Request-Headers: " + strings.Repeat("a,", limits.HeaderValueLen/2+1)},
		status:  431, body: "the Access-Control-Request-Headers is",
	},
	{
		desc: "more header lines than the limit: 431", method: "GET", target: "/",
		headers: append([]string{"Host: api.example.com"}, strings.Split(strings.Repeat("X-A: 1\n", limits.HeaderCount), "\n")[:limits.HeaderCount]...),
		status:  431, body: "1001 header lines, more than the limit of 1000",
	},
}

func TestProtocol(t *testing.T) {
	t.Parallel()
	listeners := map[string]*testListener{}
	for _, tt := range protocolCases {
		if listeners[tt.prefix] == nil {
			ts, _ := startListener(t, httpauthz.Options{PathPrefix: tt.prefix})
			listeners[tt.prefix] = &testListener{addr: ts.Listener.Addr().String()}
		}
	}
	for _, tt := range protocolCases {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			l := listeners[tt.prefix]
			start := time.Now()
			got := exchange(t, l.addr, request(tt.method, tt.target, tt.headers...))
			if elapsed := time.Since(start); elapsed > 2*time.Second {
				t.Errorf("answered after %v", elapsed)
			}
			if got.status != tt.status {
				t.Errorf("status = %d, want %d (body %q)", got.status, tt.status, got.body)
			}
			if strings.Join(got.headers, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("headers:\n%s\nwant:\n%s", strings.Join(got.headers, "\n"), strings.Join(tt.want, "\n"))
			}
			for name, n := range got.lines {
				if n != 1 {
					t.Errorf("%s is on %d lines, want one", name, n)
				}
			}
			checkBody(t, got, tt.status, tt.body)
		})
	}
}

type testListener struct {
	addr string
}

// checkBody checks that an answer to be sent to the browser or used as
// is has no body, and that a refusal has a one-line text body with want
// in it.
func checkBody(t *testing.T, got rawAnswer, status int, want string) {
	t.Helper()
	if status < 400 || status == http.StatusForbidden {
		if got.body != "" {
			t.Errorf("body = %q, want none", got.body)
		}
		return
	}
	if !strings.HasSuffix(got.body, "\n") || strings.Count(got.body, "\n") != 1 {
		t.Errorf("body = %q, want one line", got.body)
	}
	if !strings.Contains(got.body, want) {
		t.Errorf("body = %q, want it to say %q", got.body, want)
	}
}

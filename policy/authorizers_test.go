package policy_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corsauthz/corsauthz/policy"
)

const authorizersValid = `authorizers:
  - name: oauth2-proxy
    http:
      url: http://oauth2-proxy.auth.svc:4180/oauth2/auth
      forward_path: false
      headers: [Cookie, authorization]
      upstream_headers: [X-Auth-Request-User, x-auth-request-email]
      timeout: 250ms
  - name: opa
    grpc:
      address: opa.opa.svc:9191
      timeout: 1s
    on_error: allow
policies:
  - name: api
    authorizer: oauth2-proxy
    allowed_origins: [https://app.example.com]
    allow_credentials: true
    reject_disallowed_origins: true
    match: {hosts: [api.example.com]}
  - name: admin
    authorizer: opa
    report_only: true
    allowed_origins: [https://admin.example.com]
    match: {hosts: [admin.example.com]}
  - name: open
    allowed_origins: ["*"]
default_policy: open
`

func TestLoadAuthorizers(t *testing.T) {
	t.Parallel()
	e, _, err := policy.Load("a.yaml", []byte(authorizersValid))
	if err != nil {
		t.Fatal(err)
	}
	as := e.Authorizers()
	if len(as) != 2 {
		t.Fatalf("Authorizers() = %d, want 2", len(as))
	}
	h := as[0].HTTP
	if as[0].Name != "oauth2-proxy" || as[0].Kind() != "http" || h == nil || h.URL != "http://oauth2-proxy.auth.svc:4180/oauth2/auth" ||
		h.ForwardPath || h.Timeout != 250*time.Millisecond || as[0].OnError != policy.OnErrorDeny || as[0].FailOpen() {
		t.Errorf("authorizers[0] = %+v %+v", as[0], h)
	}
	if !slices.Equal(h.Headers, []string{"cookie", "authorization"}) || !slices.Equal(h.UpstreamHeaders, []string{"x-auth-request-user", "x-auth-request-email"}) {
		t.Errorf("header names not lower-cased: %q %q", h.Headers, h.UpstreamHeaders)
	}
	g := as[1].GRPC
	if as[1].Kind() != "grpc" || g == nil || g.Address != "opa.opa.svc:9191" || g.Timeout != time.Second || !as[1].FailOpen() {
		t.Errorf("authorizers[1] = %+v %+v", as[1], g)
	}
	if !as[0].Equal(&as[0]) || as[0].Equal(&as[1]) {
		t.Error("Equal is wrong")
	}
	// The copies are the caller's: changing one changes nothing in force.
	as[0].HTTP.Headers[0] = "x"
	if e.Authorizers()[0].HTTP.Headers[0] != "cookie" {
		t.Error("Authorizers shares its slices with the engine")
	}
}

func TestAuthorizerFor(t *testing.T) {
	t.Parallel()
	e, _, err := policy.Load("a.yaml", []byte(authorizersValid))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		desc string
		req  policy.Request
		want string
	}{
		{desc: "actual request, allowed origin", req: policy.Request{Method: "GET", Host: "api.example.com", Origin: "https://app.example.com"}, want: "oauth2-proxy"},
		{desc: "no Origin: asked too", req: policy.Request{Method: "GET", Host: "api.example.com"}, want: "oauth2-proxy"},
		{desc: "allowed preflight: never", req: policy.Request{Method: "OPTIONS", Host: "api.example.com", Origin: "https://app.example.com", RequestMethod: "PUT"}, want: ""},
		{desc: "rejected preflight: never", req: policy.Request{Method: "OPTIONS", Host: "api.example.com", Origin: "https://evil.example", RequestMethod: "PUT"}, want: ""},
		{desc: "refused by reject_disallowed_origins: never", req: policy.Request{Method: "GET", Host: "api.example.com", Origin: "https://evil.example"}, want: ""},
		{desc: "report_only applies to CORS, not authorization", req: policy.Request{Method: "GET", Host: "admin.example.com", Origin: "https://evil.example"}, want: "opa"},
		{desc: "report_only preflight: asked, since it goes upstream", req: policy.Request{Method: "OPTIONS", Host: "admin.example.com", Origin: "https://admin.example.com", RequestMethod: "PUT"}, want: "opa"},
		{desc: "report_only preflight from a refused origin: asked", req: policy.Request{Method: "OPTIONS", Host: "admin.example.com", Origin: "https://evil.example", RequestMethod: "GET"}, want: "opa"},
		{desc: "report_only allowed preflight: asked", req: policy.Request{Method: "OPTIONS", Host: "admin.example.com", Origin: "https://admin.example.com", RequestMethod: "GET"}, want: "opa"},
		{desc: "OPTIONS without Access-Control-Request-Method is an actual request: asked", req: policy.Request{Method: "OPTIONS", Host: "api.example.com", Origin: "https://app.example.com"}, want: "oauth2-proxy"},
		{desc: "policy without an authorizer", req: policy.Request{Method: "GET", Host: "other.example.com", Origin: "https://x.example"}, want: ""},
		{desc: "named by cors_policy", req: policy.Request{Method: "POST", Policy: "admin"}, want: "opa"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			d, err := e.Decide(&tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if got := e.AuthorizerFor(&d); got != tc.want {
				t.Errorf("AuthorizerFor(%v) = %q, want %q", d.Kind, got, tc.want)
			}
		})
	}
}

// invalidAuthorizers are configurations with every authorizer problem of
// docs/authorizers.md, each with its exact errors; FuzzLoadAuthorizers starts
// from them.
var invalidAuthorizers = []struct {
	desc string
	yaml string
	errs []string
}{
	{
		desc: "unused authorizer, unknown name",
		yaml: `authorizers:
  - name: unused
    grpc: {address: "opa:9191", timeout: 1s}
policies:
  - name: api
    authorizer: nope
    allowed_origins: [https://app.example.com]
`,
		errs: []string{
			`f.yaml:2:11: authorizers[0].name: authorizer "unused" is used by no policy: name it in a policy's authorizer field, or remove it`,
			`f.yaml:6:17: policies[0].authorizer: authorizer "nope" names no authorizer: write one of "unused", or leave it out`,
		},
	},
	{
		desc: "no authorizers at all",
		yaml: `policies:
  - name: api
    authorizer: nope
    allowed_origins: [https://app.example.com]
`,
		errs: []string{`f.yaml:3:17: policies[0].authorizer: authorizer "nope" names no authorizer: define it under authorizers, or leave it out`},
	},
	{
		desc: "URLs: not http(s), query with forward_path, no host, userinfo, fragment",
		yaml: `authorizers:
  - name: a
    http: {url: "ftp://auth/check", timeout: 1s}
  - name: b
    http: {url: "http://auth/check?x=1", forward_path: true, timeout: 1s}
  - name: c
    http: {url: "http:///check", timeout: 1s}
  - name: d
    http: {url: "http://u:p@auth/check", timeout: 1s}
  - name: e
    http: {url: "http://auth/check#x", timeout: 1s}
  - name: f
    http: {timeout: 1s}
  - name: g
    http: {url: "auth.svc:4180/check", timeout: 1s}
policies:
  - {name: p1, authorizer: a, allowed_origins: [https://app.example.com]}
  - {name: p2, authorizer: b, allowed_origins: [https://app.example.com]}
  - {name: p3, authorizer: c, allowed_origins: [https://app.example.com]}
  - {name: p4, authorizer: d, allowed_origins: [https://app.example.com]}
  - {name: p5, authorizer: e, allowed_origins: [https://app.example.com]}
  - {name: p6, authorizer: f, allowed_origins: [https://app.example.com]}
  - {name: p7, authorizer: g, allowed_origins: [https://app.example.com]}
`,
		errs: []string{
			`f.yaml:3:17: authorizers[0].http.url: url "ftp://auth/check" must start with http:// or https://`,
			`f.yaml:5:17: authorizers[1].http.url: url "http://auth/check?x=1" has a query, and forward_path appends the request's path and query to it: drop the query, or set forward_path: false`,
			`f.yaml:7:17: authorizers[2].http.url: url "http:///check" has no host`,
			`f.yaml:9:17: authorizers[3].http.url: url "http://u:xxxxx@auth/check" carries a user name or password, which would be configuration text (logged, published to gateways): send the credential as a static_headers entry read from the environment or a file instead`,
			`f.yaml:11:17: authorizers[4].http.url: url "http://auth/check#x" has a fragment (#...), which is never sent: leave it out`,
			`f.yaml:13:11: authorizers[5].http.url: url is required: write the check's URL, such as "http://oauth2-proxy.auth.svc:4180/oauth2/auth"`,
			`f.yaml:15:17: authorizers[6].http.url: url "auth.svc:4180/check" must start with http:// or https://`,
		},
	},
	{
		desc: "timeouts: missing, over 10s, negative, not a duration, a number",
		yaml: `authorizers:
  - name: a
    http: {url: "http://auth/check"}
  - name: b
    grpc: {address: "opa:9191", timeout: 11s}
  - name: c
    grpc: {address: "opa:9191", timeout: -1s}
  - name: d
    grpc: {address: "opa:9191", timeout: soon}
  - name: e
    grpc: {address: "opa:9191", timeout: 250}
policies:
  - {name: p1, authorizer: a, allowed_origins: [https://app.example.com]}
  - {name: p2, authorizer: b, allowed_origins: [https://app.example.com]}
  - {name: p3, authorizer: c, allowed_origins: [https://app.example.com]}
  - {name: p4, authorizer: d, allowed_origins: [https://app.example.com]}
  - {name: p5, authorizer: e, allowed_origins: [https://app.example.com]}
`,
		errs: []string{
			`f.yaml:3:11: authorizers[0].http.timeout: timeout is required: write how long to wait for the authorizer, such as 250ms (at most 10s), and give the gateway's own ext_authz timeout more`,
			`f.yaml:5:42: authorizers[1].grpc.timeout: timeout 11s is more than 10s: no page waits that long; write 10s or less`,
			`f.yaml:7:42: authorizers[2].grpc.timeout: timeout -1s is negative: write a duration such as 250ms`,
			`f.yaml:9:42: authorizers[3].grpc.timeout: "soon" is not a duration: write a number with a unit, such as "250ms" or "1s"`,
			`f.yaml:11:42: authorizers[4].grpc.timeout: must be a duration such as "250ms" or "1s", not 250`,
		},
	},
	{
		desc: "names, kinds, addresses, on_error, header names, unknown fields",
		yaml: `authorizers:
  - name: Bad
    grpc: {address: "opa", timeout: 1s}
  - name: both
    http: {url: "http://auth/", timeout: 1s}
    grpc: {address: "opa:9191", timeout: 1s}
  - name: neither
    on_error: open
  - name: both
    grpc: {address: "grpc://opa:9191", timeout: 1s, tls: true}
  - name: hdr
    http: {url: "http://auth/", timeout: 1s, headers: ["bad name"], upstream_headers: ["x:y"]}
policies:
  - {name: p1, authorizer: both, allowed_origins: [https://app.example.com]}
  - {name: p2, authorizer: neither, allowed_origins: [https://app.example.com]}
  - {name: p3, authorizer: hdr, allowed_origins: [https://app.example.com]}
`,
		errs: []string{
			`f.yaml:2:11: authorizers[0].name: invalid name "Bad": use 1 to 64 lower-case letters, digits, '-' or '_', starting with a letter or digit`,
			`f.yaml:3:21: authorizers[0].grpc.address: address "opa" must be host:port, such as "opa.opa.svc:9191"`,
			`f.yaml:6:11: authorizers[1].grpc: an authorizer is http or grpc, not both: write two authorizers`,
			`f.yaml:7:5: authorizers[2]: an authorizer needs http (a forward-auth URL) or grpc (an ext_authz server's address)`,
			`f.yaml:8:15: authorizers[2].on_error: on_error "open": write "deny" (the default: a failure is answered 503) or "allow" (fail open)`,
			`f.yaml:9:11: authorizers[3].name: duplicate authorizer name "both" (authorizers[1] has it already): names must be unique`,
			`f.yaml:10:21: authorizers[3].grpc.address: address "grpc://opa:9191" must be host:port, without a scheme`,
			`f.yaml:10:58: authorizers[3].grpc.tls: must be a mapping of fields, not true`,
			`f.yaml:12:56: authorizers[4].http.headers[0]: "bad name" is not a header name: use letters, digits and -`,
			`f.yaml:12:88: authorizers[4].http.upstream_headers[0]: "x:y" is not a header name: use letters, digits and -`,
		},
	},
}

func TestLoadAuthorizersInvalid(t *testing.T) {
	t.Parallel()
	for _, tc := range invalidAuthorizers {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			_, _, err := policy.Load("f.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatal("Load: no error")
			}
			var got []string
			for _, fe := range policy.FieldErrors(err) {
				got = append(got, fe.Error())
			}
			if !slices.Equal(got, tc.errs) {
				t.Errorf("errors:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(tc.errs, "\n     "))
			}
		})
	}
}

func TestCompileAuthorizersHashIsStable(t *testing.T) {
	t.Parallel()
	cfg := func() *policy.Config {
		return &policy.Config{
			Authorizers: []policy.Authorizer{{Name: "a", GRPC: &policy.GRPCAuthorizer{Address: "opa:9191", Timeout: time.Second}}},
			Policies:    []policy.Policy{{Name: "p", Authorizer: "a", AllowedOrigins: []string{"https://app.example.com"}}},
		}
	}
	e1, _, err := policy.Compile(cfg())
	if err != nil {
		t.Fatal(err)
	}
	e2, _, _ := policy.Compile(cfg())
	if e1.Hash() != e2.Hash() {
		t.Error("the same configuration hashes differently")
	}
	c := cfg()
	c.Authorizers[0].GRPC.Timeout = 2 * time.Second
	e3, _, _ := policy.Compile(c)
	if e3.Hash() == e1.Hash() {
		t.Error("a different timeout hashes the same")
	}
}

// FuzzLoadAuthorizers: whatever the file, Load returns an engine or every
// problem with a position, and an engine's authorizers keep the rules of
// docs/authorizers.md.
func FuzzLoadAuthorizers(f *testing.F) {
	f.Add([]byte(authorizersValid))
	// A group that shares its authorizer, one mutation from one that
	// does not.
	f.Add([]byte(ssoAuthorizers + `policies:
  - {name: app, authorizer: sso, allowed_origins: [https://app.example.com], match: {hosts: [api.example.com]}}
  - {name: partners, authorizer: sso, allowed_origins: [https://partner.example.net], match: {hosts: [api.example.com]}}
  - {name: admin, authorizer: opa, allowed_origins: ["*"], match: {hosts: [admin.example.com]}}
`))
	for _, tc := range invalidAuthorizers {
		f.Add([]byte(tc.yaml))
	}
	requests := []policy.Request{
		{Method: "GET", Host: "api.example.com", Origin: "https://app.example.com"},
		{Method: "OPTIONS", Host: "api.example.com", Origin: "https://app.example.com", RequestMethod: "PUT"},
		{Method: "GET", Host: "admin.example.com"},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, _, err := policy.Load("fuzz.yaml", data)
		if (e == nil) == (err == nil) {
			t.Fatalf("Load = engine %v, error %v: want exactly one", e != nil, err)
		}
		if err != nil {
			for _, fe := range policy.FieldErrors(err) {
				if fe.Line == 0 {
					t.Errorf("error without a position: %v", fe)
				}
			}
			return
		}
		names := map[string]bool{}
		for _, a := range e.Authorizers() {
			if (a.HTTP == nil) == (a.GRPC == nil) || a.Timeout() <= 0 || a.Timeout() > policy.MaxAuthorizerTimeout || names[a.Name] {
				t.Errorf("accepted authorizer %+v", a)
			}
			names[a.Name] = true
		}
		for _, r := range requests {
			d, err := e.Decide(&r)
			if err != nil {
				continue
			}
			got, configured := e.AuthorizerFor(&d), e.PolicyAuthorizer(d.Policy)
			if got != "" && !names[got] {
				t.Errorf("AuthorizerFor names %q, not configured", got)
			}
			// Only what corsauthz answers itself skips the authorizer.
			if want := map[bool]string{true: "", false: configured}[d.Direct()]; got != want {
				t.Errorf("decision %v (direct %v) of policy %q asks %q, want %q", d.Kind, d.Direct(), d.Policy, got, want)
			}
		}
		// No client chooses who authorizes: whatever the Origin, a request
		// to one host and path is sent to the same authorizer (or none).
		for _, host := range []string{"api.example.com", "admin.example.com", "other.example.com"} {
			asked := map[string]bool{}
			for _, o := range []string{"", "https://app.example.com", "https://admin.example.com", "https://partner.example.net", "https://evil.example"} {
				d, err := e.Decide(&policy.Request{Method: "GET", Host: host, Path: "/v1/x", Origin: o})
				if err != nil {
					continue
				}
				asked[e.PolicyAuthorizer(d.Policy)] = true
			}
			if len(asked) > 1 {
				t.Errorf("host %s: the Origin chooses among authorizers %v", host, asked)
			}
		}
	})
}

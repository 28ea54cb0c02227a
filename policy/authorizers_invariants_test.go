package policy_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/corsauthz/corsauthz/internal/testpki"
	"github.com/corsauthz/corsauthz/policy"
)

// loadErrors loads yaml and returns its errors and warnings as text.
func loadErrors(t *testing.T, src string, opts policy.LoadOptions) (errs, warnings []string) {
	t.Helper()
	_, ws, err := policy.LoadWithOptions("f.yaml", []byte(src), opts)
	for _, fe := range policy.FieldErrors(err) {
		errs = append(errs, fe.Error())
	}
	for _, w := range ws {
		warnings = append(warnings, w.Error())
	}
	return errs, warnings
}

const ssoAuthorizers = `authorizers:
  - name: sso
    http: {url: "http://sso.auth.svc/oauth2/auth", timeout: 1s}
  - name: opa
    grpc: {address: "opa:9191", timeout: 1s}
`

// TestGroupAuthorizersRefused: policies that share a match must name the
// same authorizer, or all none; validate says so at each policy that
// differs from the first of its group.
func TestGroupAuthorizersRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		desc string
		yaml string
		errs []string
	}{
		{
			desc: "the attack: app asks sso, partners (same host) asks none",
			yaml: ssoAuthorizers + `policies:
  - name: app
    authorizer: sso
    allowed_origins: [https://app.example.com]
    allow_credentials: true
    match: {hosts: [api.example.com]}
  - name: partners
    allowed_origins: [https://partner.example.net]
    match: {hosts: [api.example.com]}
  - name: other
    authorizer: opa
    allowed_origins: [https://x.example.com]
    match: {hosts: [other.example.com]}
`,
			errs: []string{`f.yaml:12:5: policies[1].authorizer: policy "partners" asks no authorizer, but shares its match (host api.example.com, any path) with "app", which asks "sso": the request's Origin picks the policy that decides among policies sharing a match, and a client sends any Origin it likes, so it would choose whether "sso" is asked; write authorizer: sso here too, or give "partners" a match of its own`},
		},
		{
			desc: "a * policy last in the group, and one with another authorizer: an error at each",
			yaml: ssoAuthorizers + `policies:
  - name: app
    authorizer: sso
    allowed_origins: [https://app.example.com]
    match: {hosts: [api.example.com], path_prefixes: [/v1/]}
  - name: partners
    authorizer: opa
    allowed_origins: [https://partner.example.net]
    match: {hosts: [api.example.com], path_prefixes: [/v1/]}
  - name: anyone
    allowed_origins: ["*"]
    match: {hosts: [api.example.com], path_prefixes: [/v1/]}
`,
			errs: []string{
				`f.yaml:12:17: policies[1].authorizer: policy "partners" asks authorizer "opa", but shares its match (host api.example.com, path prefix /v1/) with "app", which asks "sso": the request's Origin picks the policy that decides among policies sharing a match, and a client sends any Origin it likes, so it would choose who authorizes it; name the same authorizer in both, or give "partners" a match of its own`,
				`f.yaml:15:5: policies[2].authorizer: policy "anyone" asks no authorizer, but shares its match (host api.example.com, path prefix /v1/) with "app", which asks "sso": the request's Origin picks the policy that decides among policies sharing a match, and a client sends any Origin it likes, so it would choose whether "sso" is asked; write authorizer: sso here too, or give "anyone" a match of its own`,
			},
		},
		{
			desc: "the first asks none, a later one asks: the later one is the error, with what to write in the first",
			yaml: ssoAuthorizers + `policies:
  - name: public
    allowed_origins: ["*"]
    match: {path_prefixes: [/api]}
  - name: app
    authorizer: sso
    allowed_origins: [https://app.example.com]
    match: {path_prefixes: [/api]}
  - {name: o, authorizer: opa, allowed_origins: [https://o.example.com], match: {hosts: [o.example.com]}}
`,
			errs: []string{`f.yaml:11:17: policies[1].authorizer: policy "app" asks authorizer "sso", but shares its match (any host, path prefix /api) with "public", which asks none: the request's Origin picks the policy that decides among policies sharing a match, and a client sends any Origin it likes, so it would choose whether "sso" is asked; write authorizer: sso in "public" too, or give "app" a match of its own`},
		},
		{
			desc: "wildcard hosts shared, reported once although two hosts are shared",
			yaml: ssoAuthorizers + `policies:
  - name: app
    authorizer: sso
    allowed_origins: [https://app.example.com]
    match: {hosts: ["*.example.com", api.example.org]}
  - name: partners
    authorizer: opa
    allowed_origins: [https://partner.example.net]
    match: {hosts: ["*.example.com", api.example.org]}
`,
			errs: []string{`f.yaml:12:17: policies[1].authorizer: policy "partners" asks authorizer "opa", but shares its match (host api.example.org, any path) with "app", which asks "sso": the request's Origin picks the policy that decides among policies sharing a match, and a client sends any Origin it likes, so it would choose who authorizes it; name the same authorizer in both, or give "partners" a match of its own`},
		},
		{
			desc: "valid: the same authorizer in a group; different hosts or prefixes are no group",
			yaml: ssoAuthorizers + `policies:
  - {name: app, authorizer: sso, allowed_origins: [https://app.example.com], match: {hosts: [api.example.com]}}
  - {name: partners, authorizer: sso, allowed_origins: [https://partner.example.net], match: {hosts: [api.example.com]}}
  - {name: v1, authorizer: opa, allowed_origins: [https://app.example.com], match: {hosts: [api.example.com], path_prefixes: [/v1]}}
  - {name: v1admin, allowed_origins: [https://app.example.com], match: {hosts: [api.example.com], path_prefixes: [/v1/admin]}}
  - {name: sub, allowed_origins: [https://app.example.com], match: {hosts: ["*.example.com"]}}
  - {name: nomatch, allowed_origins: [https://app.example.com]}
`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			errs, _ := loadErrors(t, tc.yaml, policy.LoadOptions{})
			if !slices.Equal(errs, tc.errs) {
				t.Errorf("errors:\n got %s\nwant %s", strings.Join(errs, "\n     "), strings.Join(tc.errs, "\n     "))
			}
		})
	}
}

// TestNamedGroupAuthorizers: a cors_policy naming policies whose
// authorizers differ is refused when a request names it, as a
// configuration mismatch, whatever the Origin; one whose policies agree
// asks their authorizer whichever policy the Origin picks.
func TestNamedGroupAuthorizers(t *testing.T) {
	t.Parallel()
	e, _, err := policy.Load("g.yaml", []byte(ssoAuthorizers+`policies:
  - {name: app, authorizer: sso, allowed_origins: [https://app.example.com], allow_credentials: true}
  - {name: partners, allowed_origins: [https://partner.example.net]}
  - {name: app2, authorizer: sso, allowed_origins: [https://partner.example.net]}
  - {name: opa-pol, authorizer: opa, allowed_origins: [https://o.example.com]}
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		desc, group, origin string
		wantErr             bool
		want                string
	}{
		{desc: "sso then none, the partner's Origin", group: "app,partners", origin: "https://partner.example.net", wantErr: true},
		{desc: "sso then none, the app's Origin: refused too", group: "app,partners", origin: "https://app.example.com", wantErr: true},
		{desc: "sso then none, no Origin: refused too", group: "app, partners", wantErr: true},
		{desc: "none then sso", group: "partners,app", origin: "https://partner.example.net", wantErr: true},
		{desc: "sso then opa", group: "app,opa-pol", origin: "https://o.example.com", wantErr: true},
		{desc: "both sso, the second picked by Origin", group: "app,app2", origin: "https://partner.example.net", want: "sso"},
		{desc: "both sso, the first picked", group: "app , app2", origin: "https://app.example.com", want: "sso"},
		{desc: "one policy named alone", group: "partners", origin: "https://partner.example.net", want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			d, err := e.Decide(&policy.Request{Method: "GET", Policy: tc.group, Origin: tc.origin, Host: "api.example.com", Path: "/"})
			if tc.wantErr {
				if !errors.Is(err, policy.ErrConfigurationMismatch) || !errors.Is(err, policy.ErrUnknownPolicy) {
					t.Fatalf("Decide = %v, %v; want a configuration mismatch", d.Kind, err)
				}
				var ge *policy.GroupAuthorizerError
				if !errors.As(err, &ge) || !strings.Contains(err.Error(), "give the policies of a group the same authorizer") {
					t.Errorf("error %v", err)
				}
				if _, err := e.Explain(&policy.Request{Method: "GET", Policy: tc.group, Origin: tc.origin}); err == nil {
					t.Error("Explain explains what Decide refuses")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := e.AuthorizerFor(&d); got != tc.want {
				t.Errorf("AuthorizerFor = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestStaticHeadersAndTLS: what static_headers and a gRPC authorizer's
// tls accept and refuse, with the files and variables they name.
func TestStaticHeadersAndTLS(t *testing.T) { // not parallel: t.Setenv
	pki := testpki.New(t, "authz", "opa.test")
	dir := t.TempDir()
	secret := filepath.Join(dir, "key")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	const setVar = "CORSAUTHZ_TEST_STATIC_HEADER_SET"
	t.Setenv(setVar, "value-not-in-any-output")
	policies := `policies:
  - {name: p1, authorizer: h, allowed_origins: [https://app.example.com], match: {hosts: [a.example.com]}}
  - {name: p2, authorizer: g, allowed_origins: [https://app.example.com], match: {hosts: [b.example.com]}}
`
	tests := []struct {
		desc     string
		yaml     string
		opts     policy.LoadOptions
		errs     []string
		warnings []string
	}{
		{
			desc: "valid: env and file, TLS with a CA and a client certificate",
			yaml: `authorizers:
  - name: h
    http: {url: "http://auth/check", timeout: 1s, headers: [cookie]}
    static_headers:
      - {name: X-Api-Key, value_from: {env: ` + setVar + `}}
      - {name: authorization-extra, value_from: {file: ` + secret + `}}
  - name: g
    grpc:
      address: "opa.test:9191"
      timeout: 1s
      tls: {ca_file: ` + pki.CAFile + `, cert_file: ` + pki.ClientCertFile + `, key_file: ` + pki.ClientKeyFile + `, server_name: opa.test}
    static_headers: [{name: x-opa-key, value_from: {file: ` + secret + `}}]
` + policies,
		},
		{
			desc: "valid: tls: {} is TLS with the system's roots",
			yaml: `authorizers:
  - {name: h, http: {url: "https://auth/check", timeout: 1s}}
  - {name: g, grpc: {address: "opa:9191", timeout: 1s, tls: {}}}
` + policies,
		},
		{
			desc: "a variable not set and a file missing here are warnings: the value is read at each call",
			yaml: `authorizers:
  - name: h
    http: {url: "http://auth/check", timeout: 1s}
    static_headers:
      - {name: x-a, value_from: {env: CORSAUTHZ_TEST_NEVER_SET}}
      - {name: x-b, value_from: {file: ` + missing + `}}
  - {name: g, grpc: {address: "opa:9191", timeout: 1s}}
` + policies,
			warnings: []string{
				`f.yaml:5:39: authorizers[0].static_headers[0].value_from.env: environment variable CORSAUTHZ_TEST_NEVER_SET is not set here: calls to this authorizer fail (503) until it is`,
				`f.yaml:6:40: authorizers[0].static_headers[1].value_from.file: cannot read ` + missing + `: no such file or directory: calls to this authorizer fail (503) until it can be read`,
			},
		},
		{
			desc: "SkipLocalFiles: a gateway does not check the service's files and variables",
			yaml: `authorizers:
  - name: h
    http: {url: "http://auth/check", timeout: 1s}
    static_headers: [{name: x-a, value_from: {env: CORSAUTHZ_TEST_NEVER_SET}}]
  - {name: g, grpc: {address: "opa:9191", timeout: 1s, tls: {ca_file: ` + missing + `}}}
` + policies,
			opts: policy.LoadOptions{SkipLocalFiles: true},
		},
		{
			desc: "static header problems: value written, both sources, none, bad names, clashes, duplicates",
			yaml: `authorizers:
  - name: h
    http: {url: "http://auth/check", timeout: 1s, headers: [cookie]}
    static_headers:
      - {name: x-key, value: hunter2}
      - {name: x-two, value_from: {env: A, file: /a}}
      - {name: x-none, value_from: {}}
      - {name: "bad name", value_from: {env: A}}
      - {name: X-Forwarded-Uri, value_from: {env: A}}
      - {name: connection, value_from: {env: A}}
      - {name: Cookie, value_from: {env: A}}
      - {name: x-dup, value_from: {env: "1A"}}
      - {name: X-Dup, value_from: {file: relative/path}}
      - {value_from: {env: A}}
  - name: g
    grpc: {address: "opa:9191", timeout: 1s}
    static_headers:
      - {name: grpc-timeout, value_from: {env: A}}
      - {name: "x-key!", value_from: {env: A}}
      - {name: x-data-bin, value_from: {env: A}}
` + policies,
			opts: policy.LoadOptions{SkipLocalFiles: true},
			errs: []string{
				`f.yaml:5:30: authorizers[0].static_headers[0].value: a credential's value is never written in the configuration (it would be logged and published to gateways): write value_from: {env: VARIABLE} or value_from: {file: /path/to/secret}`,
				`f.yaml:6:35: authorizers[0].static_headers[1].value_from: value_from is env or file, not both: keep one`,
				`f.yaml:7:36: authorizers[0].static_headers[2].value_from: value_from needs env (an environment variable's name) or file (a file's path), such as {env: OPA_API_KEY}; the value itself is never written in the configuration`,
				`f.yaml:8:16: authorizers[0].static_headers[3].name: "bad name" is not a header name: use letters, digits and -`,
				`f.yaml:9:16: authorizers[0].static_headers[4].name: "x-forwarded-uri" would clash with the X-Forwarded-* headers corsauthz sends to describe the request: choose another name`,
				`f.yaml:10:16: authorizers[0].static_headers[5].name: "connection" describes a connection, not a credential: choose another name`,
				`f.yaml:11:16: authorizers[0].static_headers[6].name: "cookie" is also in http.headers, which sends the client's own value: remove it from one of them`,
				`f.yaml:12:41: authorizers[0].static_headers[7].value_from.env: "1A" is not an environment variable's name: use letters, digits and '_', not starting with a digit`,
				`f.yaml:13:16: authorizers[0].static_headers[8].name: static header "x-dup" is set twice (static_headers[7] has it already): keep one`,
				`f.yaml:13:42: authorizers[0].static_headers[8].value_from.file: file "relative/path" must be an absolute path: the value is read where the call is made, whose working directory may differ`,
				`f.yaml:14:9: authorizers[0].static_headers[9].name: name is required: write the header the authorizer expects, such as "x-api-key"`,
				`f.yaml:18:16: authorizers[1].static_headers[0].name: "grpc-timeout" is reserved by gRPC (grpc-*, *-bin, content-type, user-agent): choose another name`,
				`f.yaml:19:16: authorizers[1].static_headers[1].name: "x-key!" is not a gRPC metadata key: use letters, digits, '-', '_' and '.'`,
				`f.yaml:20:16: authorizers[1].static_headers[2].name: "x-data-bin" is reserved by gRPC (grpc-*, *-bin, content-type, user-agent): choose another name`,
			},
		},
		{
			desc: "TLS problems: half a client certificate, relative path, unreadable and garbage files, a bad server_name",
			yaml: `authorizers:
  - {name: h, http: {url: "http://auth/check", timeout: 1s}}
  - name: g
    grpc:
      address: "opa:9191"
      timeout: 1s
      tls:
        cert_file: ` + pki.ClientCertFile + `
  - name: g2
    grpc:
      address: "opa:9191"
      timeout: 1s
      tls:
        ca_file: ` + missing + `
        server_name: "opa:9191"
  - name: g3
    grpc:
      address: "opa:9191"
      timeout: 1s
      tls:
        ca_file: ` + garbage + `
        cert_file: ` + pki.ClientCertFile + `
        key_file: ` + pki.CAFile + `
  - {name: g4, grpc: {address: "opa:9191", timeout: 1s, tls: {ca_file: ca.pem}}}
` + policies + `  - {name: p3, authorizer: g2, allowed_origins: [https://app.example.com], match: {hosts: [c.example.com]}}
  - {name: p4, authorizer: g3, allowed_origins: [https://app.example.com], match: {hosts: [d.example.com]}}
  - {name: p5, authorizer: g4, allowed_origins: [https://app.example.com], match: {hosts: [e.example.com]}}
`,
			errs: []string{
				`f.yaml:8:9: authorizers[1].grpc.tls.key_file: a client certificate needs both cert_file and key_file: write key_file, or leave both out`,
				`f.yaml:14:18: authorizers[2].grpc.tls.ca_file: cannot read ` + missing + `: no such file or directory`,
				`f.yaml:15:22: authorizers[2].grpc.tls.server_name: server_name "opa:9191" must be a host name, without port or scheme`,
				`f.yaml:21:18: authorizers[3].grpc.tls.ca_file: ` + garbage + ` holds no PEM certificate`,
				`f.yaml:22:20: authorizers[3].grpc.tls.cert_file: ` + pki.ClientCertFile + ` and ` + pki.CAFile + ` are not a certificate and its key: tls: found a certificate rather than a key in the PEM for the private key`,
				`f.yaml:24:72: authorizers[4].grpc.tls.ca_file: ca_file "ca.pem" must be an absolute path: it is read where the connection is made, whose working directory may differ`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			errs, warnings := loadErrors(t, tc.yaml, tc.opts)
			if !slices.Equal(errs, tc.errs) {
				t.Errorf("errors:\n got %s\nwant %s", strings.Join(errs, "\n     "), strings.Join(tc.errs, "\n     "))
			}
			if !slices.Equal(warnings, tc.warnings) {
				t.Errorf("warnings:\n got %s\nwant %s", strings.Join(warnings, "\n     "), strings.Join(tc.warnings, "\n     "))
			}
			for _, s := range append(errs, warnings...) {
				if strings.Contains(s, "s3cret") || strings.Contains(s, "value-not-in-any-output") || strings.Contains(s, "hunter2") {
					t.Errorf("a secret value reached a message: %s", s)
				}
			}
		})
	}
}

// TestURLCredentialWarnings: a URL whose query looks like it carries a
// credential is accepted with a warning saying what to do instead.
func TestURLCredentialWarnings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		desc, url string
		warned    []string // the parameters warned about
	}{
		{desc: "access_token", url: "http://auth/check?access_token=abc", warned: []string{"access_token"}},
		{desc: "api key and a harmless rd", url: "http://auth/check?rd=https%3A%2F%2Fx&apiKey=1", warned: []string{"apiKey"}},
		{desc: "secret, password, signature", url: "http://auth/check?client_secret=a&Password=b&sig=c", warned: []string{"client_secret", "Password", "sig"}},
		{desc: "no credential", url: "http://auth/check?rd=/&format=json", warned: nil},
		{desc: "no query", url: "http://auth/check", warned: nil},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			errs, warnings := loadErrors(t, `authorizers:
  - {name: h, http: {url: "`+tc.url+`", timeout: 1s}}
policies:
  - {name: p, authorizer: h, allowed_origins: [https://app.example.com]}
`, policy.LoadOptions{})
			if len(errs) > 0 {
				t.Fatalf("errors: %v", errs)
			}
			var want []string
			for _, k := range tc.warned {
				want = append(want, `f.yaml:2:27: authorizers[0].http.url: url's query parameter "`+k+`" looks like a credential, and the URL is configuration text (logged, published to gateways): send it as a static_headers entry read from the environment or a file instead`)
			}
			if !slices.Equal(warnings, want) {
				t.Errorf("warnings:\n got %s\nwant %s", strings.Join(warnings, "\n     "), strings.Join(want, "\n     "))
			}
		})
	}
}

// TestAuthorizersYAMLRoundTrip: authorizers written by Go read back as
// they were, and carry only where a secret is read, never its value.
func TestAuthorizersYAMLRoundTrip(t *testing.T) {
	t.Parallel()
	as := []policy.Authorizer{
		{Name: "h", OnError: policy.OnErrorAllow, HTTP: &policy.HTTPAuthorizer{
			URL: "http://auth/check/", ForwardPath: true, Headers: []string{"cookie"}, UpstreamHeaders: []string{"x-user"}, Timeout: 1500 * time.Millisecond},
			StaticHeaders: []policy.StaticHeader{{Name: "x-api-key", ValueFrom: policy.ValueSource{Env: "OPA_KEY"}}}},
		{Name: "g", OnError: policy.OnErrorDeny, GRPC: &policy.GRPCAuthorizer{Address: "opa:9191", Timeout: time.Second, TLS: &policy.TLSClient{}},
			StaticHeaders: []policy.StaticHeader{{Name: "x-opa", ValueFrom: policy.ValueSource{File: "/var/run/secrets/opa"}}}},
		{Name: "g2", OnError: policy.OnErrorDeny, GRPC: &policy.GRPCAuthorizer{Address: "opa:9191", Timeout: time.Second,
			TLS: &policy.TLSClient{CAFile: "/ca.pem", CertFile: "/c.pem", KeyFile: "/k.pem", ServerName: "opa.internal"}}},
		{Name: "g3", OnError: policy.OnErrorDeny, GRPC: &policy.GRPCAuthorizer{Address: "opa:9191", Timeout: time.Second}},
	}
	out, err := yaml.Marshal(map[string]any{"authorizers": as})
	if err != nil {
		t.Fatal(err)
	}
	doc := string(out) + `policies:
  - {name: p1, authorizer: h, allowed_origins: [https://a.example.com], match: {hosts: [a.example.com]}}
  - {name: p2, authorizer: g, allowed_origins: [https://a.example.com], match: {hosts: [b.example.com]}}
  - {name: p3, authorizer: g2, allowed_origins: [https://a.example.com], match: {hosts: [c.example.com]}}
  - {name: p4, authorizer: g3, allowed_origins: [https://a.example.com], match: {hosts: [d.example.com]}}
`
	e, _, err := policy.LoadWithOptions("round.yaml", []byte(doc), policy.LoadOptions{SkipLocalFiles: true})
	if err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	got := e.Authorizers()
	for i := range as {
		if !got[i].Equal(&as[i]) {
			t.Errorf("authorizers[%d] = %+v, want %+v\n%s", i, got[i], as[i], doc)
		}
	}
	if got[3].GRPC.TLS != nil || got[1].GRPC.TLS == nil {
		t.Errorf("tls: {} and no tls did not survive:\n%s", doc)
	}
	if !strings.Contains(doc, "env: OPA_KEY") || strings.Contains(doc, "value:") {
		t.Errorf("static headers not written as references:\n%s", doc)
	}
}

// TestAuthorizerEqualAndHash: every field that changes a client changes
// Equal and the hash, so a reload rebuilds the client.
func TestAuthorizerEqualAndHash(t *testing.T) {
	t.Parallel()
	base := func() policy.Config {
		return policy.Config{
			Authorizers: []policy.Authorizer{{Name: "g", GRPC: &policy.GRPCAuthorizer{Address: "opa:9191", Timeout: time.Second, TLS: &policy.TLSClient{ServerName: "a"}},
				StaticHeaders: []policy.StaticHeader{{Name: "x-k", ValueFrom: policy.ValueSource{Env: "K"}}}}},
			Policies: []policy.Policy{{Name: "p", Authorizer: "g", AllowedOrigins: []string{"https://app.example.com"}}},
		}
	}
	tests := []struct {
		desc   string
		change func(c *policy.Config)
	}{
		{desc: "tls server_name", change: func(c *policy.Config) { c.Authorizers[0].GRPC.TLS.ServerName = "b" }},
		{desc: "tls removed", change: func(c *policy.Config) { c.Authorizers[0].GRPC.TLS = nil }},
		{desc: "static header source", change: func(c *policy.Config) { c.Authorizers[0].StaticHeaders[0].ValueFrom.Env = "K2" }},
		{desc: "static header removed", change: func(c *policy.Config) { c.Authorizers[0].StaticHeaders = nil }},
	}
	b := base()
	e0, _, err := policy.Compile(&b)
	if err != nil {
		t.Fatal(err)
	}
	a0 := e0.Authorizers()[0]
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			c := base()
			tc.change(&c)
			e, _, err := policy.Compile(&c)
			if err != nil {
				t.Fatal(err)
			}
			a := e.Authorizers()[0]
			if a.Equal(&a0) || e.Hash() == e0.Hash() {
				t.Errorf("Equal %v, same hash %v: the change is not seen", a.Equal(&a0), e.Hash() == e0.Hash())
			}
		})
	}
	b2 := base()
	e1, _, _ := policy.Compile(&b2)
	if a1 := e1.Authorizers()[0]; !a1.Equal(&a0) || e1.Hash() != e0.Hash() {
		t.Error("the same configuration is not equal to itself")
	}
	// The copies are the caller's.
	a0.GRPC.TLS.ServerName = "changed"
	a0.StaticHeaders[0].Name = "changed"
	if a := e0.Authorizers()[0]; a.GRPC.TLS.ServerName != "a" || a.StaticHeaders[0].Name != "x-k" {
		t.Error("Authorizers shares TLS or static headers with the engine")
	}
}

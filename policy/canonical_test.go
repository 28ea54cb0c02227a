package policy_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/corsauthz/corsauthz/internal/testpki"
	"github.com/corsauthz/corsauthz/policy"
)

// everyField sets every field of the configuration, so that a field added
// to Config, Policy, Match or Authorizer and forgotten by Canonical makes
// TestCanonicalRoundTrip fail (allSet checks the test keeps up).
const everyField = `
# a comment the canonical form drops
authorizers:
  - name: sso
    http:
      url: https://auth.example.com/check
      forward_path: true
      headers: [cookie]
      upstream_headers: [x-auth-request-user]
      timeout: 250ms
    on_error: deny
    static_headers:
      - {name: x-api-key, value_from: {env: SSO_KEY}}
  - name: opa
    grpc:
      address: "opa.example.com:9191"
      timeout: 1s
      tls: {ca_file: %[1]s, cert_file: %[2]s, key_file: %[3]s, server_name: opa.internal}
    on_error: allow
policies:
  - name: app
    match: {hosts: [API.example.com], path_prefixes: [/v1/]}
    allowed_origins: [https://app.example.com, "https://*.example.com"]
    allowed_methods: [PUT]
    allowed_headers: [Content-Type]
    exposed_headers: [X-Total]
    allow_credentials: true
    max_age_seconds: 600
    allow_private_network: true
    reject_disallowed_origins: true
    report_only: true
    authorizer: sso
  - name: rpc
    match: {hosts: [rpc.example.com]}
    allowed_origins: ["*"]
    authorizer: opa
default_policy: app
`

func TestCanonicalRoundTrip(t *testing.T) {
	pki := testpki.New(t, "opa", "opa.internal")
	e, _, err := policy.Load("/etc/corsauthz/corsauthz.yaml", []byte(fmt.Sprintf(everyField, pki.CAFile, pki.ClientCertFile, pki.ClientKeyFile)))
	if err != nil {
		t.Fatal(err)
	}
	canon, err := e.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{"#", "/etc/corsauthz"} {
		if strings.Contains(string(canon), gone) {
			t.Errorf("the canonical form holds %q:\n%s", gone, canon)
		}
	}
	again, _, err := policy.Load("canonical", canon)
	if err != nil {
		t.Fatalf("the canonical form does not load: %v\n%s", err, canon)
	}
	if !reflect.DeepEqual(e.Config(), again.Config()) {
		t.Errorf("round trip changed the configuration:\n%+v\nwant:\n%+v", again.Config(), e.Config())
	}
	twice, err := again.Canonical()
	if err != nil || string(twice) != string(canon) {
		t.Errorf("the canonical form of the canonical form differs:\n%s\nwant:\n%s", twice, canon)
	}
	cfg := e.Config()
	for _, v := range []any{cfg, cfg.Policies[0], cfg.Policies[0].Match, cfg.Authorizers[0], *cfg.Authorizers[0].HTTP, *cfg.Authorizers[1].GRPC, *cfg.Authorizers[1].GRPC.TLS, cfg.Authorizers[0].StaticHeaders[0]} {
		allSet(t, reflect.ValueOf(v))
	}
}

// allSet fails for every zero field of the struct v: everyField must set
// each one.
func allSet(t *testing.T, v reflect.Value) {
	t.Helper()
	for i := range v.NumField() {
		f := v.Field(i)
		if f.IsZero() && !(f.Kind() == reflect.Pointer && v.Type().Field(i).Name == "GRPC") {
			t.Errorf("%s.%s is not set by the test configuration: set it, and check Canonical writes it", v.Type().Name(), v.Type().Field(i).Name)
		}
	}
}

// canonicalValues are values the canonical form must quote to read them
// back as the same strings: YAML indicators, words YAML reads as booleans
// or null, numbers, escapes and characters YAML does not print.
var canonicalValues = []struct {
	desc, prefix string
}{
	{desc: "plain path", prefix: "/v1/orders"},
	{desc: "a space (a # after one starts a comment; # is refused in prefixes)", prefix: "/a %23b"},
	{desc: "mapping indicator", prefix: "/a: b"},
	{desc: "ends with a colon", prefix: "/a:"},
	{desc: "flow indicators", prefix: "/[a],{b}"},
	{desc: "quotes and backslash", prefix: `/"a'\b`},
	{desc: "tab and newline", prefix: "/a\tb\nc"},
	{desc: "control characters", prefix: "/\x00\x01\x1b\x7f"},
	{desc: "line and paragraph separators, NEL and BOM", prefix: "/\u2028\u2029\u0085\ufeff"},
	{desc: "C1 controls and non-characters", prefix: "/\u0080\u009f\ufffe\uffff"},
	{desc: "non-ASCII", prefix: "/café/日本/😀"},
	{desc: "trailing spaces", prefix: "/a  "},
	{desc: "anchor, alias, tag and directive characters", prefix: "/&a *b !c %d @e `f"},
}

// TestCanonicalQuoting: every value in canonicalValues reads back as
// itself, and so do the words YAML reads as something else when they are
// policy names, header names or the origin "null".
func TestCanonicalQuoting(t *testing.T) {
	t.Parallel()
	for _, tc := range canonicalValues {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			if !canonicalRoundTrip(t, tc.prefix) {
				t.Fatalf("path prefix %q refused: the case tests nothing", tc.prefix)
			}
		})
	}
	cfg := &policy.Config{Policies: []policy.Policy{
		{Name: "true", AllowedOrigins: []string{"null"}, AllowedHeaders: []string{"yes", "on", "1", "1e3", "~", "x-#", "!a"}, AllowedMethods: []string{"NO", "Off"}, Match: policy.Match{Hosts: []string{"null.example.com"}}},
		{Name: "123", AllowedOrigins: []string{"https://*.example.com", "https://[::1]:8443"}},
	}, DefaultPolicy: "123"}
	e, _, err := policy.Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkCanonical(t, e)
}

// FuzzCanonical: any path prefix the configuration accepts reads back from
// the canonical form as itself, or Canonical says it cannot be written
// (not UTF-8); seeded from canonicalValues.
func FuzzCanonical(f *testing.F) {
	for _, tc := range canonicalValues {
		f.Add(tc.prefix)
	}
	f.Fuzz(func(t *testing.T, prefix string) {
		canonicalRoundTrip(t, prefix)
	})
}

// canonicalRoundTrip compiles a policy with prefix as a path prefix and
// checks its canonical form; false when the configuration refuses prefix.
func canonicalRoundTrip(t *testing.T, prefix string) bool {
	t.Helper()
	cfg := &policy.Config{Policies: []policy.Policy{{
		Name: "api", AllowedOrigins: []string{"https://app.example.com"},
		Match: policy.Match{Hosts: []string{"api.example.com"}, PathPrefixes: []string{prefix}},
	}}}
	e, _, err := policy.Compile(cfg)
	if err != nil {
		return false
	}
	if !utf8.ValidString(prefix) {
		if canon, err := e.Canonical(); err == nil {
			t.Fatalf("Canonical wrote a prefix that is not UTF-8:\n%s", canon)
		}
		return true
	}
	checkCanonical(t, e)
	return true
}

// checkCanonical loads e's canonical form and compares the configurations.
func checkCanonical(t *testing.T, e *policy.Engine) {
	t.Helper()
	canon, err := e.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	again, _, err := policy.Load("canonical", canon)
	if err != nil {
		t.Fatalf("the canonical form does not load: %v\n%s", err, canon)
	}
	if !reflect.DeepEqual(e.Config(), again.Config()) {
		t.Errorf("round trip changed the configuration:\n%#v\nwant:\n%#v\ncanonical form:\n%s", again.Config(), e.Config(), canon)
	}
}

// TestWriteCanonical: WriteCanonical writes exactly Canonical's bytes,
// whether the form fits in one flush or takes many, and stops at the
// writer's first error.
func TestWriteCanonical(t *testing.T) {
	pki := testpki.New(t, "opa", "opa.internal")
	var many strings.Builder
	many.WriteString("policies:\n")
	for i := range 300 {
		fmt.Fprintf(&many, "  - name: p%d\n    match: {hosts: [h%d.example.com]}\n    allowed_origins: [https://a%d.example.com, https://b%d.example.com, \"https://*.c%d.example.com\"]\n", i, i, i, i, i)
	}
	for _, tc := range []struct {
		desc, config string
	}{
		{desc: "every field", config: fmt.Sprintf(everyField, pki.CAFile, pki.ClientCertFile, pki.ClientKeyFile)},
		{desc: "one policy", config: "policies:\n  - {name: a, allowed_origins: [\"*\"]}\n"},
		{desc: "300 policies (many flushes)", config: many.String()},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			e, _, err := policy.Load("c.yaml", []byte(tc.config))
			if err != nil {
				t.Fatal(err)
			}
			want, err := e.Canonical()
			if err != nil {
				t.Fatal(err)
			}
			var got strings.Builder
			n, err := e.WriteCanonical(&got)
			if err != nil || n != len(want) || got.String() != string(want) {
				t.Errorf("WriteCanonical = %d, %v, and wrote:\n%s\nwant %d bytes:\n%s", n, err, got.String(), len(want), want)
			}
			w := &failingWriter{room: len(want) / 2}
			if _, err := e.WriteCanonical(w); err == nil && len(want) > w.room {
				t.Errorf("WriteCanonical to a writer that fails after %d bytes: no error", w.room)
			}
		})
	}
}

// failingWriter accepts room bytes, then fails.
type failingWriter struct{ room, n int }

func (w *failingWriter) Write(b []byte) (int, error) {
	if w.n+len(b) > w.room {
		return 0, fmt.Errorf("full after %d bytes", w.n)
	}
	w.n += len(b)
	return len(b), nil
}

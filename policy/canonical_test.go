package policy_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

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

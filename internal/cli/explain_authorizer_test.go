package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExplainAuthorizer: explain names the authorizer a Check would ask,
// and says why a preflight or a refusal asks none.
func TestExplainAuthorizer(t *testing.T) {
	t.Parallel()
	config := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(config, []byte(`
authorizers:
  - name: oauth2-proxy
    http: {url: "http://oauth2-proxy:4180/oauth2/auth", timeout: 500ms}
policies:
  - name: api
    authorizer: oauth2-proxy
    allowed_origins: [https://app.example.com]
    allowed_methods: [PUT]
    reject_disallowed_origins: true
    match: {hosts: [api.example.com]}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		desc string
		args []string
		want string
	}{
		{desc: "actual request", args: []string{"-H", "Origin: https://app.example.com", "https://api.example.com/v1"},
			want: `Authorizer: "oauth2-proxy" (http, http://oauth2-proxy:4180/oauth2/auth) would be asked next, within 500ms`},
		{desc: "no Origin", args: []string{"https://api.example.com/v1"}, want: `Authorizer: "oauth2-proxy" (http,`},
		{desc: "preflight", args: []string{"-H", "Origin: https://app.example.com", "-H", "Access-Control-Request-Method: PUT", "https://api.example.com/v1"},
			want: `Authorizer: "oauth2-proxy" is not asked: a preflight is answered by corsauthz alone.`},
		{desc: "reject_disallowed_origins", args: []string{"-H", "Origin: https://evil.example", "https://api.example.com/v1"},
			want: `Authorizer: "oauth2-proxy" is not asked: reject_disallowed_origins refuses it first.`},
		{desc: "JSON", args: []string{"--json", "https://api.example.com/v1"}, want: `"authorizer": "oauth2-proxy"`},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			r := run(t, nil, append([]string{"explain", "--config", config}, tc.args...)...)
			if r.code != 0 || !strings.Contains(r.stdout, tc.want) {
				t.Errorf("exit %d, stdout:\n%s\nwant a line with %q (stderr %s)", r.code, r.stdout, tc.want, r.stderr)
			}
		})
	}
}

package cli_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/corsauthz/corsauthz/policy"
)

// findingLine is the format every finding on stderr has.
var findingLine = regexp.MustCompile(`^[^:]+:\d+:\d+: (unsafe|changed|unsupported): .+$`)

func TestImport(t *testing.T) {
	dir := t.TempDir()
	badYAML := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badYAML, []byte("kind: Ingress\nmetadata: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		desc       string
		args       []string
		env        map[string]string
		code       int
		stderr     string // a line stderr must hold
		loads      bool   // stdout must load as a configuration
		noFindings bool
	}{
		{desc: "a bare enable-cors: changed only", args: []string{"import", "--from", "ingress-nginx", "../../importer/testdata/ingress-nginx/enable-cors-bare.yaml"}, code: 0, stderr: "changed: Ingress http-svc", loads: true},
		{desc: "format from the environment", args: []string{"import", "../../importer/testdata/ingress-nginx/enable-cors-bare.yaml"}, env: map[string]string{"CORSAUTHZ_FROM": "ingress-nginx"}, code: 0, loads: true},
		{desc: "unsafe: exit 1, configuration printed", args: []string{"import", "--from", "istio", "../../importer/testdata/istio/authorizationpolicy-options.yaml"}, code: 1, stderr: "unsafe: AuthorizationPolicy team/public-web-api-allow-options", loads: true},
		{desc: "several files", args: []string{"import", "--from", "gateway-api", "../../importer/testdata/gateway-api/httproute-credentials-true.yaml", "../../importer/testdata/gateway-api/httproute-all-origins-no-creds.yaml"}, code: 0, loads: true, noFindings: true},
		{desc: "unparsable YAML: exit 2 with the position", args: []string{"import", "--from", "ingress-nginx", badYAML}, code: 2, stderr: badYAML + ":2:"},
		{desc: "a missing file", args: []string{"import", "--from", "istio", filepath.Join(dir, "none.yaml")}, code: 2, stderr: "corsauthz import: "},
		{desc: "a directory", args: []string{"import", "--from", "istio", dir}, code: 2, stderr: "not a regular file"},
		{desc: "an unknown format", args: []string{"import", "--from", "traefik", badYAML}, code: 2, stderr: "unknown format"},
		{desc: "no format", args: []string{"import", badYAML}, code: 2, stderr: "--from FORMAT is required"},
		{desc: "no file", args: []string{"import", "--from", "istio"}, code: 2, stderr: "give one or more files"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			r := run(t, tc.env, tc.args...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d\nstderr:\n%s", r.code, tc.code, r.stderr)
			}
			if tc.stderr != "" && !strings.Contains(r.stderr, tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, r.stderr)
			}
			if tc.noFindings && r.stderr != "" {
				t.Errorf("stderr not empty:\n%s", r.stderr)
			}
			if !tc.loads {
				if tc.code == 2 && r.stdout != "" {
					t.Errorf("exit 2 printed a configuration:\n%s", r.stdout)
				}
				return
			}
			for _, line := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
				if line != "" && !strings.HasPrefix(line, "note: ") && !findingLine.MatchString(line) {
					t.Errorf("stderr line is neither a finding nor a note: %q", line)
				}
			}
			if _, _, err := policy.Load("stdout", []byte(r.stdout)); err != nil {
				t.Fatalf("stdout does not load: %v\n%s", err, r.stdout)
			}
			// And validate, run as a user would, agrees.
			out := filepath.Join(t.TempDir(), "imported.yaml")
			if err := os.WriteFile(out, []byte(r.stdout), 0o644); err != nil {
				t.Fatal(err)
			}
			if v := run(t, nil, "validate", "--config", out); v.code != 0 {
				t.Errorf("validate exit %d:\n%s", v.code, v.stderr)
			}
		})
	}
}

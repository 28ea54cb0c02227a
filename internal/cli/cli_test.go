package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/corsauthz/corsauthz/internal/cli"
	"github.com/corsauthz/corsauthz/internal/freeport"
)

type result struct {
	code           int
	stdout, stderr string
}

func run(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	return runCtx(t, context.Background(), env, args...)
}

func runCtx(t *testing.T, ctx context.Context, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := cli.Main(ctx, args, cli.IO{
		Stdout: &stdout,
		Stderr: &stderr,
		Env: func(name string) (string, bool) {
			v, ok := env[name]
			return v, ok
		},
	})
	return result{code, stdout.String(), stderr.String()}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		desc       string
		args       []string
		env        map[string]string
		wantCode   int
		wantStdout string
		wantStderr []string // exact lines, in order
	}{
		{
			desc:       "valid file",
			args:       []string{"validate", "--config", "testdata/valid.yaml"},
			wantStdout: "testdata/valid.yaml: valid (1 policy)\n",
		},
		{
			desc:       "config from the environment",
			args:       []string{"validate"},
			env:        map[string]string{"CORSAUTHZ_CONFIG": "testdata/valid.yaml"},
			wantStdout: "testdata/valid.yaml: valid (1 policy)\n",
		},
		{
			desc:       "the command line wins over the environment",
			args:       []string{"validate", "--config", "testdata/valid.yaml"},
			env:        map[string]string{"CORSAUTHZ_CONFIG": "testdata/invalid.yaml"},
			wantStdout: "testdata/valid.yaml: valid (1 policy)\n",
		},
		{
			desc:       "warnings are printed and the file is still valid",
			args:       []string{"validate", "--config", "testdata/warnings.yaml"},
			wantStdout: "testdata/warnings.yaml: valid (1 policy)\n",
			wantStderr: []string{
				`warning: testdata/warnings.yaml:3:23: policies[0].allowed_origins[0]: default port 443 removed: browsers leave it out of Origin; write "https://app.example.com"`,
				`warning: testdata/warnings.yaml:3:23: policies[0].allowed_origins[0]: host "App.example.com" normalised to "app.example.com": browsers send host names in lower case; write "https://app.example.com"`,
				`warning: testdata/warnings.yaml:4:22: policies[0].max_age_seconds: max_age_seconds 10000 is more than Chromium's cap of 7200: Chromium-based browsers will cache preflights for 7200 seconds only`,
			},
		},
		{
			desc:     "every problem, one a line, in file order",
			args:     []string{"validate", "--config", "testdata/invalid.yaml"},
			wantCode: 1,
			wantStderr: []string{
				`testdata/invalid.yaml:3:23: policies[0].allowed_origins[0]: "*" allows every origin, so it must be the only entry: remove the other origins or the "*"`,
				`testdata/invalid.yaml:3:28: policies[0].allowed_origins[1]: origin "https://app.example.com/" has a trailing slash, which browsers never send: did you mean "https://app.example.com"?`,
				`testdata/invalid.yaml:4:23: policies[0].allowed_methods[0]: CONNECT is a forbidden method: browsers never send it from scripts, and allowing it only helps attacks; remove it`,
				`testdata/invalid.yaml:6:22: policies[0].max_age_seconds: max_age_seconds is -1: write 0 to send no Access-Control-Max-Age, or a number of seconds up to 86400`,
				`testdata/invalid.yaml:7:11: policies[1].name: duplicate policy name "orders" (policies[0] has it already): names must be unique`,
				`testdata/invalid.yaml:8:22: policies[1].allowed_origins: allowed_origins is empty: list the origins allowed to read responses, such as "https://app.example.com"`,
				`testdata/invalid.yaml:9:5: policies[1].alowed_headers: unknown field "alowed_headers": did you mean "allowed_headers"?`,
				`testdata/invalid.yaml:10:17: default_policy: default_policy "missing" names no policy: write one of "orders", or leave it out`,
			},
		},
		{
			desc:     "what to write instead, and only what is then accepted",
			args:     []string{"validate", "--config", "testdata/suggestions.yaml"},
			wantCode: 1,
			wantStderr: []string{
				`testdata/suggestions.yaml:3:22: policies[0].allowed_origins: must be a list, and "*" (any origin) cannot be used with allow_credentials: true, since browsers refuse "Access-Control-Allow-Origin: *" on credentialed requests: list the origins that may send credentials, such as [https://app.example.com], or remove allow_credentials and write ["*"]`,
				`testdata/suggestions.yaml:4:22: policies[0].allowed_methods: must be a list: write [GET, POST]`,
				`testdata/suggestions.yaml:5:24: policies[0].allow_credentials: must be true or false, not the quoted string "true": write true without quotes`,
			},
		},
		{
			desc:       "missing file",
			args:       []string{"validate", "--config", "testdata/nope.yaml"},
			wantCode:   1,
			wantStderr: []string{"corsauthz: open testdata/nope.yaml: no such file or directory"},
		},
		{
			desc:       "no --config",
			args:       []string{"validate"},
			wantCode:   2,
			wantStderr: []string{"corsauthz validate: --config FILE is required"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			got := run(t, tt.env, tt.args...)
			if got.code != tt.wantCode {
				t.Errorf("exit code = %d, want %d\nstderr:\n%s", got.code, tt.wantCode, got.stderr)
			}
			if got.stdout != tt.wantStdout {
				t.Errorf("stdout = %q, want %q", got.stdout, tt.wantStdout)
			}
			gotLines := lines(got.stderr)
			if strings.Join(gotLines, "\n") != strings.Join(tt.wantStderr, "\n") {
				t.Errorf("stderr lines:\n%s\nwant:\n%s", strings.Join(gotLines, "\n"), strings.Join(tt.wantStderr, "\n"))
			}
		})
	}
}

func lines(s string) []string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestExplainText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		desc     string
		args     []string
		wantCode int
		// wantFirst is the exact first line; wantContains are lines
		// that must appear somewhere after it.
		wantFirst    string
		wantContains []string
	}{
		{
			desc:      "allowed preflight against the built-in example",
			args:      []string{"-X", "OPTIONS", "-H", "Origin: https://app.example.com", "-H", "Access-Control-Request-Method: PUT", "-H", "Access-Control-Request-Headers: content-type, authorization", "https://api.example.com/v1/orders"},
			wantFirst: `PREFLIGHT ALLOWED: answer 204 with the CORS headers (policy "api")`,
			wantContains: []string{
				"HTTP 204, headers:",
				"  Access-Control-Allow-Origin: https://app.example.com",
				"  Access-Control-Allow-Methods: PUT",
				"  Access-Control-Allow-Headers: content-type, authorization",
				"  Access-Control-Allow-Credentials: true",
				"  Access-Control-Max-Age: 600",
				"  Vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
				`  - policy "api" was selected: host "api.example.com" matches "api.example.com"`,
				"  - method PUT is in allowed_methods",
			},
		},
		{
			desc:      "a preflight is recognised without -X, and flags may follow the URL",
			args:      []string{"https://api.example.com/v1/orders", "-H", "Origin: https://app.example.com", "-H", "Access-Control-Request-Method: patch"},
			wantFirst: `PREFLIGHT REJECTED: answer 403 without CORS headers (policy "api")`,
			wantContains: []string{
				"HTTP 403, headers:",
				"  Vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
				`  - method "patch" is not allowed; allowed_methods: PUT, PATCH, DELETE (GET, HEAD and POST are always allowed); methods are case-sensitive: the page sent "patch", the policy allows "PATCH"`,
			},
		},
		{
			desc:      "rejected origin names the closest allowed one and what differs",
			args:      []string{"-H", "Origin: http://app.example.com", "https://api.example.com/v1/orders"},
			wantFirst: `ACTUAL REQUEST NOT ALLOWED: pass on; the browser will hide the response (only Vary added) (policy "api")`,
			wantContains: []string{
				"  Vary: Origin",
				`  - closest allowed origin: "https://app.example.com"; scheme differs: the request has "http", the policy "https"`,
			},
		},
		{
			desc:      "subdomain of an exactly listed origin",
			args:      []string{"-H", "Origin: https://admin.app.example.com", "https://fs.example.com/f/1"},
			wantFirst: `ACTUAL REQUEST NOT ALLOWED: pass on; the browser will hide the response (only Vary added) (policy "files")`,
			wantContains: []string{
				`  - closest allowed origin: "https://app.example.com"; host "admin.app.example.com" is a subdomain of "app.example.com", which is listed exactly; add it, or a pattern such as "https://*.app.example.com"`,
			},
		},
		{
			desc:      "apex of a wildcard pattern",
			args:      []string{"-H", "Origin: https://preview.example.com", "https://api.example.com/v1/orders"},
			wantFirst: `ACTUAL REQUEST NOT ALLOWED: pass on; the browser will hide the response (only Vary added) (policy "api")`,
			wantContains: []string{
				`  - closest allowed origin: "https://*.preview.example.com"; host "preview.example.com" is the apex: "https://*.preview.example.com" matches subdomains only; list "https://preview.example.com" too`,
			},
		},
		{
			desc:      "wildcard match",
			args:      []string{"-H", "Origin: https://pr-42.preview.example.com", "https://api.example.com/v1/orders"},
			wantFirst: `ACTUAL REQUEST ALLOWED: pass on; add the CORS headers to the response (policy "api")`,
			wantContains: []string{
				"  Access-Control-Allow-Origin: https://pr-42.preview.example.com",
				`  - origin "https://pr-42.preview.example.com" matches "https://*.preview.example.com" (one or more labels before the domain)`,
			},
		},
		{
			desc:      "no Origin: Vary: Origin, for caches",
			args:      []string{"https://api.example.com/v1/orders"},
			wantFirst: `NOT CORS (no Origin): pass on; add the headers caches need to the response (policy "api")`,
			wantContains: []string{
				"Headers added to the response:",
				"  Vary: Origin",
				"  - the request has no Origin header, so it is not a CORS request",
				`  - the response gets Vary: Origin, so that no cache hands this answer, which has no Access-Control-Allow-Origin, to a later CORS request (Fetch, "CORS protocol and HTTP caches")`,
			},
		},
		{
			desc:      "no Origin under a * policy: Access-Control-Allow-Origin: *, no Vary",
			args:      []string{"https://api.example.com/public/logo.png"},
			wantFirst: `NOT CORS (no Origin): pass on; add the headers caches need to the response (policy "public")`,
			wantContains: []string{
				"  Access-Control-Allow-Origin: *",
				`  - the policy allows any origin ("*") without credentials, so the response gets Access-Control-Allow-Origin: * as a CORS request's would, and no Vary: a cache may hand it to any page (Fetch, "CORS protocol and HTTP caches")`,
			},
		},
		{
			desc:      "an empty Origin is a CORS request that matches no listed origin",
			args:      []string{"-H", "Origin:", "https://api.example.com/v1/orders"},
			wantFirst: `ACTUAL REQUEST NOT ALLOWED: pass on; the browser will hide the response (only Vary added) (policy "api")`,
			wantContains: []string{
				"  - the Origin header is present but empty: a CORS request whose origin matches no listed origin or pattern",
			},
		},
		{
			desc:      "segment boundary: /public does not select /publicity",
			args:      []string{"-H", "Origin: https://anyone.test", "https://api.example.com/publicity"},
			wantFirst: `ACTUAL REQUEST NOT ALLOWED: pass on; the browser will hide the response (only Vary added) (policy "api")`,
		},
		{
			desc:      "a group: the app's origin picks the app's policy",
			args:      []string{"--config", "testdata/groups.yaml", "-H", "Origin: https://app.example.com", "https://api.example.com/v1/orders"},
			wantFirst: `ACTUAL REQUEST ALLOWED: pass on; add the CORS headers to the response (policy "app" of app, partners)`,
			wantContains: []string{
				"  Access-Control-Allow-Credentials: true",
				`  - policies "app", "partners" share this match (host "api.example.com" matches "api.example.com" and path "/v1/orders" is under "/v1"), so the Origin picks among them`,
				`  - policy "app" decides: it is the first of them whose allowed_origins admit origin "https://app.example.com"`,
			},
		},
		{
			desc:      "a group: a partner's origin picks the partners' policy",
			args:      []string{"--config", "testdata/groups.yaml", "-H", "Origin: https://partner.example.net", "https://api.example.com/v1/orders"},
			wantFirst: `ACTUAL REQUEST ALLOWED: pass on; add the CORS headers to the response (policy "partners" of app, partners)`,
			wantContains: []string{
				"  Access-Control-Allow-Origin: https://partner.example.net",
				`  - policy "partners" decides: it is the first of them whose allowed_origins admit origin "https://partner.example.net"`,
			},
		},
		{
			desc:      "a group: no policy admits the origin, the first decides",
			args:      []string{"--config", "testdata/groups.yaml", "-H", "Origin: https://evil.example", "https://api.example.com/v1/orders"},
			wantFirst: `ACTUAL REQUEST NOT ALLOWED: pass on; the browser will hide the response (only Vary added) (policy "app" of app, partners)`,
			wantContains: []string{
				`  - none of them admits origin "https://evil.example", so the first, "app", decides`,
			},
		},
		{
			desc:      "--policy naming a group",
			args:      []string{"--config", "testdata/groups.yaml", "--policy", "app,partners", "-H", "Origin: https://partner.example.net", "https://other.example.com/"},
			wantFirst: `ACTUAL REQUEST ALLOWED: pass on; add the CORS headers to the response (policy "partners" of app,partners)`,
			wantContains: []string{
				`  - the gateway named the group "app,partners" (cors_policy context extension); policy "partners" decides: it is the first of them whose allowed_origins admit origin "https://partner.example.net"`,
			},
		},
		{
			desc:      "OPTIONS without Access-Control-Request-Method is an actual request",
			args:      []string{"-X", "OPTIONS", "-H", "Origin: https://app.example.com", "https://api.example.com/v1/orders"},
			wantFirst: `ACTUAL REQUEST ALLOWED: pass on; add the CORS headers to the response (policy "api")`,
			wantContains: []string{
				"  - OPTIONS with Origin but without Access-Control-Request-Method: not a preflight, an actual cross-origin request",
			},
		},
		{
			desc:      "private network access is legacy",
			args:      []string{"-H", "Origin: https://app.example.com", "-H", "Access-Control-Request-Method: GET", "-H", "Access-Control-Request-Private-Network: true", "https://api.example.com/v1/orders"},
			wantFirst: `PREFLIGHT ALLOWED: answer 204 with the CORS headers (policy "api")`,
			wantContains: []string{
				"  - private network access was requested but allow_private_network is off: the preflight is answered without Access-Control-Allow-Private-Network, so the browser blocks the private-network request (Private Network Access is legacy: Chrome 142 and later ask the user instead, with the Local Network Access permission prompt, and send no such preflight)",
			},
		},
		{
			desc:      "no policy for the host",
			args:      []string{"-H", "Origin: https://app.example.com", "https://other.example.com/"},
			wantFirst: "NOT CORS: pass on untouched",
			wantContains: []string{
				`  - no policy matches host "other.example.com" and path "/", and there is no default_policy`,
			},
		},
		{
			desc:      "--policy picks the policy as cors_policy would",
			args:      []string{"--policy", "public", "-H", "Origin: https://anyone.test", "https://other.example.com/"},
			wantFirst: `ACTUAL REQUEST ALLOWED: pass on; add the CORS headers to the response (policy "public")`,
			wantContains: []string{
				"  Access-Control-Allow-Origin: *",
				`  - policy "public" was named by the gateway (cors_policy context extension)`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			got := run(t, nil, append([]string{"explain"}, tt.args...)...)
			if got.code != tt.wantCode {
				t.Fatalf("exit code = %d, want %d; stderr:\n%s", got.code, tt.wantCode, got.stderr)
			}
			out := lines(got.stdout)
			if len(out) == 0 || out[0] != tt.wantFirst {
				t.Fatalf("first line:\n%q\nwant:\n%q\nfull output:\n%s", first(out), tt.wantFirst, got.stdout)
			}
			for _, want := range tt.wantContains {
				if !contains(out, want) {
					t.Errorf("output lacks line %q; output:\n%s", want, got.stdout)
				}
			}
		})
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func contains(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

func TestExplainFlagsFromEnvironment(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"CORSAUTHZ_X":      "OPTIONS",
		"CORSAUTHZ_H":      "Origin: https://app.example.com",
		"CORSAUTHZ_POLICY": "files",
		"CORSAUTHZ_JSON":   "true",
	}
	got := run(t, env, "explain", "-H", "Access-Control-Request-Method: PUT", "https://other.example.com/")
	if got.code != 0 {
		t.Fatalf("exit %d: %s", got.code, got.stderr)
	}
	// -H on the command line replaces CORSAUTHZ_H, as any flag given
	// replaces its variable: no Origin, so not CORS.
	if !strings.Contains(got.stdout, `"kind": "not_cors"`) || !strings.Contains(got.stdout, `"policy": "files"`) {
		t.Errorf("output:\n%s", got.stdout)
	}
	got = run(t, env, "explain", "https://other.example.com/")
	if !strings.Contains(got.stdout, `"kind": "actual_allowed"`) {
		t.Errorf("with CORSAUTHZ_X=OPTIONS and no request method the request is an OPTIONS actual request; output:\n%s", got.stdout)
	}
}

func TestExplainJSON(t *testing.T) {
	t.Parallel()
	got := run(t, nil, "explain", "--json", "-X", "OPTIONS",
		"-H", "Origin: https://app.example.com", "-H", "Access-Control-Request-Method: DELETE",
		"https://fs.example.com/files/1")
	if got.code != 0 {
		t.Fatalf("exit %d: %s", got.code, got.stderr)
	}
	var out struct {
		Kind    string `json:"kind"`
		Status  int    `json:"status"`
		Policy  string `json:"policy"`
		Headers []struct {
			Name, Value string
			Append      bool
		} `json:"headers"`
		Reasons []string `json:"reasons"`
	}
	if err := json.Unmarshal([]byte(got.stdout), &out); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, got.stdout)
	}
	if out.Kind != "preflight_allowed" || out.Status != 204 || out.Policy != "files" {
		t.Errorf("kind, status, policy = %q, %d, %q; want preflight_allowed, 204, files", out.Kind, out.Status, out.Policy)
	}
	headers := map[string]string{}
	for _, h := range out.Headers {
		headers[h.Name] = h.Value
		if (h.Name == "Vary") != h.Append {
			t.Errorf("header %s: append = %v", h.Name, h.Append)
		}
	}
	if headers["Access-Control-Allow-Methods"] != "DELETE" || headers["Access-Control-Max-Age"] != "3600" {
		t.Errorf("headers = %v", headers)
	}
	if len(out.Reasons) == 0 {
		t.Error("no reasons")
	}
}

// TestExplainWarnings: explain decides what it is given, and says on
// stderr when that is likely not what the user meant.
func TestExplainWarnings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		desc      string
		args      []string
		wantFirst string
		wantWarn  string // "": no warning
	}{
		{
			desc:      "-X contradicts Access-Control-Request-Method",
			args:      []string{"-X", "PUT", "-H", "Origin: https://app.example.com", "-H", "Access-Control-Request-Method: PUT", "https://api.example.com/v1/orders"},
			wantFirst: `ACTUAL REQUEST ALLOWED: pass on; add the CORS headers to the response (policy "api")`,
			wantWarn:  "warning: -X PUT contradicts Access-Control-Request-Method: PUT: only an OPTIONS request is a preflight, so this is decided as an actual PUT request; leave -X out (or write -X OPTIONS) for the preflight\n",
		},
		{
			desc:      "-X OPTIONS with Access-Control-Request-Method: no warning",
			args:      []string{"-X", "OPTIONS", "-H", "Origin: https://app.example.com", "-H", "Access-Control-Request-Method: PUT", "https://api.example.com/v1/orders"},
			wantFirst: `PREFLIGHT ALLOWED: answer 204 with the CORS headers (policy "api")`,
		},
		{
			desc:      "Cookie under a policy without credentials",
			args:      []string{"--config", "testdata/groups.yaml", "-H", "Origin: https://partner.example.net", "-H", "Cookie: session=1", "https://api.example.com/v1/orders"},
			wantFirst: `ACTUAL REQUEST ALLOWED: pass on; add the CORS headers to the response (policy "partners" of app, partners)`,
			wantWarn:  "warning: the request carries Cookie, but policy \"partners\" does not allow credentials (no allow_credentials): a fetch with credentials: \"include\" will be blocked by the browser, as the answer has no Access-Control-Allow-Credentials: true\n",
		},
		{
			desc:      "Authorization and Cookie under a * policy",
			args:      []string{"-H", "Origin: https://anyone.test", "-H", "authorization: Bearer x", "-H", "Cookie: a=b", "https://api.example.com/public/x"},
			wantFirst: `ACTUAL REQUEST ALLOWED: pass on; add the CORS headers to the response (policy "public")`,
			wantWarn:  "warning: the request carries Authorization and Cookie, but policy \"public\" does not allow credentials (no allow_credentials): a fetch with credentials: \"include\" will be blocked by the browser, as the answer has no Access-Control-Allow-Credentials: true\n",
		},
		{
			desc:      "Cookie under a policy with credentials: no warning",
			args:      []string{"--config", "testdata/groups.yaml", "-H", "Origin: https://app.example.com", "-H", "Cookie: session=1", "https://api.example.com/v1/orders"},
			wantFirst: `ACTUAL REQUEST ALLOWED: pass on; add the CORS headers to the response (policy "app" of app, partners)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			got := run(t, nil, append([]string{"explain"}, tt.args...)...)
			if got.code != 0 {
				t.Fatalf("exit code = %d; stderr:\n%s", got.code, got.stderr)
			}
			if out := lines(got.stdout); first(out) != tt.wantFirst {
				t.Errorf("first line:\n%q\nwant:\n%q", first(out), tt.wantFirst)
			}
			if got.stderr != tt.wantWarn {
				t.Errorf("stderr:\n%q\nwant:\n%q", got.stderr, tt.wantWarn)
			}
			if tt.wantWarn == "" {
				return
			}
			js := run(t, nil, append([]string{"explain", "--json"}, tt.args...)...)
			var out struct{ Warnings []string }
			if err := json.Unmarshal([]byte(js.stdout), &out); err != nil {
				t.Fatal(err)
			}
			if want := strings.TrimSuffix(strings.TrimPrefix(tt.wantWarn, "warning: "), "\n"); len(out.Warnings) != 1 || out.Warnings[0] != want {
				t.Errorf("JSON warnings = %q, want [%q]", out.Warnings, want)
			}
		})
	}
}

func TestExplainErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		desc       string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{"no URL", []string{"explain", "-H", "Origin: https://a.test"}, 2, "corsauthz explain: give exactly one URL, such as https://api.example.com/v1/orders\n"},
		{"URL without host", []string{"explain", "/v1/orders"}, 2, "corsauthz explain: URL \"/v1/orders\" has no host: write it in full, such as https://api.example.com/v1/orders\n"},
		{"malformed header", []string{"explain", "-H", "Origin", "https://api.example.com/"}, 2, "corsauthz explain: header \"Origin\": write it as 'Name: value'\n"},
		{"header without its colon", []string{"explain", "-H", "Origin https://a.example", "https://api.example.com/"}, 2, "corsauthz explain: header \"Origin https://a.example\": \"Origin https\" is not a header name; write it as 'Name: value', such as 'Origin: https://a.example'\n"},
		{"header with an empty name", []string{"explain", "-H", ": x", "https://api.example.com/"}, 2, "corsauthz explain: header \": x\": \"\" is not a header name; write it as 'Name: value'\n"},
		{"unknown policy", []string{"explain", "--policy", "nope", "https://api.example.com/"}, 1, "corsauthz explain: policy \"nope\" is not configured (the gateway's cors_policy names a policy this configuration does not have); configured policies: api, public, files\n"},
		{"invalid config", []string{"explain", "--config", "testdata/invalid.yaml", "https://api.example.com/"}, 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			got := run(t, nil, tt.args...)
			if got.code != tt.wantCode {
				t.Errorf("exit code = %d, want %d; stderr: %s", got.code, tt.wantCode, got.stderr)
			}
			if tt.wantStderr != "" && got.stderr != tt.wantStderr {
				t.Errorf("stderr = %q, want %q", got.stderr, tt.wantStderr)
			}
			if tt.wantStderr == "" && !strings.Contains(got.stderr, "testdata/invalid.yaml:3:23: ") {
				t.Errorf("stderr does not list the configuration's problems: %s", got.stderr)
			}
		})
	}
}

func TestServeRefusesInvalidConfig(t *testing.T) {
	t.Parallel()
	got := run(t, nil, "serve", "--config", "testdata/invalid.yaml", "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
	if got.code != 1 {
		t.Fatalf("exit code = %d, want 1", got.code)
	}
	if !strings.Contains(got.stderr, "the configuration testdata/invalid.yaml is invalid:\n") ||
		!strings.Contains(got.stderr, "testdata/invalid.yaml:10:17: default_policy: ") {
		t.Errorf("stderr does not say why:\n%s", got.stderr)
	}
}

func TestServeRefusesBadHTTPPathPrefix(t *testing.T) {
	t.Parallel()
	got := run(t, nil, "serve", "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--http-path-prefix", "cors")
	if got.code != 1 || !strings.Contains(got.stderr, `path prefix "cors" does not start with /`) {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 1 saying the prefix does not start with /", got.code, got.stderr)
	}
}

// TestServeRefusesTakenPort: a taken address is refused at once, with
// the address, the reason and the flag (and environment variable) to
// change.
func TestServeRefusesTakenPort(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().String()
	for _, tt := range []struct {
		desc, flag, env string
	}{
		{desc: "gRPC", flag: "--grpc-addr", env: "CORSAUTHZ_GRPC_ADDR"},
		{desc: "admin", flag: "--admin-addr", env: "CORSAUTHZ_ADMIN_ADDR"},
		{desc: "HTTP authorization", flag: "--http-addr", env: "CORSAUTHZ_HTTP_ADDR"},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			args := []string{"serve", "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", tt.flag, taken}
			got := run(t, nil, args...)
			if got.code != 1 {
				t.Errorf("exit code = %d, want 1", got.code)
			}
			want := " address already in use (another process is listening there): choose another address with " + tt.flag + " (or " + tt.env + ")\n"
			if !strings.Contains(got.stderr, "listen on "+taken+" ") || !strings.HasSuffix(got.stderr, want) {
				t.Errorf("stderr:\n%s\nwant the address, and a last line ending %q", got.stderr, want)
			}
		})
	}
}

func TestServeRefusesOneAddressTwice(t *testing.T) {
	t.Parallel()
	got := run(t, nil, "serve", "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:19002", "--http-addr", "127.0.0.1:19002")
	want := "corsauthz serve: --admin-addr and --http-addr are both 127.0.0.1:19002: give each listener its own port\n"
	if got.code != 2 || got.stderr != want {
		t.Errorf("exit %d, stderr %q; want 2, %q", got.code, got.stderr, want)
	}
}

func TestServeBuiltInExampleUntilCancelled(t *testing.T) {
	t.Parallel()
	grpcAddr, adminAddr := freeport.Addr(t), freeport.Addr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() {
		done <- runCtx(t, ctx, nil, "serve", "--grpc-addr", grpcAddr, "--admin-addr", adminAddr, "--http-addr", "127.0.0.1:0")
	}()

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
		if err == nil && resp.Status == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("service never became SERVING: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case got := <-done:
		if got.code != 0 {
			t.Errorf("exit code = %d, want 0; stderr:\n%s", got.code, got.stderr)
		}
		if !strings.Contains(got.stderr, "built-in example") {
			t.Errorf("log does not say the built-in example is served:\n%s", got.stderr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not return after cancellation")
	}
}

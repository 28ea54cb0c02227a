package cli_test

import (
	"regexp"
	"strings"
	"testing"
)

// TestHelp: every command's --help (and -help, -h) prints, on stdout, the
// synopsis, a description and every flag as the README writes them, and
// exits 0; a flag that does not exist is said on stderr with the help, and
// exits 2.
func TestHelp(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		desc        string
		args        []string
		wantCode    int
		wantStdout  []string // each in stdout
		wantStderr  []string // each in stderr
		emptyStderr bool
	}{
		{desc: "serve --help", args: []string{"serve", "--help"}, emptyStderr: true, wantStdout: []string{
			"Usage: corsauthz serve [--config FILE]",
			"Serves CORS decisions for API gateways",
			"  --grpc-addr ADDR  [$CORSAUTHZ_GRPC_ADDR]\n",
			"(default 127.0.0.1:9001)",
			"  --http-addr ADDR  [$CORSAUTHZ_HTTP_ADDR]\n",
			"  --tls-cert-file FILE  [$CORSAUTHZ_TLS_CERT_FILE]\n        PEM certificate (chain) FILE for TLS on the gRPC and HTTP authorization listeners",
			"  --drain-timeout DURATION  [$CORSAUTHZ_DRAIN_TIMEOUT]\n",
		}},
		{desc: "serve -h", args: []string{"serve", "-h"}, emptyStderr: true, wantStdout: []string{"Usage: corsauthz serve"}},
		{desc: "validate --help", args: []string{"validate", "--help"}, emptyStderr: true, wantStdout: []string{
			"Usage: corsauthz validate --config FILE\n",
			"Checks a configuration file",
			"  --config FILE  [$CORSAUTHZ_CONFIG]\n        configuration FILE to check (required)\n",
			"  --max-config-bytes BYTES  [$CORSAUTHZ_MAX_CONFIG_BYTES]\n",
		}},
		{desc: "validate -help", args: []string{"validate", "-help"}, emptyStderr: true, wantStdout: []string{"Usage: corsauthz validate"}},
		{desc: "explain --help", args: []string{"explain", "--help"}, emptyStderr: true, wantStdout: []string{
			"Usage: corsauthz explain [--config FILE] [--policy NAME] [-X METHOD] [-H 'Name: value']... [--json] URL\n",
			"Decides one request",
			"  -H 'Name: value'  [$CORSAUTHZ_H]\n",
			"  -X METHOD  [$CORSAUTHZ_X]\n",
			"  --json  [$CORSAUTHZ_JSON]\n",
			"  --policy NAME  [$CORSAUTHZ_POLICY]\n",
		}},
		{desc: "explain --help after the URL", args: []string{"explain", "https://api.example.com/", "--help"}, emptyStderr: true, wantStdout: []string{"Usage: corsauthz explain"}},
		{desc: "top-level --help", args: []string{"--help"}, emptyStderr: true, wantStdout: []string{"Run 'corsauthz COMMAND --help'"}},
		{desc: "an unknown flag", args: []string{"validate", "--bogus"}, wantCode: 2, wantStderr: []string{
			"corsauthz validate: flag provided but not defined: --bogus\n\nUsage: corsauthz validate --config FILE\n",
		}},
		{desc: "a bad value", args: []string{"serve", "--drain-timeout", "soon"}, wantCode: 2, wantStderr: []string{
			`corsauthz serve: invalid value "soon" for flag --drain-timeout: parse error` + "\n\nUsage: corsauthz serve",
		}},
		{desc: "a one-letter flag keeps one dash", args: []string{"explain", "-H"}, wantCode: 2, wantStderr: []string{
			"corsauthz explain: flag needs an argument: -H\n",
		}},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			got := run(t, nil, tt.args...)
			if got.code != tt.wantCode {
				t.Errorf("exit %d, want %d\nstderr:\n%s", got.code, tt.wantCode, got.stderr)
			}
			for _, w := range tt.wantStdout {
				if !strings.Contains(got.stdout, w) {
					t.Errorf("stdout does not have %q:\n%s", w, got.stdout)
				}
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(got.stderr, w) {
					t.Errorf("stderr does not have %q:\n%s", w, got.stderr)
				}
			}
			if tt.emptyStderr && got.stderr != "" {
				t.Errorf("stderr %q, want nothing", got.stderr)
			}
			// No flag line with one dash but the one-letter ones.
			if m := regexp.MustCompile(`(?m)^  -[a-z][a-z-]+`).FindString(got.stdout + got.stderr); m != "" {
				t.Errorf("a flag printed with one dash: %q", m)
			}
		})
	}
}

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corsauthz/corsauthz/internal/childproc"
	"github.com/corsauthz/corsauthz/internal/freeport"
	"github.com/corsauthz/corsauthz/server"
	"github.com/corsauthz/corsauthz/xdsconfig"
)

// The browser scenarios once more, with real Caddy as the gateway: Chromium
// → Caddy (built from integrations/caddy/cmd/caddy, so with the
// http.handlers.corsauthz module) → the upstream, with corsauthz serving
// the policies over xDS and the module deciding in process (local mode).
// The tap in front of Caddy (tap_test.go) keeps the exchange log the
// scenarios check and is the shared cache in front, as for NGINX.

// caddyEnv makes a missing Caddy a failure instead of a skip: CI sets
// CORSAUTHZ_E2E_CADDY=require. caddyBinEnv names the Caddy binary built
// with the module. The tests never build Caddy themselves: a cold build of
// Caddy and its hundreds of modules takes minutes, longer than go test's
// default timeout on a small machine, so it is a step of its own (.ci/run
// does it, into the cache directory named in buildCaddyCommand).
const (
	caddyEnv    = "CORSAUTHZ_E2E_CADDY"
	caddyBinEnv = "CORSAUTHZ_CADDY_BIN"
)

// buildCaddyCommand is the command, run from the repository root, that
// builds the Caddy the suite uses and says where it is.
const buildCaddyCommand = `(cd integrations/caddy && go build -o "$HOME/.cache/corsauthz/e2e/caddy" ./cmd/caddy) && export CORSAUTHZ_CADDY_BIN="$HOME/.cache/corsauthz/e2e/caddy"`

// caddyBinary returns the Caddy with the corsauthz module that
// CORSAUTHZ_CADDY_BIN names, or skips the test saying how to build one
// (fails instead under CORSAUTHZ_E2E_CADDY=require).
func caddyBinary(t *testing.T) string {
	t.Helper()
	skip := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...) + "; build it with:\n\t" + buildCaddyCommand
		if os.Getenv(caddyEnv) == "require" {
			t.Fatalf("%s\n(%s=require makes this a failure instead of a skip)", msg, caddyEnv)
		}
		t.Skipf("%s\n(set %s=require to make this a failure)", msg, caddyEnv)
	}
	bin := os.Getenv(caddyBinEnv)
	if bin == "" {
		skip("no Caddy with the corsauthz module: %s is not set", caddyBinEnv)
	}
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		skip("%s=%s is not an executable file (%v)", caddyBinEnv, bin, err)
	}
	return bin
}

// freePort returns a loopback port nothing listens on (Caddy's
// configuration needs the number before it starts).
func freePort(t *testing.T) string {
	t.Helper()
	_, p, _ := net.SplitHostPort(freeport.Addr(t))
	return p
}

// caddyfile is the Caddyfile of the test: one handle per gateway route,
// each with the corsauthz directive naming the route's policy (or none:
// selection by host and path) in front of reverse_proxy to the route's
// upstream; other paths get 404, as from Envoy's router. An upstream that
// cannot be reached is answered 503, as Envoy does (Caddy's own is 502).
func caddyfile(port, corsauthzAddr, upstream string, rts []route) string {
	var b strings.Builder
	fmt.Fprintf(&b, "{\n\tadmin off\n\tauto_https off\n\tpersist_config off\n}\n\nhttp://:%s {\n\tbind 127.0.0.1\n", port)
	for _, rt := range rts {
		fmt.Fprintf(&b, "\thandle %s* {\n\t\tcorsauthz {\n\t\t\taddress %s\n\t\t\tmode local\n", rt.prefix, corsauthzAddr)
		if p := rt.extensions["cors_policy"]; p != "" {
			fmt.Fprintf(&b, "\t\t\tpolicy %s\n", p)
		}
		up := upstream
		if rt.upstream != nil {
			up = rt.upstream.Host
		}
		fmt.Fprintf(&b, "\t\t}\n\t\treverse_proxy %s\n\t}\n", up)
	}
	b.WriteString("\thandle {\n\t\trespond 404\n\t}\n\thandle_errors 502 {\n\t\trespond 503\n\t}\n}\n")
	return b.String()
}

// caddyRoutes are routes, plus one to an upstream nobody listens on, less
// the one naming a policy corsauthz does not have: Caddy refuses to start
// with it (TestCaddyRefusesBadDirective), so that path is answered by the
// Caddyfile's catch-all 404.
func caddyRoutes(t *testing.T) []route {
	t.Helper()
	rts := slices.DeleteFunc(slices.Clone(routes), func(rt route) bool { return rt.extensions["cors_policy"] == "not-configured" })
	return append(rts, downRoute(t))
}

// startCaddy runs the Caddy binary with the test's Caddyfile (routes, to
// s's upstream and corsauthz) until the test ends, and returns its URL
// once its catch-all answers 404.
func startCaddy(t *testing.T, bin string, s *stack, routes []route) *url.URL {
	t.Helper()
	port := freePort(t)
	// Caddy listens on 127.0.0.1 but serves every Host: the browser calls
	// api.corsauthz.localhost through the recorder.
	cfg := caddyfile(port, s.corsauthz.GRPCAddr().String(), s.upstream, routes)
	return runCaddy(t, bin, port, cfg, func(status int) bool { return status == http.StatusNotFound })
}

// runCaddy runs the Caddy binary with cfg, which listens on
// 127.0.0.1:port, until the test ends, and returns its URL once a GET of
// /no-route gets a status ready accepts.
func runCaddy(t *testing.T, bin, port, cfg string, ready func(status int) bool) *url.URL {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", file, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	cmd.Stdout, cmd.Stderr = t.Output(), t.Output()
	if err := childproc.Start(t, cmd); err != nil {
		t.Fatalf("start Caddy: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("Caddy still running 10s after SIGTERM: killing it")
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	u := &url.URL{Scheme: "http", Host: "127.0.0.1:" + port}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("Caddy exited: %v\nCaddyfile:\n%s", err, cfg)
		default:
		}
		resp, err := http.Get(u.String() + "/no-route")
		if err == nil {
			resp.Body.Close()
			if ready(resp.StatusCode) {
				return u
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Caddy not answering 30s after start (last: %v)\nCaddyfile:\n%s", err, cfg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestBrowserThroughCaddy(t *testing.T) {
	bin := caddyBinary(t)
	browser := startBrowser(t)
	s, engine, _ := startPagesAndUpstream(t, http.HandlerFunc(serveUpstream))
	s.startCorsauthz(t, engine, server.Options{})
	routes := caddyRoutes(t)
	caddy := startCaddy(t, bin, s, routes)
	s.frontWithTap(t, caddy, routes)

	t.Run("scenarios", func(t *testing.T) { s.run(t, browser, s.scenariosThrough(caddyGateway)) })

	t.Run("a reload reaches Caddy within a second", func(t *testing.T) {
		strict := "- name: strict\n    allowed_origins: [\"" + s.app + "\"]"
		reloaded := strings.Replace(string(s.policies), strict, "- name: strict\n    allowed_origins: [\""+s.app+"\", \""+s.evil+"\"]", 1)
		if reloaded == string(s.policies) {
			t.Fatalf("testdata/policies.yaml has no %q to change", strict)
		}
		if got := allowedOrigin(t, caddy, "/strict/reload", s.evil); got != "403" {
			t.Fatalf("before the reload: %s, want 403", got)
		}
		start := time.Now()
		if err := s.corsauthz.Reload(context.Background(), "testdata/policies.yaml", []byte(reloaded)); err != nil {
			t.Fatal(err)
		}
		waitAnswer(t, caddy, "/strict/reload", s.evil, s.evil, start)

		// The browser sees it too.
		tb, closeTab, err := openTab(browser, s.evil+"/")
		defer closeTab()
		if err != nil {
			t.Fatal(err)
		}
		res, err := tb.fetch([]fetchCall{s.get("/strict/reload-browser")})
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 1 || !res[0].OK || res[0].Body != "GET /strict/reload-browser" {
			t.Errorf("after the reload, the evil page's fetch saw %s", results(res))
		}

		start = time.Now()
		if err := s.corsauthz.Reload(context.Background(), "testdata/policies.yaml", s.policies); err != nil {
			t.Fatal(err)
		}
		waitAnswer(t, caddy, "/strict/reload", s.evil, "403", start)
	})

	t.Run("corsauthz stopped: Caddy answers with the last policies", func(t *testing.T) {
		if err := s.stopCorsauthz(); err != nil {
			t.Fatalf("corsauthz Serve: %v", err)
		}
		if resp, err := http.Get("http://" + s.corsauthz.AdminAddr().String() + "/healthz"); err == nil {
			resp.Body.Close()
			t.Fatal("corsauthz still answering after it was stopped")
		}
		// A fresh browser (no preflight cache) and a fresh exchange log.
		s.frontWithTap(t, caddy, routes)
		s.run(t, startBrowser(t), s.scenariosThrough(caddyGateway))
	})
}

// allowedOrigin asks Caddy for path from origin, as a browser's GET, and
// returns the Access-Control-Allow-Origin it answered, or the status when
// it answered 403.
func allowedOrigin(t *testing.T, caddy *url.URL, path, origin string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, caddy.String()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "api.corsauthz.localhost"
	req.Header.Set("Origin", origin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusForbidden {
		return "403"
	}
	return resp.Header.Get("Access-Control-Allow-Origin")
}

// waitAnswer polls Caddy until it answers want, and fails when that took
// more than a second after start.
func waitAnswer(t *testing.T, caddy *url.URL, path, origin, want string, start time.Time) {
	t.Helper()
	for {
		got := allowedOrigin(t, caddy, path, origin)
		if got == want {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("5s after the reload Caddy still answers %q, want %q", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(start)
	t.Logf("Caddy answered with the reloaded configuration %s after the reload", took.Round(time.Microsecond))
	if took > time.Second {
		t.Errorf("the reload took %s to reach Caddy, more than a second", took)
	}
}

// TestCaddyRefusesBadDirective: Caddy itself refuses a corsauthz directive
// it cannot use: every problem of the directive in one message, and a
// policy the configuration corsauthz serves does not have.
func TestCaddyRefusesBadDirective(t *testing.T) {
	bin := caddyBinary(t)
	s, engine, _ := startPagesAndUpstream(t, http.HandlerFunc(serveUpstream))
	s.startCorsauthz(t, engine, server.Options{})
	for _, tt := range []struct {
		desc, directive string
		want            []string
	}{
		{
			desc:      "every problem of the directive at once",
			directive: "corsauthz {\n\t\taddress nowhere\n\t\tmode cached\n\t\ttimeout\n\t}",
			want:      []string{`address "nowhere": write host:port`, `mode "cached": write local`, "timeout needs a value"},
		},
		{
			desc:      "a policy corsauthz's configuration does not have",
			directive: "corsauthz {\n\t\taddress " + s.corsauthz.GRPCAddr().String() + "\n\t\tpolicy nope\n\t}",
			want:      []string{`policy "nope": the configuration corsauthz at ` + s.corsauthz.GRPCAddr().String() + ` serves (` + xdsconfig.PublishedSource + `) has no policy "nope"; its policies: creds, nocreds`},
		},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "Caddyfile")
			cfg := "{\n\tadmin off\n\tpersist_config off\n}\nhttp://127.0.0.1:" + freePort(t) + " {\n\t" + tt.directive + "\n\trespond ok\n}\n"
			if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, "validate", "--config", file, "--adapter", "caddyfile")
			cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
			out, err := childproc.CombinedOutput(t, cmd)
			if err == nil {
				t.Fatalf("caddy validate accepted the directive:\n%s", out)
			}
			said := strings.ReplaceAll(string(out), `\"`, `"`) // Caddy logs the error as a JSON string
			for _, want := range tt.want {
				if !strings.Contains(said, want) {
					t.Errorf("caddy validate does not say %q:\n%s", want, out)
				}
			}
		})
	}
}

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The browser scenarios once more, with real Caddy as the gateway: Chromium
// → Caddy (built from integrations/caddy/cmd/caddy, so with the
// http.handlers.corsauthz module) → the upstream, with corsauthz serving
// the policies over xDS and the module deciding in process (local mode).
// A recording proxy in front of Caddy keeps the exchange log the scenarios
// check (what the test gateway records for the Envoy suite); it passes
// requests and answers through unchanged, and tells a response Caddy
// proxied from the upstream from one the module answered by a header
// Caddy's reverse_proxy adds and the recorder removes.

// caddyEnv makes a Caddy that cannot be built a failure instead of a skip:
// CI sets CORSAUTHZ_E2E_CADDY=require. caddyBinEnv names a Caddy binary
// built already (with the module), to skip the build.
const (
	caddyEnv    = "CORSAUTHZ_E2E_CADDY"
	caddyBinEnv = "CORSAUTHZ_CADDY_BIN"
)

// upstreamMark is the response header Caddy adds to what it proxied.
const upstreamMark = "X-E2e-Upstream"

// caddyBinary returns the path of a Caddy with the corsauthz module: the
// one CORSAUTHZ_CADDY_BIN names, or one built now with go build from
// integrations/caddy into the user cache directory (Go's build cache makes
// a rebuild quick).
func caddyBinary(t *testing.T) string {
	t.Helper()
	skip := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if os.Getenv(caddyEnv) == "require" {
			t.Fatalf("%s (%s=require makes this a failure instead of a skip)", msg, caddyEnv)
		}
		t.Skipf("%s; set %s=require to make this a failure", msg, caddyEnv)
	}
	if bin := os.Getenv(caddyBinEnv); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			skip("%s=%s: %v", caddyBinEnv, bin, err)
		}
		return bin
	}
	b := buildCaddy()
	if b.err != nil {
		skip("cannot build Caddy with the corsauthz module (cd integrations/caddy && go build ./cmd/caddy): %v\n%s", b.err, b.out)
	}
	return b.bin
}

// caddyBuild is the result of building Caddy: the binary, or go build's
// output and error.
type caddyBuild struct {
	bin string
	out []byte
	err error
}

// buildCaddy builds Caddy with the module once per test process.
var buildCaddy = sync.OnceValue(func() (b caddyBuild) {
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	b.bin = filepath.Join(cache, "corsauthz", "e2e", "caddy")
	build := exec.Command("go", "build", "-o", b.bin, "./cmd/caddy")
	build.Dir = filepath.Join("..", "integrations", "caddy")
	b.out, b.err = build.CombinedOutput()
	return b
})

// freePort returns a loopback port nothing listens on (Caddy's
// configuration needs the number before it starts).
func freePort(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	_, p, _ := net.SplitHostPort(lis.Addr().String())
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
		fmt.Fprintf(&b, "\t\t}\n\t\treverse_proxy %s {\n\t\t\theader_down +%s 1\n\t\t}\n\t}\n", up, upstreamMark)
	}
	b.WriteString("\thandle {\n\t\trespond 404\n\t}\n\thandle_errors 502 {\n\t\trespond 503\n\t}\n}\n")
	return b.String()
}

// startCaddy runs the Caddy binary with the test's Caddyfile until the
// test ends, and returns its URL once it answers.
func startCaddy(t *testing.T, bin string, s *stack) *url.URL {
	t.Helper()
	dir := t.TempDir()
	port := freePort(t)
	// Caddy listens on 127.0.0.1 but serves every Host: the browser calls
	// api.corsauthz.localhost through the recorder.
	cfg := caddyfile(port, s.corsauthz.GRPCAddr().String(), strings.TrimPrefix(s.upstream, "http://"), s.gw.routes)
	file := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", file, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	cmd.Stdout, cmd.Stderr = t.Output(), t.Output()
	if err := cmd.Start(); err != nil {
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
			if resp.StatusCode == http.StatusNotFound {
				return u
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Caddy not answering 30s after start (last: %v)\nCaddyfile:\n%s", err, cfg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// recorder is the recording proxy in front of Caddy. It keeps its log in
// a gateway value, so that the log reads as the test gateway's does: the
// request as Envoy would have described it to corsauthz, and the answer;
// and it puts the gateway's shared cache in front of the routes that have
// one, as the gateway does in front of ext_authz.
type recorder struct {
	log   *gateway
	caddy *url.URL
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt, _ := rc.log.route(r.URL.Path)
	x := exchange{check: rc.log.checkRequest(r, rt.extensions)}
	if rt.cache {
		if hit, ok := rc.log.cache.lookup(r, rt.ignoreVary); ok {
			x.cached, x.status, x.header = true, hit.status, hit.header.Clone()
			rc.log.record(x)
			maps.Copy(w.Header(), hit.header)
			w.WriteHeader(hit.status)
			w.Write(hit.body)
			return
		}
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(rc.caddy)
			pr.Out.Host = pr.In.Host
		},
		ModifyResponse: func(resp *http.Response) error {
			x.upstream = resp.Header.Get(upstreamMark) != ""
			resp.Header.Del(upstreamMark)
			x.status, x.header = resp.StatusCode, resp.Header.Clone()
			rc.log.record(x)
			if rt.cache {
				body, err := io.ReadAll(resp.Body)
				if err != nil {
					return err
				}
				resp.Body = io.NopCloser(bytes.NewReader(body))
				rc.log.cache.store(r, resp.StatusCode, resp.Header, body, rt.ignoreVary)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			x.err, x.status = err, http.StatusBadGateway
			rc.log.record(x)
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	proxy.ServeHTTP(w, r)
}

func (rc *recorder) exchanges(paths ...string) []exchange { return rc.log.exchanges(paths...) }

// frontWithCaddy makes Caddy, behind a new recorder, the API the
// scenarios call, from the browser and from the stack's direct client.
func (s *stack) frontWithCaddy(t *testing.T, caddy *url.URL) {
	t.Helper()
	rc := &recorder{log: &gateway{routes: s.gw.routes}, caddy: caddy}
	front := httptest.NewServer(rc)
	t.Cleanup(front.Close)
	s.api = "http://api.corsauthz.localhost:" + port(t, front)
	s.log = rc
	addr := front.Listener.Addr().String()
	s.direct = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	t.Cleanup(s.direct.CloseIdleConnections)
}

// gatewayFailures are how the Envoy suite describes the exchanges where
// its gateway, not the upstream, answered because something failed: a
// failed Check (answered with Envoy's default status_on_error, 403), or an
// upstream it could not reach (503). Caddy's module has no Check to fail:
// like the shipped Envoy configuration (status_on_error: 503) it answers
// 503, and the page sees the same blocked fetch; an unreachable upstream
// is Caddy's own answer, made 503 by the Caddyfile.
var gatewayFailures = regexp.MustCompile(`: (Check failed \([^)]*\)|upstream failed), answered \d+$`)

// caddyScenarios are the scenarios, with those exchanges described as
// Caddy's: answered 503.
func (s *stack) caddyScenarios() []scenario {
	scenarios := s.scenarios()
	for i := range scenarios {
		for j, x := range scenarios[i].exchanges {
			scenarios[i].exchanges[j] = gatewayFailures.ReplaceAllString(x, ": answered 503")
		}
	}
	return scenarios
}

func TestBrowserThroughCaddy(t *testing.T) {
	bin := caddyBinary(t)
	browser := startBrowser(t)
	s := startStack(t)
	caddy := startCaddy(t, bin, s)
	s.frontWithCaddy(t, caddy)

	t.Run("scenarios", func(t *testing.T) { s.run(t, browser, s.caddyScenarios()) })

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
		s.frontWithCaddy(t, caddy)
		s.run(t, startBrowser(t), s.caddyScenarios())
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
// it cannot use, with every problem in its message.
func TestCaddyRefusesBadDirective(t *testing.T) {
	bin := caddyBinary(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "Caddyfile")
	cfg := "{\n\tadmin off\n}\nhttp://127.0.0.1:" + freePort(t) + " {\n\tcorsauthz {\n\t\taddress nowhere\n\t\tmode cached\n\t}\n\trespond ok\n}\n"
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "validate", "--config", file, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("caddy validate accepted the directive:\n%s", out)
	}
	said := strings.ReplaceAll(string(out), `\"`, `"`) // Caddy logs the error as a JSON string
	for _, want := range []string{`address "nowhere": write host:port`, `mode "cached": write local`} {
		if !strings.Contains(said, want) {
			t.Errorf("caddy validate does not say %q:\n%s", want, out)
		}
	}
}

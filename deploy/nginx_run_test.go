package deploy_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/corsauthz/corsauthz/internal/freeport"
	"github.com/corsauthz/corsauthz/internal/nginxproc"
	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/server"
)

// recorder is an HTTP handler that notes every request it gets (method,
// path and query, headers) before handing it to next.
type recorder struct {
	next http.Handler
	mu   sync.Mutex
	seen []*http.Request
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec.mu.Lock()
	rec.seen = append(rec.seen, &http.Request{Method: r.Method, URL: r.URL, Header: r.Header.Clone()})
	rec.mu.Unlock()
	rec.next.ServeHTTP(w, r)
}

// since returns the requests after the first n.
func (rec *recorder) since(n int) []*http.Request {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]*http.Request(nil), rec.seen[n:]...)
}

func (rec *recorder) count() int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return len(rec.seen)
}

// nginxRun is a recipe installed and running: corsauthz's HTTP listener
// with the recipe's configuration, NGINX over HTTPS in front of an API.
type nginxRun struct {
	d             *debian
	listen, cert  string
	api           *recorder
	client        *http.Client
	stopCorsauthz func() error
}

// runRecipe installs r as docs/nginx.md says, with corsauthz serving the
// configuration its `corsauthz serve` names (edited by config when not
// nil) and NGINX's variables of the table plus confVars, and
// starts everything on 127.0.0.1. The API answers with its own
// Access-Control-Allow-Origin: * and Vary, and echoes the request; edit,
// when not nil, changes the installed files before NGINX starts.
func runRecipe(t *testing.T, r nginxRecipe, config func(string) string, confVars map[string]string, edit func(d *debian)) *nginxRun {
	t.Helper()
	dir := newNginxDir(t, needNginx(t))
	run := &nginxRun{listen: freeport.Addr(t)}
	run.api = &recorder{next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Access-Control-Allow-Methods", "GET, POST, PUT")
		w.Header().Set("Vary", "Accept-Encoding")
		io.WriteString(w, "api "+r.Method+" "+r.URL.RequestURI()+" policy-header="+r.Header.Get("X-Corsauthz-Policy"))
	})}
	api := httptest.NewServer(run.api)
	t.Cleanup(api.Close)

	// corsauthz's address is only known once it listens: install with a
	// placeholder first, to learn which configuration the page serves.
	const placeholder = "127.0.0.1:9"
	d := installRecipe(t, dir, r, run.listen, api.Listener.Addr().String(), placeholder)
	run.d = d
	cfg := string(readFile(t, filepath.Join("..", filepath.FromSlash(d.serveConfig))))
	if config != nil {
		cfg = config(cfg)
	}
	e, _, err := policy.Load(d.serveConfig, []byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(policy.NewHolder(e), server.Options{GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	run.stopCorsauthz = sync.OnceValue(func() error { stop(); return <-served })
	t.Cleanup(func() {
		if err := run.stopCorsauthz(); err != nil {
			t.Errorf("corsauthz Serve: %v", err)
		}
	})

	confPath := filepath.Join(d.etc, "conf.d", "corsauthz.conf")
	conf := strings.Replace(d.installed(t, "conf.d/corsauthz.conf"), "server "+placeholder+";", "server "+srv.HTTPAddr().String()+";", 1)
	for old, new := range confVars {
		if !strings.Contains(string(readFile(t, nginxDoc)), "`"+old) {
			t.Errorf("docs/nginx.md does not list %q among what to change", old)
		}
		if n := strings.Count(conf, old); n != 1 {
			t.Fatalf("conf.d/corsauthz.conf: %q appears %d times, want once", old, n)
		}
		conf = strings.Replace(conf, old, new, 1)
	}
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(d)
	}
	if _, err := dir.Test(t.Context(), d.conf); err != nil {
		t.Fatal(err)
	}
	proc, err := dir.Start(d.conf, run.listen)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := proc.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			log, _ := os.ReadFile(dir.ErrorLog())
			t.Logf("nginx error log:\n%s", tail(string(log)))
		}
	})

	run.cert = filepath.Join(d.etc, "tls", "api.crt")
	pem, err := os.ReadFile(run.cert)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	run.client = &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "api.example.com"},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, run.listen)
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return run
}

// do sends a request to https://api.example.com through NGINX; headers
// are "Name: value" (a name may repeat), body is sent when not empty.
func (run *nginxRun) do(t *testing.T, method, path, body string, headers ...string) (*http.Response, string) {
	t.Helper()
	resp, b, err := run.try(method, path, body, headers...)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// try is do, returning the error of a request that got no answer.
func (run *nginxRun) try(method, path, body string, headers ...string) (*http.Response, string, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "https://api.example.com"+path, rd)
	if err != nil {
		return nil, "", err
	}
	for _, h := range headers {
		name, value, _ := strings.Cut(h, ": ")
		req.Header.Add(name, value)
	}
	resp, err := run.client.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

// wantHeaders compares response headers, each as its values joined with
// " | " ("" for none).
func wantHeaders(t *testing.T, desc string, h http.Header, want map[string]string) {
	t.Helper()
	for name, v := range want {
		if got := strings.Join(h.Values(name), " | "); got != v {
			t.Errorf("%s: %s = %q, want %q", desc, name, got, v)
		}
	}
}

const app = "https://app.example.com"

// TestNginxShippedConfigServes runs the recipe of docs/nginx.md as
// written (conf.d/corsauthz.conf into Debian's nginx.conf) for real:
// NGINX over HTTPS in front of an API that sets its own
// Access-Control-Allow-Origin: * and Vary, with corsauthz's HTTP listener
// serving the configuration the page names; then the page's curl command.
// The browser suite (e2e/) does the same with Chromium; this test pins
// the files and the page.
func TestNginxShippedConfigServes(t *testing.T) {
	t.Parallel()
	run := runRecipe(t, nginxRecipes[0], nil, nil, nil)
	if run.d.serveConfig != "deploy/corsauthz.yaml" {
		t.Errorf("docs/nginx.md serves %s, want deploy/corsauthz.yaml (the policies conf.d/corsauthz.conf names)", run.d.serveConfig)
	}

	for _, tt := range []struct {
		desc         string
		method, path string
		headers      []string
		status       int
		want         map[string]string
		body         string // when not empty
		reachesAPI   bool
	}{
		{
			desc: "allowed preflight", method: "OPTIONS", path: "/v1/orders",
			headers: []string{"Origin: " + app, "Access-Control-Request-Method: PUT", "Access-Control-Request-Headers: content-type"},
			status:  204, want: map[string]string{
				"Access-Control-Allow-Origin": app, "Access-Control-Allow-Credentials": "true",
				"Access-Control-Allow-Methods": "PUT", "Access-Control-Allow-Headers": "content-type", "Access-Control-Max-Age": "600",
				"Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
			},
		},
		{
			desc: "rejected preflight", method: "OPTIONS", path: "/v1/orders",
			headers: []string{"Origin: https://evil.example.net", "Access-Control-Request-Method: PUT"},
			status:  403, want: map[string]string{"Access-Control-Allow-Origin": "", "Access-Control-Allow-Methods": ""},
		},
		{
			desc: "allowed actual request", method: "POST", path: "/v1/orders?x=1", headers: []string{"Origin: " + app},
			status: 200, reachesAPI: true, body: "api POST /v1/orders?x=1 policy-header=",
			want: map[string]string{
				"Access-Control-Allow-Origin": app, "Access-Control-Allow-Credentials": "true",
				"Access-Control-Expose-Headers": "X-Request-Id", "Access-Control-Allow-Methods": "",
				"Vary": "Accept-Encoding | Origin",
			},
		},
		{
			desc: "disallowed origin: the API's * dropped", method: "GET", path: "/v1/orders", headers: []string{"Origin: https://evil.example.net"},
			status: 200, reachesAPI: true, want: map[string]string{"Access-Control-Allow-Origin": "", "Vary": "Accept-Encoding | Origin"},
		},
		{
			desc: "/public/ under the policy named by the location", method: "GET", path: "/public/prices", headers: []string{"Origin: https://anyone.example.org"},
			status: 200, reachesAPI: true, want: map[string]string{"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Credentials": ""},
		},
		{
			desc: "/public/ preflight under the policy named by the location", method: "OPTIONS", path: "/public/prices",
			headers: []string{"Origin: https://anyone.example.org", "Access-Control-Request-Method: GET"},
			status:  204, want: map[string]string{"Access-Control-Allow-Origin": "*", "Access-Control-Max-Age": "7200"},
		},
		{
			desc: "a client's own X-Corsauthz-Policy, X-Original-* and X-Forwarded-* are not trusted", method: "GET", path: "/v1/orders",
			headers: []string{"Origin: https://evil.example.net", "X-Corsauthz-Policy: public", "X-Original-URI: /public/x", "X-Forwarded-Host: other.example.com", "X-Forwarded-Uri: /public/x"},
			status:  200, reachesAPI: true, want: map[string]string{"Access-Control-Allow-Origin": "", "Vary": "Accept-Encoding | Origin"},
		},
		{
			desc: "no Origin: corsauthz's Vary appended, the API's * dropped", method: "GET", path: "/v1/orders",
			status: 200, reachesAPI: true, want: map[string]string{"Access-Control-Allow-Origin": "", "Vary": "Accept-Encoding | Origin"},
		},
		{
			desc: "no Origin under a * policy: ACAO *, no Vary of corsauthz's", method: "GET", path: "/public/prices",
			status: 200, reachesAPI: true, want: map[string]string{"Access-Control-Allow-Origin": "*", "Vary": "Accept-Encoding"},
		},
		{
			// NGINX does not send a header set to an empty value: an empty
			// Origin reaches corsauthz as none.
			desc: "empty Origin, preflight: decided as without Origin", method: "OPTIONS", path: "/v1/orders",
			headers: []string{"Origin: ", "Access-Control-Request-Method: PUT"},
			status:  200, want: map[string]string{"Access-Control-Allow-Origin": "", "Vary": "Origin"},
		},
	} {
		before := run.api.count()
		resp, body := run.do(t, tt.method, tt.path, "", tt.headers...)
		if resp.StatusCode != tt.status {
			t.Errorf("%s: status %d, want %d", tt.desc, resp.StatusCode, tt.status)
		}
		wantHeaders(t, tt.desc, resp.Header, tt.want)
		if tt.body != "" && body != tt.body {
			t.Errorf("%s: body %q, want %q", tt.desc, body, tt.body)
		}
		if n := len(run.api.since(before)); (n == 1) != tt.reachesAPI || n > 1 {
			t.Errorf("%s: the API saw %d requests, want reached=%t", tt.desc, n, tt.reachesAPI)
		}
	}

	t.Run("the page's curl command", func(t *testing.T) {
		if _, err := exec.LookPath("curl"); err != nil {
			if os.Getenv(nginxproc.Env) == "require" {
				t.Fatalf("no curl (apt-get install curl); %s=require makes this a failure", nginxproc.Env)
			}
			t.Skipf("no curl (apt-get install curl); set %s=require to make this a failure", nginxproc.Env)
		}
		cmds := docCommands(docBlock(t, "nginx-try"))
		if len(cmds) != 1 {
			t.Fatalf("docs/nginx.md: the curl block has %d commands, want 1", len(cmds))
		}
		_, port, _ := net.SplitHostPort(run.listen)
		cmd := cmds[0]
		for _, r := range []struct{ old, new string }{
			{"/etc/nginx/tls/api.example.com.crt", run.cert},
			{"api.example.com:443:127.0.0.1", "api.example.com:" + port + ":127.0.0.1"},
			{"https://api.example.com/", "https://api.example.com:" + port + "/"},
		} {
			if n := strings.Count(cmd, r.old); n != 1 {
				t.Fatalf("docs/nginx.md: the curl command has %q %d times, want once", r.old, n)
			}
			cmd = strings.Replace(cmd, r.old, r.new, 1)
		}
		out, err := exec.CommandContext(t.Context(), "bash", "-c", cmd).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, out)
		}
		if want := docOutput(t, "nginx-try"); string(out) != want {
			t.Errorf("the page's curl command printed %q, the page shows %q", out, want)
		}
	})

	// corsauthz down: nothing passes.
	if err := run.stopCorsauthz(); err != nil {
		t.Errorf("corsauthz Serve: %v", err)
	}
	before := run.api.count()
	resp, _ := run.do(t, "GET", "/v1/orders", "", "Origin: "+app)
	if resp.StatusCode != 500 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("corsauthz down, actual request: %d ACAO %q, want 500 without", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	resp, _ = run.do(t, "OPTIONS", "/v1/orders", "", "Origin: "+app, "Access-Control-Request-Method: PUT")
	if resp.StatusCode != 502 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("corsauthz down, preflight: %d ACAO %q, want 502 without", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	if n := len(run.api.since(before)); n != 0 {
		t.Errorf("with corsauthz down the API saw %d requests, want none", n)
	}
}

// docOutput returns the second code block after a docs/nginx.md marker:
// what the first one prints.
func docOutput(t *testing.T, name string) string {
	t.Helper()
	doc := string(readFile(t, nginxDoc))
	_, after, _ := strings.Cut(doc, "<!-- test: "+name+" -->")
	blocks := strings.SplitN(after, "```", 5)
	if len(blocks) < 5 {
		t.Fatalf("docs/nginx.md: no output block after %s", name)
	}
	_, out, _ := strings.Cut(blocks[3], "\n")
	return out
}

// oauth2ProxyStandIn answers as oauth2-proxy's /oauth2/auth does
// (--set-xauthrequest): 202 with X-Auth-Request-* for a session, 401
// otherwise; the session is named by its cookie, or a bearer token. Some
// sessions make it misbehave, as the rows say. /oauth2/sign_in is its
// sign-in page.
func oauth2ProxyStandIn() http.Handler {
	var flips sync.Map
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/oauth2/sign_in" {
			io.WriteString(w, "sign in here\n")
			return
		}
		session := ""
		if c, err := r.Cookie("_oauth2_proxy"); err == nil {
			session = c.Value
		}
		if r.Header.Get("Authorization") == "Bearer alice-token" {
			session = "alice"
		}
		h := w.Header()
		switch session {
		case "alice":
			h.Set("X-Auth-Request-User", "alice")
			h.Set("X-Auth-Request-Email", "alice@example.com")
			h.Set("X-Auth-Request-Groups", "admins")
			w.WriteHeader(http.StatusAccepted)
			return
		case "bob":
			h.Set("X-Auth-Request-Email", "bob@example.com") // and no user
			w.WriteHeader(http.StatusAccepted)
			return
		case "forbidden":
			http.Error(w, "Forbidden", http.StatusForbidden)
			return
		case "accel":
			h.Set("X-Accel-Redirect", "/public/granted")
		case "flip": // denies, then allows
			if _, asked := flips.LoadOrStore(r.Header.Get("X-Forwarded-Uri"), true); asked {
				h.Set("X-Auth-Request-User", "flip")
				w.WriteHeader(http.StatusAccepted)
				return
			}
		}
		h.Set("WWW-Authenticate", `Bearer realm="api"`)
		h.Add("Set-Cookie", "_oauth2_proxy=; Path=/; Max-Age=0")
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
	})
}

// runAuthorizerRecipe runs the oauth2-proxy recipe with authz standing
// in for oauth2-proxy, both where corsauthz asks it and for its pages.
func runAuthorizerRecipe(t *testing.T, authz *httptest.Server, edit func(d *debian)) *nginxRun {
	t.Helper()
	addr := authz.Listener.Addr().String()
	return runRecipe(t, nginxRecipes[1],
		func(cfg string) string {
			const url = "url: http://127.0.0.1:4180/oauth2/auth"
			if n := strings.Count(cfg, url); n != 1 {
				t.Fatalf("%s: %q appears %d times, want once", nginxOAuth2Config, url, n)
			}
			return strings.Replace(cfg, url, "url: http://"+addr+"/oauth2/auth", 1)
		},
		map[string]string{"server 127.0.0.1:4180;": "server " + addr + ";"},
		edit)
}

// TestNginxAuthorizerServes runs the oauth2-proxy recipe of docs/nginx.md
// as written, with an auth service written for the test in oauth2-proxy's
// place: what the page, the API and the auth service see for each kind of
// request.
func TestNginxAuthorizerServes(t *testing.T) {
	t.Parallel()
	authz := &recorder{next: oauth2ProxyStandIn()}
	authzServer := httptest.NewServer(authz)
	t.Cleanup(authzServer.Close)
	run := runAuthorizerRecipe(t, authzServer, nil)

	const unauthorized = "Unauthorized\n"
	denied := map[string]string{
		"Access-Control-Allow-Origin": app, "Access-Control-Allow-Credentials": "true", "Vary": "Origin",
		"WWW-Authenticate": `Bearer realm="api"`, "Set-Cookie": "_oauth2_proxy=; Path=/; Max-Age=0",
		"Content-Type": "text/plain; charset=utf-8", "X-Auth-Request-User": "",
	}
	for _, tt := range []struct {
		desc         string
		method, path string
		body         string
		headers      []string
		status       int
		want         map[string]string
		wantBody     string // "-" for any
		// The API: not reached (""), or the line it echoes.
		api string
		// What the API got of the X-Auth-Request-* headers, when reached.
		user, email, groups string
		// The auth service: how many checks, and the URI each described.
		checks int
		uri    string
	}{
		{
			desc:   "preflight: corsauthz alone answers; the auth service and the API are not asked",
			method: "OPTIONS", path: "/v1/me", headers: []string{"Origin: " + app, "Access-Control-Request-Method: PUT", "Cookie: _oauth2_proxy=alice"},
			status: 204, want: map[string]string{"Access-Control-Allow-Origin": app, "Access-Control-Allow-Methods": "PUT"}, wantBody: "",
		},
		{
			desc:   "no session: the auth service's 401, its body and headers reach the page with the CORS headers, one WWW-Authenticate; asked twice",
			method: "GET", path: "/v1/me", headers: []string{"Origin: " + app},
			status: 401, want: denied, wantBody: unauthorized, checks: 2, uri: "/v1/me",
		},
		{
			desc:   "no session, a client's own X-Auth-Request-User: still 401, the API not reached",
			method: "GET", path: "/v1/me", headers: []string{"Origin: " + app, "X-Auth-Request-User: admin"},
			status: 401, want: denied, wantBody: unauthorized, checks: 2, uri: "/v1/me",
		},
		{
			desc:   "session cookie: the API gets the auth service's X-Auth-Request-*, never the client's own",
			method: "GET", path: "/v1/me?x=1", headers: []string{"Origin: " + app, "Cookie: _oauth2_proxy=alice", "X-Auth-Request-User: admin", "X-Auth-Request-Groups: root", "X-Auth-Request-Preferred-Username: root"},
			status: 200, want: map[string]string{"Access-Control-Allow-Origin": app, "Access-Control-Allow-Credentials": "true", "Vary": "Accept-Encoding | Origin", "X-Auth-Request-User": ""},
			wantBody: "-", api: "GET /v1/me?x=1", user: "alice", email: "alice@example.com", groups: "admins", checks: 1, uri: "/v1/me?x=1",
		},
		{
			desc:   "a session whose answer names no user: the client's X-Auth-Request-User is not sent",
			method: "DELETE", path: "/v1/orders/7", headers: []string{"Origin: " + app, "Cookie: _oauth2_proxy=bob", "X-Auth-Request-User: admin"},
			status: 200, want: map[string]string{"Access-Control-Allow-Origin": app},
			wantBody: "-", api: "DELETE /v1/orders/7", email: "bob@example.com", checks: 1, uri: "/v1/orders/7",
		},
		{
			desc:   "a bearer token: Authorization reaches the auth service",
			method: "GET", path: "/v1/me", headers: []string{"Origin: " + app, "Authorization: Bearer alice-token"},
			status: 200, want: map[string]string{"Access-Control-Allow-Origin": app},
			wantBody: "-", api: "GET /v1/me", user: "alice", email: "alice@example.com", groups: "admins", checks: 1, uri: "/v1/me",
		},
		{
			desc:   "no Origin: asked all the same; the denial gets Vary: Origin and no ACAO",
			method: "GET", path: "/v1/me",
			status: 401, want: map[string]string{"Access-Control-Allow-Origin": "", "Vary": "Origin"}, wantBody: unauthorized, checks: 2, uri: "/v1/me",
		},
		{
			desc:   "an origin the policy does not list: asked all the same (no reject_disallowed_origins); no ACAO",
			method: "GET", path: "/v1/me", headers: []string{"Origin: https://evil.example.net", "Cookie: _oauth2_proxy=alice"},
			status: 200, want: map[string]string{"Access-Control-Allow-Origin": "", "Vary": "Accept-Encoding | Origin"},
			wantBody: "-", api: "GET /v1/me", user: "alice", email: "alice@example.com", groups: "admins", checks: 1, uri: "/v1/me",
		},
		{
			desc:   "a client's own X-Forwarded-Uri, X-Original-URI and X-Corsauthz-Policy reach neither corsauthz nor the auth service",
			method: "GET", path: "/v1/me", headers: []string{"Origin: " + app, "X-Forwarded-Uri: /oauth2/sign_in", "X-Original-URI: /public/x", "X-Corsauthz-Policy: nope", "X-Forwarded-Method: OPTIONS"},
			status: 401, want: denied, wantBody: unauthorized, checks: 2, uri: "/v1/me",
		},
		{
			desc:   "the auth service's 403 and its body reach the page with the CORS headers",
			method: "GET", path: "/v1/admin", headers: []string{"Origin: " + app, "Cookie: _oauth2_proxy=forbidden"},
			status: 403, want: map[string]string{"Access-Control-Allow-Origin": app, "Access-Control-Allow-Credentials": "true"}, wantBody: "Forbidden\n", checks: 2, uri: "/v1/admin",
		},
		{
			desc:   "a POST with a body, no session: 401 with the body of the denial; the API not reached",
			method: "POST", path: "/v1/admin/delete", body: `{"id":7}`, headers: []string{"Origin: " + app, "Content-Type: application/json"},
			status: 401, want: denied, wantBody: unauthorized, checks: 2, uri: "/v1/admin/delete",
		},
		{
			desc:   "a denial carrying X-Accel-Redirect: the request stays denied and the API is not reached",
			method: "POST", path: "/v1/admin/delete", body: `{"id":7}`, headers: []string{"Origin: " + app, "Cookie: _oauth2_proxy=accel"},
			status: 401, want: denied, wantBody: unauthorized, checks: 2, uri: "/v1/admin/delete",
		},
		{
			desc:   "an auth service that allows when asked again: an empty 200, none of its headers for the upstream, the API not reached",
			method: "GET", path: "/v1/flip", headers: []string{"Origin: " + app, "Cookie: _oauth2_proxy=flip"},
			status: 200, want: map[string]string{"Access-Control-Allow-Origin": app, "X-Auth-Request-User": ""}, wantBody: "", checks: 2, uri: "/v1/flip",
		},
		{
			desc:   "oauth2-proxy's own pages: proxied to it, not behind corsauthz",
			method: "GET", path: "/oauth2/sign_in", headers: []string{"Origin: " + app},
			status: 200, want: map[string]string{"Access-Control-Allow-Origin": ""}, wantBody: "sign in here\n", checks: 1, uri: "",
		},
	} {
		apiBefore, authzBefore := run.api.count(), authz.count()
		resp, body := run.do(t, tt.method, tt.path, tt.body, tt.headers...)
		if resp.StatusCode != tt.status {
			t.Errorf("%s: status %d, want %d", tt.desc, resp.StatusCode, tt.status)
		}
		wantHeaders(t, tt.desc, resp.Header, tt.want)
		apiSaw := run.api.since(apiBefore)
		switch {
		case tt.api == "" && len(apiSaw) != 0:
			t.Errorf("%s: the API saw %d requests (first %s %s), want none", tt.desc, len(apiSaw), apiSaw[0].Method, apiSaw[0].URL)
		case tt.api != "" && len(apiSaw) != 1:
			t.Errorf("%s: the API saw %d requests, want 1", tt.desc, len(apiSaw))
		case tt.api != "":
			got := apiSaw[0]
			if line := got.Method + " " + got.URL.RequestURI(); line != tt.api {
				t.Errorf("%s: the API saw %s, want %s", tt.desc, line, tt.api)
			}
			for name, want := range map[string]string{
				"X-Auth-Request-User": tt.user, "X-Auth-Request-Email": tt.email, "X-Auth-Request-Groups": tt.groups,
				"X-Auth-Request-Preferred-Username": "",
			} {
				if v := strings.Join(got.Header.Values(name), " | "); v != want {
					t.Errorf("%s: the API got %s %q, want %q", tt.desc, name, v, want)
				}
			}
		}
		if tt.wantBody != "-" && body != tt.wantBody {
			t.Errorf("%s: body %q, want %q", tt.desc, body, tt.wantBody)
		}
		checks := authz.since(authzBefore)
		if len(checks) != tt.checks {
			t.Errorf("%s: the auth service was asked %d times, want %d", tt.desc, len(checks), tt.checks)
		}
		for _, c := range checks {
			if tt.uri == "" {
				continue
			}
			if c.URL.Path != "/oauth2/auth" || c.Header.Get("X-Forwarded-Uri") != tt.uri || c.Header.Get("X-Forwarded-Method") != tt.method ||
				c.Header.Get("X-Forwarded-Host") != "api.example.com" || c.Header.Get("X-Forwarded-Proto") != "https" {
				t.Errorf("%s: the auth service was asked %s with X-Forwarded-Method %q -Uri %q -Host %q -Proto %q, want %s %s for api.example.com over https",
					tt.desc, c.URL.Path, c.Header.Get("X-Forwarded-Method"), c.Header.Get("X-Forwarded-Uri"),
					c.Header.Get("X-Forwarded-Host"), c.Header.Get("X-Forwarded-Proto"), tt.method, tt.uri)
			}
			for _, h := range tt.headers {
				name, value, _ := strings.Cut(h, ": ")
				if (name == "Cookie" || name == "Authorization") && c.Header.Get(name) != value {
					t.Errorf("%s: the auth service got %s %q, want %q", tt.desc, name, c.Header.Get(name), value)
				}
			}
		}
	}

	// The auth service down: corsauthz's 503 reaches the page, readable.
	authzServer.Close()
	apiBefore := run.api.count()
	resp, _ := run.do(t, "GET", "/v1/me", "", "Origin: "+app, "Cookie: _oauth2_proxy=alice")
	if resp.StatusCode != 503 || resp.Header.Get("Access-Control-Allow-Origin") != app {
		t.Errorf("auth service down: %d with ACAO %q, want 503 with %s", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"), app)
	}
	if n := len(run.api.since(apiBefore)); n != 0 {
		t.Errorf("auth service down: the API saw %d requests", n)
	}

	// corsauthz down: NGINX's own 502, and nothing passes.
	if err := run.stopCorsauthz(); err != nil {
		t.Errorf("corsauthz Serve: %v", err)
	}
	resp, _ = run.do(t, "GET", "/v1/me", "", "Origin: "+app, "Cookie: _oauth2_proxy=alice")
	if resp.StatusCode != 502 {
		t.Errorf("corsauthz down: %d, want 502", resp.StatusCode)
	}
	resp, _ = run.do(t, "OPTIONS", "/v1/me", "", "Origin: "+app, "Access-Control-Request-Method: PUT")
	if resp.StatusCode != 502 {
		t.Errorf("corsauthz down, preflight: %d, want 502", resp.StatusCode)
	}
	if n := len(run.api.since(apiBefore)); n != 0 {
		t.Errorf("corsauthz down: the API saw %d requests", n)
	}
}

// TestNginxAuthorizerDenialCannotRedirect is the attack of an auth
// service's denial carrying X-Accel-Redirect through real NGINX: NGINX
// honours that header in a proxied answer, so the auth subrequest would be
// served by another location (which, being a subrequest, skips
// auth_request) and come back 200, and a POST no one allowed would reach
// the API. Both layers must stop it on their own: the shipped snippet
// (proxy_ignore_headers), and corsauthz's listener, which must not relay
// X-Accel-* from an authorizer; the second row removes the first layer.
func TestNginxAuthorizerDenialCannotRedirect(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		desc  string
		strip bool
	}{
		{desc: "the shipped snippets"},
		{desc: "the snippets without proxy_ignore_headers: corsauthz's listener alone", strip: true},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			authz := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Accel-Redirect", "/public/granted")
				w.Header().Set("X-Accel-Buffering", "no")
				http.Error(w, "Unauthorized", http.StatusUnauthorized)
			}))
			t.Cleanup(authz.Close)
			run := runAuthorizerRecipe(t, authz, func(d *debian) {
				if !tt.strip {
					return
				}
				path := filepath.Join(d.etc, "snippets", "corsauthz-check.conf")
				conf := d.installed(t, "snippets/corsauthz-check.conf")
				re := "\nproxy_ignore_headers X-Accel-Redirect"
				if strings.Count(conf, re) != 1 {
					t.Fatalf("corsauthz-check.conf: no single proxy_ignore_headers line to remove")
				}
				conf = strings.Replace(conf, re, "\n#proxy_ignore_headers X-Accel-Redirect", 1)
				if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
					t.Fatal(err)
				}
			})
			for _, method := range []string{"POST", "GET"} {
				resp, body := run.do(t, method, "/v1/admin/delete", "", "Origin: "+app)
				if resp.StatusCode != 401 || !bytes.Equal([]byte(body), []byte("Unauthorized\n")) {
					t.Errorf("%s: %d %q, want the denial: 401 \"Unauthorized\\n\"", method, resp.StatusCode, body)
				}
			}
			for _, r := range run.api.since(0) {
				t.Errorf("the API saw %s %s from a denied request", r.Method, r.URL)
			}
		})
	}
}

func tail(s string) string {
	const n = 4 << 10
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// statusDenier is a gRPC authorizer that denies every request with the
// HTTP status its path names (/status/NNN), a body and a header.
type statusDenier struct {
	authv3.UnimplementedAuthorizationServer
}

func (statusDenier) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	code, _ := strconv.Atoi(strings.TrimPrefix(req.GetAttributes().GetRequest().GetHttp().GetPath(), "/status/"))
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(code)},
			Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-denied", Value: "yes"}}},
			Body:    "denied\n",
		}},
	}, nil
}

// TestNginxAuthorizerDenialStaysDenied: through real NGINX with the
// shipped authorizer snippets, a gRPC authorizer's denial whatever status
// it carries. NGINX's auth_request lets any 2xx through, so a denial
// rendered as 200 or 204 would reach the API; a denial is rendered with
// its own status only from 400 to 599, and as 403 otherwise.
func TestNginxAuthorizerDenialStaysDenied(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, statusDenier{})
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	run := runRecipe(t, nginxRecipes[1], func(string) string {
		return `
authorizers:
  - name: denier
    grpc:
      address: ` + lis.Addr().String() + `
      timeout: 1s
policies:
  - name: api
    authorizer: denier
    match:
      hosts: [api.example.com]
    allowed_origins: [https://app.example.com]
    allow_credentials: true
`
	}, map[string]string{"server 127.0.0.1:4180;": "server 127.0.0.1:9;"}, nil)

	for _, tt := range []struct {
		desc   string
		status int // the denial's
		want   int // what the page gets
	}{
		{desc: "401: as it is", status: 401, want: 401},
		{desc: "451: as it is", status: 451, want: 451},
		{desc: "599: as it is", status: 599, want: 599},
		{desc: "200: an allow for NGINX, so 403", status: 200, want: 403},
		{desc: "204: an allow for NGINX, so 403", status: 204, want: 403},
		{desc: "302: 403", status: 302, want: 403},
		{desc: "100: 403", status: 100, want: 403},
		{desc: "99, no status at all: 403", status: 99, want: 403},
		{desc: "1000, no status at all: 403", status: 1000, want: 403},
	} {
		for _, method := range []string{"GET", "POST"} {
			before := run.api.count()
			path := "/status/" + strconv.Itoa(tt.status)
			resp, _, err := run.try(method, path, "", "Origin: "+app)
			switch {
			case err != nil:
				t.Errorf("%s, %s: no answer: %v", tt.desc, method, err)
			case resp.StatusCode != tt.want:
				t.Errorf("%s, %s: status %d, want %d", tt.desc, method, resp.StatusCode, tt.want)
			case resp.Header.Get("Access-Control-Allow-Origin") != app:
				t.Errorf("%s, %s: Access-Control-Allow-Origin %q, want %s", tt.desc, method, resp.Header.Get("Access-Control-Allow-Origin"), app)
			}
			for _, r := range run.api.since(before) {
				t.Errorf("%s, %s: the API saw %s %s from a denied request", tt.desc, method, r.Method, r.URL)
			}
		}
	}
}

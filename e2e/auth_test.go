package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/oauth2-proxy/mockoidc"
	"github.com/prometheus/client_golang/prometheus"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/corsauthz/corsauthz/internal/childproc"
	"github.com/corsauthz/corsauthz/internal/freeport"
	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/server"
)

// authEnv makes a missing oauth2-proxy a failure instead of a skip: CI
// builds it and sets CORSAUTHZ_E2E_AUTH=require.
const authEnv = "CORSAUTHZ_E2E_AUTH"

// oauth2ProxyEnv names the oauth2-proxy binary to run, when it is not
// where .ci/run installs it (the user cache directory's
// corsauthz/bin/oauth2-proxy) nor on PATH.
const oauth2ProxyEnv = "CORSAUTHZ_OAUTH2_PROXY"

// findOAuth2Proxy returns the oauth2-proxy binary, or skips the test (or
// fails it, with CORSAUTHZ_E2E_AUTH=require).
func findOAuth2Proxy(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv(oauth2ProxyEnv)}
	if dir, err := os.UserCacheDir(); err == nil {
		candidates = append(candidates, filepath.Join(dir, "corsauthz", "bin", "oauth2-proxy"))
	}
	if p, err := exec.LookPath("oauth2-proxy"); err == nil {
		candidates = append(candidates, p)
	}
	for _, c := range candidates {
		if fi, err := os.Stat(c); c != "" && err == nil && fi.Mode().IsRegular() {
			return c
		}
	}
	msg := "no oauth2-proxy binary: build it with " +
		"GOBIN=\"$HOME/.cache/corsauthz/bin\" go install github.com/oauth2-proxy/oauth2-proxy/v7@v7.15.6 (or set " + oauth2ProxyEnv + ")"
	if os.Getenv(authEnv) == "require" {
		t.Fatalf("%s (%s=require makes this a failure instead of a skip)", msg, authEnv)
	}
	t.Skipf("%s; set %s=require to make this a failure", msg, authEnv)
	return ""
}

// oauth2Proxy is a running oauth2-proxy process.
type oauth2Proxy struct {
	addr string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func (p *oauth2Proxy) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

// authChecks counts the requests to /oauth2/auth in its request log.
func (p *oauth2Proxy) authChecks() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Count(p.out.String(), ` "/oauth2/auth" `)
}

func (p *oauth2Proxy) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// stop ends the process (ours, by its PID) and waits for it.
func (p *oauth2Proxy) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// oauth2ProxyArgs is oauth2-proxy's command line: listening on addr,
// signing in against cfg's issuer for the site at publicURL.
// oauth2ProxyTestOnly are its flags a real setup leaves out.
func oauth2ProxyArgs(addr string, cfg *mockoidc.Config, publicURL string) []string {
	return []string{
		"--http-address=" + addr,
		"--provider=oidc",
		"--oidc-issuer-url=" + cfg.Issuer,
		"--client-id=" + cfg.ClientID,
		"--client-secret=" + cfg.ClientSecret,
		"--redirect-url=" + publicURL + "/oauth2/callback",
		"--cookie-secret=0123456789abcdef0123456789abcdef",
		"--cookie-secure=false",
		"--email-domain=*",
		"--upstream=static://202",
		"--set-xauthrequest",
		"--reverse-proxy",
		"--trusted-proxy-ip=127.0.0.1/32",
		"--skip-provider-button",
	}
}

// oauth2ProxyTestOnly are the flags of oauth2ProxyArgs that only a test
// wants: plain-HTTP cookies, no sign-in button to click.
var oauth2ProxyTestOnly = []string{"--cookie-secure", "--skip-provider-button"}

// startOAuth2Proxy runs oauth2-proxy as the README's Istio section sets it
// up behind corsauthz: OIDC against issuer, X-Auth-Request-* headers on
// /oauth2/auth's 202, X-Forwarded-* trusted from loopback only.
func startOAuth2Proxy(t *testing.T, bin string, m *mockoidc.MockOIDC, publicURL string) *oauth2Proxy {
	t.Helper()
	p := &oauth2Proxy{addr: freeport.Addr(t), done: make(chan struct{})}
	p.cmd = exec.Command(bin, oauth2ProxyArgs(p.addr, m.Config(), publicURL)...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := childproc.Start(t, p.cmd); err != nil {
		t.Fatalf("start oauth2-proxy: %v", err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(p.stop)
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + p.addr + "/ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-p.done:
			t.Fatalf("oauth2-proxy exited:\n%s", p.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("oauth2-proxy not ready on %s after 15s:\n%s", p.addr, p.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tokenAuthz is a gRPC authorizer written for the test: it allows a request
// carrying x-token: ok, telling the gateway to set x-user, remove
// x-token, set the query parameter sub, add a response header and
// dynamic metadata; anything else it denies with a 401 and a body.
type tokenAuthz struct {
	authv3.UnimplementedAuthorizationServer
}

func (tokenAuthz) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	if req.GetAttributes().GetRequest().GetHttp().GetHeaders()["x-token"] != "ok" {
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.Unauthenticated)},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status: &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
				Headers: []*corev3.HeaderValueOption{
					{Header: &corev3.HeaderValue{Key: "content-type", Value: "application/json"}},
					{Header: &corev3.HeaderValue{Key: "access-control-allow-origin", Value: "*"}},
				},
				Body: `{"error":"token required"}`,
			}},
		}, nil
	}
	meta, _ := structpb.NewStruct(map[string]any{"sub": "alice"})
	overwrite := corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers:              []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-user", Value: "alice"}, AppendAction: overwrite}},
			HeadersToRemove:      []string{"x-token"},
			QueryParametersToSet: []*corev3.QueryParameter{{Key: "sub", Value: "alice"}},
			ResponseHeadersToAdd: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-checked", Value: "by-tokens"}, AppendAction: overwrite}},
		}},
		DynamicMetadata: meta,
	}, nil
}

// authConfig is corsauthz's configuration for the suite.
const authConfig = `
authorizers:
  - name: oauth2-proxy
    http:
      url: http://%[2]s/oauth2/auth
      forward_path: false
      headers: [cookie]
      upstream_headers: [x-auth-request-user, x-auth-request-email]
      timeout: 1s
  - name: tokens
    grpc:
      address: %[3]s
      timeout: 1s
policies:
  - name: api
    authorizer: oauth2-proxy
    allowed_origins: ["%[1]s"]
    allowed_headers: [X-Requested-With]
    allow_credentials: true
  - name: tokens
    authorizer: tokens
    allowed_origins: ["%[1]s"]
    allowed_headers: [X-Token]
    exposed_headers: [X-Checked]
`

// serveAuthUpstream is the API: it echoes, as JSON, what the gateway sent
// it of the authorizers' work.
func serveAuthUpstream(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{
		"path":  r.URL.RequestURI(),
		"user":  r.Header.Get("X-Auth-Request-User"),
		"email": r.Header.Get("X-Auth-Request-Email"),
		"xuser": r.Header.Get("X-User"),
		"token": r.Header.Get("X-Token"),
	})
}

// TestOAuth2ProxyBehindCorsauthz: Chromium, the test gateway (Envoy's
// ext_authz filter) calling corsauthz, corsauthz asking a real
// oauth2-proxy, which logs in against a mock OIDC provider.
func TestOAuth2ProxyBehindCorsauthz(t *testing.T) {
	bin := findOAuth2Proxy(t)
	browser := startBrowser(t)

	m, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown() })

	page := httptest.NewServer(http.HandlerFunc(servePage))
	t.Cleanup(page.Close)
	up := httptest.NewServer(http.HandlerFunc(serveAuthUpstream))
	t.Cleanup(up.Close)
	app := "http://app.corsauthz.localhost:" + port(t, page)

	// The gateway's port is needed for oauth2-proxy's redirect URL before
	// the gateway starts.
	gwLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, gwPort, _ := net.SplitHostPort(gwLis.Addr().String())
	api := "http://api.corsauthz.localhost:" + gwPort
	proxy := startOAuth2Proxy(t, bin, m, api)

	glis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, tokenAuthz{})
	go gs.Serve(glis)
	t.Cleanup(gs.Stop)

	engine, _, err := policy.Load("auth.yaml", []byte(fmt.Sprintf(authConfig, app, proxy.addr, glis.Addr())))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(policy.NewHolder(engine), server.Options{
		GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		Logger:   slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
		Registry: prometheus.NewRegistry(), DrainTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	t.Cleanup(func() { stop(); <-served })
	conn, err := grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })

	upURL, _ := url.Parse(up.URL)
	proxyURL, _ := url.Parse("http://" + proxy.addr)
	gw := &gateway{authz: authv3.NewAuthorizationClient(conn), upstream: upURL, routes: []route{
		{prefix: "/oauth2/", upstream: proxyURL, noCheck: true}, // oauth2-proxy's own pages: sign-in, callback
		{prefix: "/api/", extensions: map[string]string{"cors_policy": "api"}},
		{prefix: "/tokens/", extensions: map[string]string{"cors_policy": "tokens"}},
	}}
	gwServer := &http.Server{Handler: gw}
	go gwServer.Serve(gwLis)
	t.Cleanup(func() { gwServer.Close() })

	tb, closeTab, err := openTab(browser, app+"/")
	defer closeTab()
	if err != nil {
		t.Fatal(err)
	}
	apiCall := fetchCall{URL: api + "/api/me", Init: fetchInit{Credentials: "include", Headers: map[string]string{"X-Requested-With": "fetch"}}}
	fetchOne := func(c fetchCall) fetchResult {
		t.Helper()
		res, err := tb.fetch([]fetchCall{c})
		if err != nil {
			t.Fatal(err)
		}
		return res[0]
	}

	// Without a session: the script reads oauth2-proxy's 401, and the
	// preflight before it never reached oauth2-proxy.
	before := proxy.authChecks()
	r := fetchOne(apiCall)
	if r.Error != "" || r.Status != http.StatusUnauthorized {
		t.Fatalf("without a session: %+v, want status 401 and no %s", r, r.Error)
	}
	preflights := 0
	for _, x := range gw.exchanges("/api/me") {
		if x.check.GetAttributes().GetRequest().GetHttp().GetMethod() == http.MethodOptions {
			preflights++
		}
	}
	if preflights != 1 {
		t.Errorf("%d preflights went through the gateway, want 1", preflights)
	}
	waitUntil(t, "oauth2-proxy's log of /oauth2/auth", func() bool { return proxy.authChecks() >= before+1 })
	time.Sleep(200 * time.Millisecond) // a preflight that reached it would be logged by now
	if n := proxy.authChecks() - before; n != 1 {
		t.Errorf("oauth2-proxy got %d requests at /oauth2/auth for one preflight and one GET, want 1 (the preflight must not reach it)", n)
	}

	// The OIDC login, in the browser: oauth2-proxy → mock OIDC provider →
	// callback, which sets the session cookie on the API's host.
	if err := chromedp.Do(tb.ctx, chromedp.Navigate(api+"/oauth2/start?rd="+url.QueryEscape("/oauth2/userinfo"))); err != nil {
		t.Fatalf("login flow: %v", err)
	}
	body, err := chromedp.Run(tb.ctx, chromedp.Text("body"))
	if err != nil {
		t.Fatalf("login flow: %v", err)
	}
	if !strings.Contains(body, mockoidc.DefaultUser().Email) {
		t.Fatalf("after the login flow /oauth2/userinfo says %q, want the user's email\noauth2-proxy:\n%s", body, proxy.log())
	}
	if err := chromedp.Do(tb.ctx, chromedp.Navigate(app+"/")); err != nil {
		t.Fatal(err)
	}

	// With the session: the same fetch gets 200, and the API got
	// oauth2-proxy's X-Auth-Request-* headers.
	r = fetchOne(apiCall)
	if r.Error != "" || r.Status != http.StatusOK {
		t.Fatalf("with a session: %+v, want 200", r)
	}
	var echo map[string]string
	if err := json.Unmarshal([]byte(r.Body), &echo); err != nil {
		t.Fatalf("upstream body %q: %v", r.Body, err)
	}
	if echo["email"] != mockoidc.DefaultUser().Email || echo["user"] == "" {
		t.Errorf("upstream got X-Auth-Request-User %q, -Email %q; want oauth2-proxy's", echo["user"], echo["email"])
	}

	// The gRPC authorizer: a denial with a body the script can read, then
	// an allow whose ok_response the gateway applied.
	r = fetchOne(fetchCall{URL: api + "/tokens/x?a=1", Init: fetchInit{Credentials: "omit"}})
	if r.Error != "" || r.Status != http.StatusUnauthorized || r.Body != `{"error":"token required"}` {
		t.Errorf("gRPC denial: %+v, want 401 with its body", r)
	}
	r = fetchOne(fetchCall{URL: api + "/tokens/x?a=1", Init: fetchInit{Headers: map[string]string{"X-Token": "ok"}}, Read: []string{"X-Checked"}})
	if r.Error != "" || r.Status != http.StatusOK || r.Headers["X-Checked"] != "by-tokens" {
		t.Errorf("gRPC allow: %+v, want 200 with X-Checked readable", r)
	}
	echo = nil
	_ = json.Unmarshal([]byte(r.Body), &echo)
	if echo["xuser"] != "alice" || echo["token"] != "" || !strings.Contains(echo["path"], "sub=alice") {
		t.Errorf("upstream got %v: want x-user alice, no x-token, query sub=alice", echo)
	}
	var meta bool
	for _, x := range gw.exchanges("/tokens/x?a=1") {
		if x.resp.GetDynamicMetadata().GetFields()["sub"].GetStringValue() == "alice" {
			meta = true
		}
	}
	if !meta {
		t.Error("the gRPC authorizer's dynamic metadata did not reach the gateway")
	}

	// oauth2-proxy stopped: the page reads a 503, not a TypeError.
	proxy.stop()
	r = fetchOne(apiCall)
	if r.Error != "" || r.Status != http.StatusServiceUnavailable {
		t.Errorf("oauth2-proxy stopped: %+v, want status 503", r)
	}
}

// waitUntil polls cond for up to 5 seconds.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

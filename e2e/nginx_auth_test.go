package e2e

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/oauth2-proxy/mockoidc"

	"github.com/corsauthz/corsauthz/internal/freeport"
	"github.com/corsauthz/corsauthz/internal/nginxproc"
	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/server"
)

// The oauth2-proxy example of deploy/nginx, run for real:
//
//	Chromium ─▶ NGINX (deploy/nginx/oauth2-proxy/corsauthz.conf) ─▶ API
//	              │ preflights; auth_request and its denials
//	              ▼
//	        corsauthz's HTTP listener (deploy/nginx/oauth2-proxy/corsauthz.yaml)
//	              │ every request but a preflight
//	              ▼
//	        checkTap ─▶ oauth2-proxy ─▶ mockoidc (sign-in)
//
// NGINX also proxies /oauth2/ (the sign-in pages) to oauth2-proxy. The
// shipped files are used as they are but for what a test must change:
// addresses, host names and origins, and plain HTTP instead of TLS.

// checkTap stands between corsauthz and oauth2-proxy and notes the
// request each check describes (its X-Forwarded-Method and -Uri).
type checkTap struct {
	mu     sync.Mutex
	checks []string
	proxy  *httputil.ReverseProxy
}

func newCheckTap(target *url.URL) *checkTap {
	return &checkTap{proxy: &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.Out.Host = pr.In.Host
		// Rewrite drops these; oauth2-proxy (--reverse-proxy) reads them.
		for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
			if v, ok := pr.In.Header[h]; ok {
				pr.Out.Header[h] = v
			}
		}
	}}}
}

func (c *checkTap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	c.checks = append(c.checks, r.Header.Get("X-Forwarded-Method")+" "+r.Header.Get("X-Forwarded-Uri"))
	c.mu.Unlock()
	c.proxy.ServeHTTP(w, r)
}

// since returns the checks after the first n.
func (c *checkTap) since(n int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.checks[n:])
}

func (c *checkTap) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.checks)
}

// replaceOnce replaces each old string of file's content, which must
// appear exactly once.
func replaceOnce(t *testing.T, file, content string, pairs ...string) string {
	t.Helper()
	for i := 0; i+1 < len(pairs); i += 2 {
		if n := strings.Count(content, pairs[i]); n != 1 {
			t.Fatalf("%s: %q appears %d times, want once (update the test)", file, pairs[i], n)
		}
		content = strings.Replace(content, pairs[i], pairs[i+1], 1)
	}
	return content
}

// docOAuth2ProxyFlags returns the flag names of the oauth2-proxy command
// docs/nginx.md shows.
func docOAuth2ProxyFlags(t *testing.T) []string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "docs", "nginx.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(doc), "<!-- test: nginx-oauth2-proxy -->")
	if !ok {
		t.Fatal("docs/nginx.md has no oauth2-proxy command")
	}
	block := regexp.MustCompile("(?s)```sh\n(.*?)```").FindStringSubmatch(after)
	if block == nil {
		t.Fatal("docs/nginx.md: no code block after the oauth2-proxy marker")
	}
	var flags []string
	for _, f := range regexp.MustCompile(`(?m)(--[a-z-]+)`).FindAllString(block[1], -1) {
		flags = append(flags, f)
	}
	slices.Sort(flags)
	return flags
}

// TestOAuth2ProxyBehindNginx: a page on one origin calls an API on
// another through NGINX with the shipped authorizer snippets, corsauthz
// asking a real oauth2-proxy, which signs in against mockoidc. Before
// sign-in the page's script reads the 401 and its body; after it, a 200,
// and the API saw oauth2-proxy's X-Auth-Request-User, never the page's
// own; no preflight reached oauth2-proxy; with oauth2-proxy stopped, the
// script reads a 503.
func TestOAuth2ProxyBehindNginx(t *testing.T) {
	nginxBin := needNginx(t)
	proxyBin := findOAuth2Proxy(t)

	// The command line is the page's, but for the test's own flags.
	var ours []string
	for _, a := range oauth2ProxyArgs("x", &mockoidc.Config{}, "x") {
		if name, _, _ := strings.Cut(a, "="); !slices.Contains(oauth2ProxyTestOnly, name) {
			ours = append(ours, name)
		}
	}
	slices.Sort(ours)
	if doc := docOAuth2ProxyFlags(t); !slices.Equal(doc, ours) {
		t.Errorf("docs/nginx.md runs oauth2-proxy with %v, the test with %v", doc, ours)
	}

	m, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown() })

	page := httptest.NewServer(http.HandlerFunc(servePage))
	t.Cleanup(page.Close)
	app := "http://app.corsauthz.localhost:" + port(t, page)
	var apiCalls atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		apiCalls.Add(1)
		serveAuthUpstream(w, r)
	}))
	t.Cleanup(up.Close)

	listen := freeport.Addr(t)
	_, nginxPort, _ := net.SplitHostPort(listen)
	api := "http://api.corsauthz.localhost:" + nginxPort
	proxy := startOAuth2Proxy(t, proxyBin, m, api)
	proxyURL, _ := url.Parse("http://" + proxy.addr)
	tap := newCheckTap(proxyURL)
	tapServer := httptest.NewServer(tap)
	t.Cleanup(tapServer.Close)

	// corsauthz, with the shipped configuration for the test's names. The
	// policy also lets pages send X-Auth-Request-User (a careless one
	// would): the page below sends its own, which must never arrive.
	const yamlFile = "../deploy/nginx/oauth2-proxy/corsauthz.yaml"
	shipped, err := os.ReadFile(yamlFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := replaceOnce(t, yamlFile, string(shipped),
		"url: http://127.0.0.1:4180/oauth2/auth", "url: "+tapServer.URL+"/oauth2/auth",
		"hosts: [api.example.com]", "hosts: [api.corsauthz.localhost]",
		"allowed_origins: [https://app.example.com]", "allowed_origins: ["+app+"]",
		"allowed_headers: [Content-Type, Authorization]", "allowed_headers: [Content-Type, Authorization, X-Auth-Request-User]",
	)
	engine, _, err := policy.Load(yamlFile, []byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{}
	srv := s.startCorsauthz(t, engine, server.Options{HTTPAddr: "127.0.0.1:0"})

	// NGINX, with the shipped conf.d file and snippets.
	dir, err := nginxproc.NewDir(nginxBin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Remove() })
	if _, err := dir.InstallSnippets(filepath.Join("..", filepath.FromSlash(nginxproc.SnippetsDir))); err != nil {
		t.Fatal(err)
	}
	const confFile = "../deploy/nginx/oauth2-proxy/corsauthz.conf"
	shipped, err = os.ReadFile(confFile)
	if err != nil {
		t.Fatal(err)
	}
	conf := replaceOnce(t, confFile, string(shipped),
		"listen 127.0.0.1:443 ssl;", "listen "+listen+";",
		"    ssl_certificate     /etc/nginx/tls/api.example.com.crt;\n", "",
		"    ssl_certificate_key /etc/nginx/tls/api.example.com.key;\n", "",
		"server_name api.example.com;", "server_name api.corsauthz.localhost;",
		"server 127.0.0.1:9003;", "server "+srv.HTTPAddr().String()+";",
		"server 127.0.0.1:8080;", "server "+up.Listener.Addr().String()+";",
		"server 127.0.0.1:4180;", "server "+proxy.addr+";",
	)
	if _, err := dir.WriteFile("conf.d/corsauthz.conf", conf); err != nil {
		t.Fatal(err)
	}
	main, err := dir.WriteFile("nginx.conf", "worker_processes 1;\n"+dir.MainLines()+
		"events { worker_connections 256; }\nhttp {\n"+dir.HTTPLines()+"msie_padding off;\ninclude conf.d/corsauthz.conf;\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	proc, err := dir.Start(main, listen)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := proc.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			log, _ := os.ReadFile(dir.ErrorLog())
			t.Logf("nginx error log (end):\n%s\noauth2-proxy:\n%s", lastBytes(log, 4<<10), lastBytes([]byte(proxy.log()), 4<<10))
		}
	})
	// Started after NGINX so that it stops first: NGINX's graceful stop
	// waits for the browser's open connections.
	browser := startBrowser(t)
	preflights := func() int {
		log, _ := os.ReadFile(filepath.Join(dir.Path, "access.log"))
		return bytes.Count(log, []byte(`"OPTIONS /v1/me `))
	}

	tb, closeTab, err := openTab(browser, app+"/")
	defer closeTab()
	if err != nil {
		t.Fatal(err)
	}
	fetchOne := func(c fetchCall) fetchResult {
		t.Helper()
		res, err := tb.fetch([]fetchCall{c})
		if err != nil {
			t.Fatal(err)
		}
		return res[0]
	}
	// The page's call: with its cookies, and its own X-Auth-Request-User,
	// which also makes the browser send a preflight first.
	apiCall := fetchCall{
		URL:  api + "/v1/me",
		Init: fetchInit{Credentials: "include", Headers: map[string]string{"X-Auth-Request-User": "admin"}},
		Read: []string{"Content-Type"},
	}

	// Without a session: the script reads oauth2-proxy's 401 and its body;
	// the preflight went through NGINX but not to oauth2-proxy, and the API
	// was not asked.
	checksBefore := tap.count()
	r := fetchOne(apiCall)
	if r.Error != "" || r.Status != http.StatusUnauthorized || !strings.Contains(r.Body, "Unauthorized") {
		t.Fatalf("without a session: %+v, want status 401 with oauth2-proxy's body, readable", r)
	}
	if n := preflights(); n != 1 {
		t.Errorf("%d preflights went through NGINX, want 1", n)
	}
	if got, want := tap.since(checksBefore), []string{"GET /v1/me", "GET /v1/me"}; !slices.Equal(got, want) {
		t.Errorf("oauth2-proxy was asked about %q, want %q (the denial is asked twice; the preflight never)", got, want)
	}
	if n := apiCalls.Load(); n != 0 {
		t.Errorf("the API saw %d requests without a session", n)
	}

	// The OIDC sign-in, in the browser, through NGINX's /oauth2/ location:
	// oauth2-proxy → mockoidc → callback, which sets the session cookie on
	// the API's host.
	if err := chromedp.Do(tb.ctx, chromedp.Navigate(api+"/oauth2/start?rd="+url.QueryEscape("/oauth2/userinfo"))); err != nil {
		t.Fatalf("sign-in: %v", err)
	}
	body, err := chromedp.Run(tb.ctx, chromedp.Text("body"))
	if err != nil {
		t.Fatalf("sign-in: %v", err)
	}
	if !strings.Contains(body, mockoidc.DefaultUser().Email) {
		t.Fatalf("after signing in /oauth2/userinfo says %q, want the user's email\noauth2-proxy:\n%s", body, proxy.log())
	}
	if err := chromedp.Do(tb.ctx, chromedp.Navigate(app+"/")); err != nil {
		t.Fatal(err)
	}

	// With the session: 200, and the API got oauth2-proxy's headers, not
	// the page's X-Auth-Request-User: admin.
	checksBefore = tap.count()
	r = fetchOne(apiCall)
	if r.Error != "" || r.Status != http.StatusOK {
		t.Fatalf("with a session: %+v, want 200", r)
	}
	var echo map[string]string
	if err := json.Unmarshal([]byte(r.Body), &echo); err != nil {
		t.Fatalf("the API's body %q: %v", r.Body, err)
	}
	if echo["email"] != mockoidc.DefaultUser().Email || echo["user"] == "" || echo["user"] == "admin" {
		t.Errorf("the API got X-Auth-Request-User %q, -Email %q; want oauth2-proxy's", echo["user"], echo["email"])
	}
	if got, want := tap.since(checksBefore), []string{"GET /v1/me"}; !slices.Equal(got, want) {
		t.Errorf("oauth2-proxy was asked about %q, want %q", got, want)
	}

	// oauth2-proxy stopped (and the tap in front of it, which would answer
	// 502 itself): the script reads corsauthz's 503.
	proxy.stop()
	tapServer.Close()
	calls := apiCalls.Load()
	r = fetchOne(apiCall)
	if r.Error != "" || r.Status != http.StatusServiceUnavailable {
		t.Errorf("oauth2-proxy stopped: %+v, want status 503, readable", r)
	}
	if n := apiCalls.Load() - calls; n != 0 {
		t.Errorf("oauth2-proxy stopped: the API saw %d requests", n)
	}
}

package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/network"

	"github.com/corsauthz/corsauthz/internal/childproc"
	"github.com/corsauthz/corsauthz/internal/freeport"
	"github.com/corsauthz/corsauthz/internal/nginxproc"
	"github.com/corsauthz/corsauthz/server"
)

// The NGINX suite runs the browser scenarios a second time through the
// real thing:
//
//	Chromium ─▶ tap ─▶ NGINX (the Debian binary) ─▶ upstream
//	                     │ preflights, and auth_request for the rest
//	                     ▼
//	               corsauthz's HTTP listener (server.New, --http-addr)
//
// NGINX runs the shipped deploy/nginx/snippets, included by a generated
// nginx.conf with one location per route. The tap
// (tap_test.go) keeps the exchange log and is the shared cache in front.

// needNginx returns the NGINX binary, or skips (fails with
// CORSAUTHZ_E2E_NGINX=require).
func needNginx(t *testing.T) string {
	t.Helper()
	bin := nginxproc.Path()
	if bin == "" {
		msg := fmt.Sprintf("no nginx found (looked on PATH and in %v): install it, e.g. apt-get install nginx-light", nginxproc.Candidates)
		if os.Getenv(nginxproc.Env) == "require" {
			t.Fatalf("%s (%s=require makes this a failure instead of a skip)", msg, nginxproc.Env)
		}
		t.Skipf("%s; set %s=require to make this a failure", msg, nginxproc.Env)
	}
	return bin
}

// serveNginxUpstream is serveUpstream, and under /star-upstream/ answers
// CORS by itself with Access-Control-Allow-Origin: *, as many frameworks
// do by default.
func serveNginxUpstream(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/star-upstream/") {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Access-Control-Allow-Methods", "*")
	}
	serveUpstream(w, r)
}

// nginxRoutes are routes, plus the upstream that answers with * and one
// nobody listens on.
func nginxRoutes(t *testing.T) []route {
	t.Helper()
	return append(slices.Clone(routes),
		route{prefix: "/star-upstream/", extensions: map[string]string{"cors_policy": "creds"}},
		downRoute(t))
}

// nginx502Body is the body of NGINX's own 502 answer under nginxConf.
const nginx502Body = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"

// nginxConf is the generated nginx.conf: the shipped snippets, one
// location per route naming its policy ("" for selection by host and
// path) and proxying to the upstream, or to the route's own.
func nginxConf(dir *nginxproc.Dir, listen, corsauthz, upstream string, routes []route) string {
	var b strings.Builder
	b.WriteString("worker_processes 1;\n")
	b.WriteString(dir.MainLines())
	b.WriteString("events { worker_connections 256; }\nhttp {\n")
	b.WriteString(dir.HTTPLines())
	// NGINX's own error pages without its version or the padding it adds
	// for Chromium, so that a scenario can want one (nginx502Body).
	b.WriteString("server_tokens off;\nmsie_padding off;\n")
	fmt.Fprintf(&b, `include snippets/corsauthz-http.conf;
upstream corsauthz { server %s; keepalive 8; }
upstream api { server %s; keepalive 8; }
server {
    listen %s;
    server_name _;
    include snippets/corsauthz-endpoint.conf;
`, corsauthz, upstream, listen)
	for _, rt := range routes {
		to := "api"
		if rt.upstream != nil {
			to = rt.upstream.Host
		}
		fmt.Fprintf(&b, `    location %s {
        set $corsauthz_policy "%s";
        include snippets/corsauthz-location.conf;
        proxy_pass http://%s;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
    }
`, rt.prefix, rt.extensions["cors_policy"], to)
	}
	b.WriteString("    location / { return 404; }\n}\n}\n")
	return b.String()
}

// startNginxStack starts the pages, the upstream, corsauthz with its HTTP
// listener, NGINX and the tap; they stop at the test's end.
func startNginxStack(t *testing.T, bin string) *stack {
	t.Helper()
	s, engine, _ := startPagesAndUpstream(t, http.HandlerFunc(serveNginxUpstream))
	srv := s.startCorsauthz(t, engine, server.Options{HTTPAddr: "127.0.0.1:0"})

	dir, err := nginxproc.NewDir(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Remove() })
	if _, err := dir.InstallSnippets(filepath.Join("..", filepath.FromSlash(nginxproc.SnippetsDir))); err != nil {
		t.Fatal(err)
	}
	listen := freeport.Addr(t)
	routes := nginxRoutes(t)
	conf, err := dir.WriteFile("nginx.conf", nginxConf(dir, listen, srv.HTTPAddr().String(), s.upstream, routes))
	if err != nil {
		t.Fatal(err)
	}
	proc, err := dir.Start(conf, listen)
	if err != nil {
		t.Fatal(err)
	}
	childproc.Watch(t, proc.Pid()) // after Stop below: the workers Stop may leave
	t.Logf("nginx (%s) pid %d on %s, corsauthz HTTP on %s", bin, proc.Pid(), listen, srv.HTTPAddr())
	t.Cleanup(func() {
		if err := proc.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			log, _ := os.ReadFile(dir.ErrorLog())
			t.Logf("nginx error log (end):\n%s", lastBytes(log, 4<<10))
		}
	})

	s.frontWithTap(t, &url.URL{Scheme: "http", Host: listen}, routes)
	return s
}

func lastBytes(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// nginxScenarios are the scenarios as NGINX runs them, plus those only
// NGINX has.
func (s *stack) nginxScenarios() []scenario {
	return append(s.scenariosThrough(nginxGateway),
		scenario{
			desc:       "an upstream answering Access-Control-Allow-Origin: * to an origin the policy does not list: its * is dropped, the browser blocks",
			page:       s.evil,
			calls:      []fetchCall{s.get("/star-upstream/evil")},
			want:       []fetchResult{blocked},
			corsErrors: []network.CorsError{network.CorsErrorMissingAllowOriginHeader},
			exchanges:  []string{"GET /star-upstream/evil from evil: upstream 200"},
			sent: []sentHeader{
				{0, "Access-Control-Allow-Origin", nil},
				{0, "Access-Control-Allow-Methods", nil},
				{0, "Vary", []string{"Accept-Encoding", "Origin"}},
			},
		},
		scenario{
			desc:      "an upstream answering Access-Control-Allow-Origin: * to a listed origin: corsauthz's answer replaces it, credentials work",
			page:      s.app,
			calls:     []fetchCall{credentialed(s.get("/star-upstream/app", "X-Exposed"))},
			want:      []fetchResult{ok("GET /star-upstream/app", map[string]string{"X-Exposed": exposedValue})},
			exchanges: []string{"GET /star-upstream/app from app: upstream 200"},
			sent: []sentHeader{
				{0, "Access-Control-Allow-Origin", []string{s.app}},
				{0, "Access-Control-Allow-Credentials", []string{"true"}},
			},
		},
		scenario{
			// A page can only send such headers after a preflight, which
			// asks for them; that the gateway never forwards a client's
			// own is checked without a browser, in deploy/nginx_run_test.go.
			desc:  "a page sending its own X-Corsauthz-Policy and X-Original-URI: the preflight asks for them and the policy refuses",
			page:  s.evil,
			calls: []fetchCall{s.call("GET", "/creds/spoof", map[string]string{"X-Corsauthz-Policy": "star", "X-Original-URI": "/star/x"})},
			want:  []fetchResult{blocked},
			corsErrors: []network.CorsError{
				network.CorsErrorPreflightMissingAllowOriginHeader,
			},
			exchanges: []string{"OPTIONS /creds/spoof from evil asking GET with x-corsauthz-policy,x-original-uri: answered 403"},
		},
	)
}

// downScenarios run once corsauthz is stopped: NGINX fails closed.
func (s *stack) downScenarios() []scenario {
	return []scenario{
		{
			desc:       "corsauthz down: an actual request is answered 500 by NGINX and never reaches the upstream",
			page:       s.app,
			calls:      []fetchCall{s.get("/nocreds/down")},
			want:       []fetchResult{blocked},
			corsErrors: []network.CorsError{network.CorsErrorMissingAllowOriginHeader},
			exchanges:  []string{"GET /nocreds/down from app: answered 500"},
		},
		{
			desc:       "corsauthz down: a preflight is answered 502 by NGINX, and the PUT is never sent",
			page:       s.app,
			calls:      []fetchCall{s.call("PUT", "/creds/down-put", map[string]string{"X-Custom": "1"})},
			want:       []fetchResult{blocked},
			corsErrors: []network.CorsError{network.CorsErrorPreflightMissingAllowOriginHeader},
			exchanges:  []string{"OPTIONS /creds/down-put from app asking PUT with x-custom: answered 502"},
		},
	}
}

// TestBrowserThroughNginx is TestBrowser through real NGINX and corsauthz's
// HTTP listener, then with corsauthz stopped.
func TestBrowserThroughNginx(t *testing.T) {
	bin := needNginx(t)
	browser := startBrowser(t)
	s := startNginxStack(t, bin)
	s.run(t, browser, s.nginxScenarios())
	if t.Failed() {
		return
	}
	if err := s.stopCorsauthz(); err != nil {
		t.Fatalf("corsauthz Serve: %v", err)
	}
	t.Run("corsauthz stopped", func(t *testing.T) { s.run(t, browser, s.downScenarios()) })
}

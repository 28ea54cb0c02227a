package deploy_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corsauthz/corsauthz/deploy"
	"github.com/corsauthz/corsauthz/internal/childproc"
	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/server"
)

// TestNginxShippedConfigServes runs the shipped NGINX configuration for
// real: NGINX (HTTPS, as in the file) in front of an API that sets its own
// Access-Control-Allow-Origin: * and Vary, with corsauthz's HTTP listener
// serving deploy/corsauthz.yaml. The browser suite (e2e/) does the same
// with Chromium; this test pins the file itself.
func TestNginxShippedConfigServes(t *testing.T) {
	t.Parallel()
	dir := newNginxDir(t, needNginx(t))

	e, _, err := policy.Load(deploy.ExampleConfigName, deploy.ExampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(policy.NewHolder(e), server.Options{GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stopCorsauthz := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	t.Cleanup(func() { stopCorsauthz(); <-served })

	var apiCalls atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		apiCalls.Add(1)
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Access-Control-Allow-Methods", "GET, POST, PUT")
		w.Header().Set("Vary", "Accept-Encoding")
		io.WriteString(w, "api "+r.Method+" "+r.URL.RequestURI()+" policy-header="+r.Header.Get("X-Corsauthz-Policy"))
	}))
	t.Cleanup(api.Close)

	cert, key := selfSignedCert(t, dir.Path)
	listen := freeAddr(t)
	conf := renderNginx(t, dir, nginxPorts{listen: listen, corsauthz: srv.HTTPAddr().String(), api: api.Listener.Addr().String(), cert: cert, key: key})
	proc, err := dir.Start(conf, listen)
	if err != nil {
		t.Fatal(err)
	}
	childproc.Watch(t, proc.Pid()) // after Stop below: the workers Stop may leave
	t.Cleanup(func() {
		if err := proc.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			log, _ := os.ReadFile(dir.ErrorLog())
			t.Logf("nginx error log:\n%s", tail(string(log)))
		}
	})

	pem, _ := os.ReadFile(cert)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "api.example.com"},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, listen)
		},
	}}
	do := func(method, path string, headers ...string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, "https://api.example.com"+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range headers {
			name, value, _ := strings.Cut(h, ": ")
			req.Header.Add(name, value)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	const app = "https://app.example.com"
	want := func(desc string, resp *http.Response, status int, headers map[string]string) {
		t.Helper()
		if resp.StatusCode != status {
			t.Errorf("%s: status %d, want %d", desc, resp.StatusCode, status)
		}
		for name, v := range headers {
			got := strings.Join(resp.Header.Values(name), " | ")
			if got != v {
				t.Errorf("%s: %s = %q, want %q", desc, name, got, v)
			}
		}
	}

	calls := apiCalls.Load()
	resp, _ := do("OPTIONS", "/v1/orders", "Origin: "+app, "Access-Control-Request-Method: PUT", "Access-Control-Request-Headers: content-type")
	want("allowed preflight", resp, 204, map[string]string{
		"Access-Control-Allow-Origin": app, "Access-Control-Allow-Credentials": "true",
		"Access-Control-Allow-Methods": "PUT", "Access-Control-Allow-Headers": "content-type", "Access-Control-Max-Age": "600",
		"Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
	})
	resp, _ = do("OPTIONS", "/v1/orders", "Origin: https://evil.example.net", "Access-Control-Request-Method: PUT")
	want("rejected preflight", resp, 403, map[string]string{"Access-Control-Allow-Origin": "", "Access-Control-Allow-Methods": ""})
	if n := apiCalls.Load() - calls; n != 0 {
		t.Errorf("the API saw %d preflights, want none", n)
	}

	resp, body := do("POST", "/v1/orders?x=1", "Origin: "+app)
	want("allowed actual request", resp, 200, map[string]string{
		"Access-Control-Allow-Origin": app, "Access-Control-Allow-Credentials": "true",
		"Access-Control-Expose-Headers": "X-Request-Id", "Access-Control-Allow-Methods": "",
		"Vary": "Accept-Encoding | Origin",
	})
	if body != "api POST /v1/orders?x=1 policy-header=" {
		t.Errorf("the API saw %q", body)
	}
	resp, _ = do("GET", "/v1/orders", "Origin: https://evil.example.net")
	want("disallowed origin: the API's * dropped", resp, 200, map[string]string{"Access-Control-Allow-Origin": "", "Vary": "Accept-Encoding | Origin"})
	resp, _ = do("GET", "/public/prices", "Origin: https://anyone.example.org")
	want("/public/ under the policy named by the location", resp, 200, map[string]string{"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Credentials": ""})
	resp, _ = do("OPTIONS", "/public/prices", "Origin: https://anyone.example.org", "Access-Control-Request-Method: GET")
	want("/public/ preflight under the policy named by the location", resp, 204, map[string]string{"Access-Control-Allow-Origin": "*", "Access-Control-Max-Age": "7200"})
	resp, _ = do("GET", "/v1/orders", "Origin: https://evil.example.net", "X-Corsauthz-Policy: public", "X-Original-URI: /public/x", "X-Forwarded-Host: other.example.com")
	want("a client's own X-Corsauthz-Policy and X-Original-* are not trusted", resp, 200, map[string]string{"Access-Control-Allow-Origin": "", "Vary": "Accept-Encoding | Origin"})
	resp, _ = do("GET", "/v1/orders")
	want("no Origin: corsauthz's Vary appended, the API's * dropped", resp, 200, map[string]string{"Access-Control-Allow-Origin": "", "Vary": "Accept-Encoding | Origin"})
	resp, _ = do("GET", "/public/prices")
	want("no Origin under a * policy: ACAO *, no Vary of corsauthz's", resp, 200, map[string]string{"Access-Control-Allow-Origin": "*", "Vary": "Accept-Encoding"})
	// NGINX does not send a header set to an empty value: an empty Origin
	// reaches corsauthz as none (over Envoy's http_service, the preflight
	// below would be a CORS preflight from an origin matching nothing: 403).
	resp, _ = do("OPTIONS", "/v1/orders", "Origin: ", "Access-Control-Request-Method: PUT")
	want("empty Origin, preflight: decided as without Origin", resp, 200, map[string]string{"Access-Control-Allow-Origin": "", "Vary": "Origin"})

	// corsauthz down: nothing passes.
	stopCorsauthz()
	if err := <-served; err != nil {
		t.Errorf("corsauthz Serve: %v", err)
	}
	served <- nil // for the cleanup
	calls = apiCalls.Load()
	resp, _ = do("GET", "/v1/orders", "Origin: "+app)
	want("corsauthz down: actual request", resp, 500, map[string]string{"Access-Control-Allow-Origin": ""})
	resp, _ = do("OPTIONS", "/v1/orders", "Origin: "+app, "Access-Control-Request-Method: PUT")
	want("corsauthz down: preflight", resp, 502, map[string]string{"Access-Control-Allow-Origin": ""})
	if n := apiCalls.Load() - calls; n != 0 {
		t.Errorf("with corsauthz down the API saw %d requests, want none", n)
	}
}

func tail(s string) string {
	const n = 4 << 10
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

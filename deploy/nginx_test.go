package deploy_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corsauthz/corsauthz/internal/nginxproc"
)

// nginxFiles are the shipped NGINX configuration: nginx.conf and the
// snippets it includes.
var nginxFiles = []string{"nginx.conf", "corsauthz-http.conf", "corsauthz-location.conf", "corsauthz-endpoint.conf"}

// needNginx returns the NGINX binary, or skips the test (fails it with
// CORSAUTHZ_E2E_NGINX=require).
func needNginx(t *testing.T) string {
	t.Helper()
	bin := nginxproc.Path()
	if bin == "" {
		msg := "no nginx found (apt-get install nginx-light)"
		if os.Getenv(nginxproc.Env) == "require" {
			t.Fatalf("%s; %s=require makes this a failure", msg, nginxproc.Env)
		}
		t.Skipf("%s; set %s=require to make this a failure", msg, nginxproc.Env)
	}
	return bin
}

// nginxPorts are what renderNginx puts in place of the shipped file's
// addresses.
type nginxPorts struct {
	listen, corsauthz, api string // host:port each
	cert, key              string // the TLS files
}

// renderNginx writes the shipped configuration into dir with the test's
// addresses, certificate and a prefix of its own (pid file, logs, temp
// paths), and returns the main file's path. Every replacement must match
// exactly once, so that a change to the shipped file that the rendering
// no longer fits fails here rather than testing something else.
func renderNginx(t *testing.T, dir *nginxproc.Dir, p nginxPorts) string {
	t.Helper()
	main := string(readFile(t, "nginx/nginx.conf"))
	for _, r := range []struct{ old, new string }{
		{"pid /run/nginx.pid;\n", ""},
		{"error_log /var/log/nginx/error.log warn;\n", dir.MainLines()},
		{"    access_log /var/log/nginx/access.log;\n", dir.HTTPLines()},
		{"server 127.0.0.1:9003;", "server " + p.corsauthz + ";"},
		{"server 127.0.0.1:8080;", "server " + p.api + ";"},
		{"listen 443 ssl;", "listen " + p.listen + " ssl;"},
		{"/etc/nginx/tls/api.example.com.crt", p.cert},
		{"/etc/nginx/tls/api.example.com.key", p.key},
		{"worker_processes auto;", "worker_processes 1;"},
	} {
		if n := strings.Count(main, r.old); n != 1 {
			t.Fatalf("nginx/nginx.conf: %q appears %d times, want once (update renderNginx)", r.old, n)
		}
		main = strings.Replace(main, r.old, r.new, 1)
	}
	for _, name := range nginxFiles[1:] {
		if _, err := dir.WriteFile(name, string(readFile(t, "nginx/"+name))); err != nil {
			t.Fatal(err)
		}
	}
	conf, err := dir.WriteFile("nginx.conf", main)
	if err != nil {
		t.Fatal(err)
	}
	return conf
}

// selfSignedCert writes a certificate and key for api.example.com into dir.
func selfSignedCert(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "api.example.com"},
		DNSNames:     []string{"api.example.com"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, "api.crt"), filepath.Join(dir, "api.key")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// freeAddr returns a loopback address with a port free at the time of the call.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func newNginxDir(t *testing.T, bin string) *nginxproc.Dir {
	t.Helper()
	dir, err := nginxproc.NewDir(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Remove() })
	return dir
}

// TestNginxConfigValid renders deploy/nginx/nginx.conf with test ports and
// runs `nginx -t` on it.
func TestNginxConfigValid(t *testing.T) {
	t.Parallel()
	dir := newNginxDir(t, needNginx(t))
	cert, key := selfSignedCert(t, dir.Path)
	conf := renderNginx(t, dir, nginxPorts{listen: freeAddr(t), corsauthz: "127.0.0.1:1", api: "127.0.0.1:2", cert: cert, key: key})
	out, err := dir.Test(t.Context(), conf)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "syntax is ok") || !strings.Contains(out, "test is successful") {
		t.Errorf("nginx -t said:\n%s", out)
	}
	if strings.Contains(out, "[warn]") {
		t.Errorf("nginx -t warns:\n%s", out)
	}
}

// directives returns the arguments of every "name args;" line in conf,
// comments left out.
func directives(conf, name string) []string {
	re := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(name) + `\s+([^;#]*);`)
	var out []string
	for _, m := range re.FindAllStringSubmatch(conf, -1) {
		out = append(out, strings.Join(strings.Fields(m[1]), " "))
	}
	return out
}

// TestNginxConfigContract checks what the HTTP authorization protocol
// (docs/decision-api.md) asks of a gateway
// configuration, line by line: every header corsauthz trusts is set or
// cleared, nothing else of the client's reaches it, the upstream's CORS
// headers are dropped and corsauthz's put on every response, and the
// timeouts are bounded.
func TestNginxConfigContract(t *testing.T) {
	t.Parallel()
	endpoint := string(readFile(t, "nginx/corsauthz-endpoint.conf"))
	location := string(readFile(t, "nginx/corsauthz-location.conf"))
	httpConf := string(readFile(t, "nginx/corsauthz-http.conf"))
	main := string(readFile(t, "nginx/nginx.conf"))

	set := map[string]string{}
	for _, d := range directives(endpoint, "proxy_set_header") {
		name, value, _ := strings.Cut(d, " ")
		set[strings.ToLower(name)] = value
	}
	for name, want := range map[string]string{
		"x-forwarded-method": "$request_method", "x-forwarded-host": "$host", "x-forwarded-uri": "$request_uri",
		"x-corsauthz-policy": "$corsauthz_policy",
		"x-original-method":  `""`, "x-original-host": `""`, "x-original-uri": `""`,
		"origin":                                 "$http_origin",
		"access-control-request-method":          "$http_access_control_request_method",
		"access-control-request-headers":         "$http_access_control_request_headers",
		"access-control-request-private-network": "$http_access_control_request_private_network",
		"content-length":                         `""`,
	} {
		if set[name] != want {
			t.Errorf("corsauthz-endpoint.conf: proxy_set_header %s is %q, want %q", name, set[name], want)
		}
	}
	for _, want := range []string{"proxy_pass_request_headers off", "proxy_pass_request_body off", "internal"} {
		if !strings.Contains(endpoint, "    "+want+";") {
			t.Errorf("corsauthz-endpoint.conf lacks %q", want)
		}
	}
	for _, name := range []string{"proxy_connect_timeout", "proxy_read_timeout", "proxy_send_timeout"} {
		if v := directives(endpoint, name); len(v) != 1 || !regexp.MustCompile(`^[1-5]s$`).MatchString(v[0]) {
			t.Errorf("corsauthz-endpoint.conf: %s = %v, want a few seconds", name, v)
		}
	}

	hidden := directives(location, "proxy_hide_header")
	for _, name := range []string{
		"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials", "Access-Control-Expose-Headers",
		"Access-Control-Allow-Methods", "Access-Control-Allow-Headers", "Access-Control-Max-Age",
		"Access-Control-Allow-Private-Network",
	} {
		if !slices.Contains(hidden, name) {
			t.Errorf("corsauthz-location.conf does not hide the upstream's %s", name)
		}
	}
	added := directives(location, "add_header")
	for name, variable := range map[string]string{
		"Access-Control-Allow-Origin": "$corsauthz_allow_origin", "Access-Control-Allow-Credentials": "$corsauthz_allow_credentials",
		"Access-Control-Expose-Headers": "$corsauthz_expose_headers", "Vary": "$corsauthz_vary",
	} {
		if !slices.Contains(added, name+" "+variable+" always") {
			t.Errorf("corsauthz-location.conf: no add_header %s %s always (have %q)", name, variable, added)
		}
		upstreamVar := "$upstream_http_" + strings.ReplaceAll(strings.ToLower(name), "-", "_")
		if !slices.Contains(directives(location, "auth_request_set"), variable+" "+upstreamVar) {
			t.Errorf("corsauthz-location.conf: no auth_request_set %s %s", variable, upstreamVar)
		}
	}
	if v := directives(location, "auth_request"); len(v) != 1 || v[0] != "/_corsauthz" {
		t.Errorf("corsauthz-location.conf: auth_request %v, want /_corsauthz", v)
	}
	if !strings.Contains(httpConf, `map "$request_method $http_access_control_request_method" $corsauthz_preflight`) {
		t.Errorf("corsauthz-http.conf does not recognise preflights by method and Access-Control-Request-Method")
	}

	// Every location of nginx.conf that proxies to the API is behind
	// corsauthz, and every policy it names exists.
	policies := examplePolicies(t)
	for _, d := range directives(main, "set") {
		if name, value, _ := strings.Cut(d, " "); name == "$corsauthz_policy" && value != `""` {
			if _, ok := policies[value]; !ok {
				t.Errorf("nginx.conf names policy %q, which deploy/corsauthz.yaml lacks", value)
			}
		}
	}
	if a, b := strings.Count(main, "proxy_pass http://api;"), strings.Count(main, "include corsauthz-location.conf;"); a != b || a == 0 {
		t.Errorf("nginx.conf: %d locations proxy to the API, %d include corsauthz-location.conf", a, b)
	}
	// Each sets $corsauthz_policy just before the include, and nothing
	// sets it at the server level (see corsauthz-location.conf).
	setThenInclude := regexp.MustCompile(`(?m)^\s*set \$corsauthz_policy [^;]+;\n\s*include corsauthz-location\.conf;`)
	if n := len(setThenInclude.FindAllString(main, -1)); n != strings.Count(main, "include corsauthz-location.conf;") {
		t.Errorf("nginx.conf: %d of the locations including corsauthz-location.conf set $corsauthz_policy just before it", n)
	}
	if regexp.MustCompile(`(?m)^ {8}set \$corsauthz_policy`).MatchString(main) {
		t.Errorf("nginx.conf sets $corsauthz_policy at the server level, which the subrequest resets")
	}
}

package deploy_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/md5"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/corsauthz/corsauthz/internal/freeport"
	"github.com/corsauthz/corsauthz/internal/nginxproc"
	"github.com/corsauthz/corsauthz/policy"
)

// The shipped NGINX files, relative to deploy/, and the page that tells
// how to use them.
const (
	nginxSnippets       = "nginx/snippets"
	nginxExample        = "nginx/conf.d/corsauthz.conf"
	nginxOAuth2Example  = "nginx/oauth2-proxy/corsauthz.conf"
	nginxOAuth2Config   = "nginx/oauth2-proxy/corsauthz.yaml"
	nginxDoc            = "../docs/nginx.md"
	debianNginxConf     = "testdata/debian-nginx.conf"
	debianNginxConfMD5  = "e5398edc0b51497dba606859fb13a86e" // nginx-common 1.22.1-9's conffile
	debianNginxConfHead = 3                                  // lines of ours before Debian's file
)

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

// docBlock returns the fenced code block that follows the marker
// "<!-- test: name -->" in docs/nginx.md, which must appear once.
func docBlock(t *testing.T, name string) string {
	t.Helper()
	doc := string(readFile(t, nginxDoc))
	marker := "<!-- test: " + name + " -->"
	if n := strings.Count(doc, marker); n != 1 {
		t.Fatalf("docs/nginx.md: %s appears %d times, want once", marker, n)
	}
	_, after, _ := strings.Cut(doc, marker)
	m := regexp.MustCompile("(?s)^\\s*```[a-z]*\\n(.*?)\\n\\s*```").FindStringSubmatch(after)
	if m == nil {
		t.Fatalf("docs/nginx.md: no code block right after %s", marker)
	}
	// The page indents blocks inside list items: remove that indentation.
	indent := regexp.MustCompile(`(?m)^\s*`).FindString(strings.TrimLeft(after, "\n"))
	var lines []string
	for _, l := range strings.Split(m[1], "\n") {
		lines = append(lines, strings.TrimPrefix(l, indent))
	}
	return strings.Join(lines, "\n")
}

// docCommands splits a documented shell block into commands: comments
// dropped, continued lines joined, "sudo " removed.
func docCommands(block string) []string {
	var out []string
	var cur strings.Builder
	sc := bufio.NewScanner(strings.NewReader(block))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, " #"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cont := strings.HasSuffix(line, "\\")
		cur.WriteString(strings.TrimSuffix(line, "\\"))
		if cont {
			continue
		}
		cmd := strings.Join(strings.Fields(cur.String()), " ")
		cmd = strings.ReplaceAll(cmd, "sudo ", "")
		out = append(out, cmd)
		cur.Reset()
	}
	return out
}

// debian is NGINX's configuration as Debian lays it out (/etc/nginx with
// Debian's own nginx.conf, conf.d/ and snippets/), in a test directory.
type debian struct {
	dir  *nginxproc.Dir
	etc  string // the directory standing for /etc/nginx
	conf string // its nginx.conf
	// From the documented commands run by install:
	serveConfig, serveAddr string // corsauthz serve's --config and --http-addr
	tested                 bool   // the commands end with nginx -t and a reload
}

// newDebian makes /etc/nginx in dir as a fresh Debian install of
// nginx-light leaves it: Debian's nginx.conf (testdata, checked against the
// package's checksum) with its absolute paths moved into the directory and
// its pid file, logs and temp paths kept there (nginxproc), and the
// directories it includes, empty.
func newDebian(t *testing.T, dir *nginxproc.Dir) *debian {
	t.Helper()
	data := string(readFile(t, debianNginxConf))
	lines := strings.SplitAfterN(data, "\n", debianNginxConfHead+1)
	if sum := md5.Sum([]byte(lines[debianNginxConfHead])); hex.EncodeToString(sum[:]) != debianNginxConfMD5 {
		t.Fatalf("%s is no longer Debian's nginx.conf (md5 %x, want %s)", debianNginxConf, sum, debianNginxConfMD5)
	}
	conf := lines[debianNginxConfHead]
	d := &debian{dir: dir, etc: filepath.Join(dir.Path, "etc", "nginx")}
	for _, r := range []struct{ old, new string }{
		{"user www-data;\n", ""}, // workers as the test's user
		{"worker_processes auto;", "worker_processes 1;"},
		{"pid /run/nginx.pid;\n", dir.MainLines()},
		{"error_log /var/log/nginx/error.log;\n", ""},
		{"\taccess_log /var/log/nginx/access.log;\n", dir.HTTPLines()},
	} {
		if n := strings.Count(conf, r.old); n != 1 {
			t.Fatalf("%s: %q appears %d times, want once (update newDebian)", debianNginxConf, r.old, n)
		}
		conf = strings.Replace(conf, r.old, r.new, 1)
	}
	conf = strings.ReplaceAll(conf, "/etc/nginx/", d.etc+"/")
	if strings.Contains(conf, "/var/") || strings.Contains(conf, "/run/") {
		t.Fatalf("the rendered nginx.conf still names a system path:\n%s", conf)
	}
	var err error
	if d.conf, err = dir.WriteFile("etc/nginx/nginx.conf", conf); err != nil {
		t.Fatal(err)
	}
	if _, err := dir.WriteFile("etc/nginx/mime.types", "types {\n    text/html html;\n    application/json json;\n}\n"); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"conf.d", "snippets", "sites-enabled", "modules-enabled", "tls"} {
		if err := os.MkdirAll(filepath.Join(d.etc, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// run runs documented commands as written, /etc/nginx standing for the
// test's directory: `install` for real (from the repository's root, globs
// expanded as a shell would), `corsauthz serve` and `nginx -t && systemctl
// reload nginx` noted for the test to do, `apt-get install nginx-light`
// left to the machine. Any other command fails the test: teach it here.
func (d *debian) run(t *testing.T, commands []string) {
	t.Helper()
	for _, c := range commands {
		args := strings.Fields(strings.ReplaceAll(c, "/etc/nginx/", d.etc+"/"))
		switch {
		case c == "apt-get install nginx-light":
		case c == "nginx -t && systemctl reload nginx":
			d.tested = true
		case args[0] == "install":
			var expanded []string
			for _, a := range args[1:] {
				if !strings.Contains(a, "*") {
					expanded = append(expanded, a)
					continue
				}
				matches, err := filepath.Glob(filepath.Join("..", a))
				if err != nil || len(matches) == 0 {
					t.Fatalf("docs/nginx.md: %q matches no file", a)
				}
				for _, m := range matches {
					expanded = append(expanded, strings.TrimPrefix(m, ".."+string(filepath.Separator)))
				}
			}
			cmd := exec.Command("install", expanded...)
			cmd.Dir = ".."
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("docs/nginx.md: %s: %v\n%s", c, err, out)
			}
		case len(args) == 6 && args[0] == "corsauthz" && args[1] == "serve" && args[2] == "--config" && args[4] == "--http-addr":
			d.serveConfig, d.serveAddr = args[3], args[5]
		default:
			t.Fatalf("docs/nginx.md: the test does not know the command %q: teach debian.run", c)
		}
	}
}

// installed returns the content of a file the commands put in
// /etc/nginx.
func (d *debian) installed(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(d.etc, filepath.FromSlash(name)))
	if err != nil {
		t.Fatalf("the documented commands did not install %s: %v", name, err)
	}
	return string(data)
}

// setVars changes the installed conf.d/corsauthz.conf as docs/nginx.md
// tells a reader to, and nothing else: each old value must appear in the
// page's table and exactly once in the file.
func (d *debian) setVars(t *testing.T, vars map[string]string) {
	t.Helper()
	doc := string(readFile(t, nginxDoc))
	path := filepath.Join(d.etc, "conf.d", "corsauthz.conf")
	conf := d.installed(t, "conf.d/corsauthz.conf")
	for old, new := range vars {
		if !strings.Contains(doc, "`"+old) {
			t.Errorf("docs/nginx.md does not list %q among what to change", old)
		}
		if n := strings.Count(conf, old); n != 1 {
			t.Fatalf("conf.d/corsauthz.conf: %q appears %d times, want once (update the test or the page)", old, n)
		}
		conf = strings.Replace(conf, old, new, 1)
	}
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
}

// nginxRecipe is one of the two documented setups.
type nginxRecipe struct {
	desc    string
	blocks  []string // the docs/nginx.md blocks whose commands install it
	example string   // the shipped file it installs as conf.d/corsauthz.conf
}

var nginxRecipes = []nginxRecipe{
	{desc: "conf.d/corsauthz.conf", blocks: []string{"nginx-serve", "nginx-install"}, example: nginxExample},
	{desc: "oauth2-proxy/corsauthz.conf", blocks: []string{"nginx-oauth2-proxy-install"}, example: nginxOAuth2Example},
}

// installRecipe runs a recipe's documented commands into a fresh Debian
// layout in dir, checks that they installed the shipped file and that
// they agree with it on corsauthz's address, and sets the documented
// variables: NGINX on listen, the API on api, corsauthz on corsauthz, a
// certificate for api.example.com in etc/nginx/tls/.
func installRecipe(t *testing.T, dir *nginxproc.Dir, r nginxRecipe, listen, api, corsauthz string) *debian {
	t.Helper()
	d := newDebian(t, dir)
	for _, b := range r.blocks {
		d.run(t, docCommands(docBlock(t, b)))
	}
	if !d.tested {
		t.Errorf("docs/nginx.md: the %s recipe does not end with nginx -t && systemctl reload nginx", r.desc)
	}
	if got := d.installed(t, "conf.d/corsauthz.conf"); got != string(readFile(t, r.example)) {
		t.Fatalf("the documented commands installed a conf.d/corsauthz.conf that is not %s", r.example)
	}
	for _, name := range nginxSnippetNames(t) {
		if d.installed(t, "snippets/"+name) != string(readFile(t, nginxSnippets+"/"+name)) {
			t.Errorf("the documented commands did not install snippets/%s as shipped", name)
		}
	}
	if d.serveAddr == "" {
		t.Fatalf("docs/nginx.md: no corsauthz serve command for the %s recipe", r.desc)
	}
	cert, key := selfSignedCert(t, filepath.Join(d.etc, "tls"))
	d.setVars(t, map[string]string{
		"listen 127.0.0.1:443 ssl;":          "listen " + listen + " ssl;",
		"server 127.0.0.1:8080;":             "server " + api + ";",
		"server " + d.serveAddr + ";":        "server " + corsauthz + ";",
		"/etc/nginx/tls/api.example.com.crt": cert,
		"/etc/nginx/tls/api.example.com.key": key,
	})
	return d
}

// nginxSnippetNames are the shipped snippets' file names.
func nginxSnippetNames(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(nginxSnippets, "*.conf"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no snippet in %s: %v", nginxSnippets, err)
	}
	var names []string
	for _, p := range paths {
		names = append(names, filepath.Base(p))
	}
	return names
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
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
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

// TestNginxConfigValid installs each documented recipe into Debian's
// layout and runs `nginx -t` on it: valid, and not a warning.
func TestNginxConfigValid(t *testing.T) {
	t.Parallel()
	bin := needNginx(t)
	for _, r := range nginxRecipes {
		t.Run(r.desc, func(t *testing.T) {
			t.Parallel()
			dir := newNginxDir(t, bin)
			d := installRecipe(t, dir, r, freeport.Addr(t), "127.0.0.1:2", "127.0.0.1:1")
			out, err := dir.Test(t.Context(), d.conf)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, "syntax is ok") || !strings.Contains(out, "test is successful") {
				t.Errorf("nginx -t said:\n%s", out)
			}
			if strings.Contains(out, "[warn]") {
				t.Errorf("nginx -t warns:\n%s", out)
			}
		})
	}
}

// directives returns the arguments of every "name args;" line in conf,
// comments left out.
func directives(conf, name string) []string {
	re := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(name) + `\s+([^;#{}\n]*);`)
	var out []string
	for _, m := range re.FindAllStringSubmatch(conf, -1) {
		out = append(out, strings.Join(strings.Fields(m[1]), " "))
	}
	return out
}

// block returns the body of the block that opens with header (such as
// "location = /_corsauthz") in conf, or fails the test.
func block(t *testing.T, file, conf, header string) string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(header) + `\s*\{`)
	loc := re.FindStringIndex(conf)
	if loc == nil {
		t.Fatalf("%s has no block %q", file, header)
	}
	depth := 1
	for i := loc[1]; i < len(conf); i++ {
		switch conf[i] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return conf[loc[1]:i]
			}
		}
	}
	t.Fatalf("%s: block %q is not closed", file, header)
	return ""
}

func snippet(t *testing.T, name string) string {
	t.Helper()
	return string(readFile(t, nginxSnippets+"/"+name))
}

// headersSet returns a block's proxy_set_header lines, by lower-case name.
func headersSet(conf string) map[string]string {
	set := map[string]string{}
	for _, d := range directives(conf, "proxy_set_header") {
		name, value, _ := strings.Cut(d, " ")
		set[strings.ToLower(name)] = value
	}
	return set
}

// TestNginxConfigContract checks what a gateway configuration owes the
// HTTP listener, line by line: every header corsauthz trusts is set or
// cleared, nothing else of the client's reaches it, its answer cannot
// steer NGINX, the upstream's CORS headers are dropped and corsauthz's
// put on every response, the timeouts are bounded, and the authorizer
// snippets send credentials only where an authorizer is asked and pass
// on exactly what it allowed.
func TestNginxConfigContract(t *testing.T) {
	t.Parallel()
	check := snippet(t, "corsauthz-check.conf")
	set := headersSet(check)
	for name, want := range map[string]string{
		"x-forwarded-method": "$request_method", "x-forwarded-host": "$host", "x-forwarded-uri": "$request_uri",
		"x-forwarded-proto": "$scheme", "x-corsauthz-policy": "$corsauthz_policy",
		"x-original-method": `""`, "x-original-host": `""`, "x-original-uri": `""`, "x-forwarded-for": `""`,
		"origin":                                 "$http_origin",
		"access-control-request-method":          "$http_access_control_request_method",
		"access-control-request-headers":         "$http_access_control_request_headers",
		"access-control-request-private-network": "$http_access_control_request_private_network",
		"content-length":                         `""`,
	} {
		if set[name] != want {
			t.Errorf("corsauthz-check.conf: proxy_set_header %s is %q, want %q", name, set[name], want)
		}
	}
	for name, want := range map[string]string{"proxy_pass_request_headers": "off", "proxy_pass_request_body": "off"} {
		if v := directives(check, name); !slices.Equal(v, []string{want}) {
			t.Errorf("corsauthz-check.conf: %s %v, want %s", name, v, want)
		}
	}
	if v := directives(check, "proxy_ignore_headers"); len(v) != 1 ||
		!slices.Equal(strings.Fields(v[0]), []string{"X-Accel-Redirect", "X-Accel-Expires", "X-Accel-Limit-Rate", "X-Accel-Buffering", "X-Accel-Charset"}) {
		t.Errorf("corsauthz-check.conf: proxy_ignore_headers %v, want every X-Accel-* header", v)
	}

	// The internal locations: each includes the check, none sets what the
	// check sets, and only those asking an authorizer send credentials.
	endpoint := block(t, "corsauthz-endpoint.conf", snippet(t, "corsauthz-endpoint.conf"), "location = /_corsauthz")
	authzEndpoints := snippet(t, "corsauthz-authorizer-endpoint.conf")
	for _, loc := range []struct {
		desc, body, proxyPass string
		authorizer            bool
		maxRead               time.Duration // proxy_read_timeout at most
		minRead               time.Duration // and more than
	}{
		{desc: "/_corsauthz", body: endpoint, proxyPass: "http://corsauthz/check", maxRead: 5 * time.Second},
		{
			desc: "/_corsauthz_authorizer", body: block(t, "corsauthz-authorizer-endpoint.conf", authzEndpoints, "location = /_corsauthz_authorizer"),
			proxyPass: "http://corsauthz/check", authorizer: true, minRead: policy.MaxAuthorizerTimeout, maxRead: policy.MaxAuthorizerTimeout + 5*time.Second,
		},
		{
			desc: "@corsauthz_answer", body: block(t, "corsauthz-authorizer-endpoint.conf", authzEndpoints, "location @corsauthz_answer"),
			proxyPass: "http://corsauthz", authorizer: true, minRead: policy.MaxAuthorizerTimeout, maxRead: policy.MaxAuthorizerTimeout + 5*time.Second,
		},
	} {
		if v := directives(loc.body, "include"); !slices.Equal(v, []string{"snippets/corsauthz-check.conf"}) {
			t.Errorf("%s: include %v, want snippets/corsauthz-check.conf", loc.desc, v)
		}
		if v := directives(loc.body, "proxy_pass"); !slices.Equal(v, []string{loc.proxyPass}) {
			t.Errorf("%s: proxy_pass %v, want %s", loc.desc, v, loc.proxyPass)
		}
		own := headersSet(loc.body)
		for name := range own {
			if _, ok := set[name]; ok {
				t.Errorf("%s sets %s, which corsauthz-check.conf sets", loc.desc, name)
			}
		}
		creds := map[string]string{"cookie": "$http_cookie", "authorization": "$http_authorization"}
		for name, want := range creds {
			if loc.authorizer && own[name] != want {
				t.Errorf("%s: proxy_set_header %s is %q, want %s", loc.desc, name, own[name], want)
			}
			if !loc.authorizer && own[name] != "" {
				t.Errorf("%s sends %s to corsauthz: only the authorizer's locations may", loc.desc, name)
			}
		}
		for name, bounds := range map[string][2]time.Duration{
			"proxy_connect_timeout": {0, 5 * time.Second},
			"proxy_send_timeout":    {0, 5 * time.Second},
			"proxy_read_timeout":    {loc.minRead, loc.maxRead},
		} {
			v := directives(loc.body, name)
			if len(v) != 1 {
				t.Errorf("%s: %s %v, want one", loc.desc, name, v)
				continue
			}
			if d, err := time.ParseDuration(v[0]); err != nil || d <= bounds[0] || d > bounds[1] {
				t.Errorf("%s: %s %s, want more than %s and at most %s", loc.desc, name, v[0], bounds[0], bounds[1])
			}
		}
		if loc.authorizer && slices.Contains(strings.Fields(strings.Join(directives(loc.body, "proxy_next_upstream"), " ")), "timeout") {
			t.Errorf("%s retries a timeout, which asks the authorizer again", loc.desc)
		}
		// A named location is internal by nature; the others must say so.
		if !strings.HasPrefix(loc.desc, "@") && !regexp.MustCompile(`(?m)^\s*internal;`).MatchString(loc.body) {
			t.Errorf("%s is not internal", loc.desc)
		}
	}

	// The response: the upstream's CORS headers hidden, corsauthz's added.
	cors := snippet(t, "corsauthz-cors.conf")
	hidden := directives(cors, "proxy_hide_header")
	for _, name := range []string{
		"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials", "Access-Control-Expose-Headers",
		"Access-Control-Allow-Methods", "Access-Control-Allow-Headers", "Access-Control-Max-Age",
		"Access-Control-Allow-Private-Network",
	} {
		if !slices.Contains(hidden, name) {
			t.Errorf("corsauthz-cors.conf does not hide the upstream's %s", name)
		}
	}
	added := directives(cors, "add_header")
	for name, variable := range map[string]string{
		"Access-Control-Allow-Origin": "$corsauthz_allow_origin", "Access-Control-Allow-Credentials": "$corsauthz_allow_credentials",
		"Access-Control-Expose-Headers": "$corsauthz_expose_headers", "Vary": "$corsauthz_vary",
	} {
		if !slices.Contains(added, name+" "+variable+" always") {
			t.Errorf("corsauthz-cors.conf: no add_header %s %s always (have %q)", name, variable, added)
		}
		upstreamVar := "$upstream_http_" + strings.ReplaceAll(strings.ToLower(name), "-", "_")
		if !slices.Contains(directives(cors, "auth_request_set"), variable+" "+upstreamVar) {
			t.Errorf("corsauthz-cors.conf: no auth_request_set %s %s", variable, upstreamVar)
		}
	}

	// The location snippets: preflights to corsauthz alone, the check, the
	// CORS headers; and for an authorizer, its denials relayed.
	preflight := regexp.MustCompile(`(?m)^if \(\$corsauthz_preflight\) \{\n\s+rewrite \^ /_corsauthz last;\n\}`)
	for _, loc := range []struct{ file, authRequest string }{
		{"corsauthz-location.conf", "/_corsauthz"},
		{"corsauthz-authorizer-location.conf", "/_corsauthz_authorizer"},
	} {
		conf := snippet(t, loc.file)
		if !preflight.MatchString(conf) {
			t.Errorf("%s does not send preflights to /_corsauthz", loc.file)
		}
		if v := directives(conf, "auth_request"); !slices.Equal(v, []string{loc.authRequest}) {
			t.Errorf("%s: auth_request %v, want %s", loc.file, v, loc.authRequest)
		}
		if v := directives(conf, "include"); !slices.Equal(v, []string{"snippets/corsauthz-cors.conf"}) {
			t.Errorf("%s: include %v, want snippets/corsauthz-cors.conf", loc.file, v)
		}
	}
	authzLocation := snippet(t, "corsauthz-authorizer-location.conf")
	if v := directives(authzLocation, "error_page"); !slices.Equal(v, []string{"401 403 500 = @corsauthz_answer"}) {
		t.Errorf("corsauthz-authorizer-location.conf: error_page %v, want 401 403 500 = @corsauthz_answer", v)
	}
	if !strings.Contains(snippet(t, "corsauthz-http.conf"), `map "$request_method $http_access_control_request_method" $corsauthz_preflight`) {
		t.Errorf("corsauthz-http.conf does not recognise preflights by method and Access-Control-Request-Method")
	}

	// Every upstream header of the shipped authorizer reaches the API from
	// the authorizer's answer alone, and never the browser.
	if _, _, err := policy.Load(nginxOAuth2Config, readFile(t, nginxOAuth2Config)); err != nil {
		t.Fatalf("%s: %v", nginxOAuth2Config, err)
	}
	var yamlCfg struct {
		Authorizers []struct {
			HTTP struct {
				Headers         []string `yaml:"headers"`
				UpstreamHeaders []string `yaml:"upstream_headers"`
				Timeout         string   `yaml:"timeout"`
			} `yaml:"http"`
		} `yaml:"authorizers"`
	}
	if err := yaml.Unmarshal(readFile(t, nginxOAuth2Config), &yamlCfg); err != nil {
		t.Fatalf("%s: %v", nginxOAuth2Config, err)
	}
	if len(yamlCfg.Authorizers) != 1 {
		t.Fatalf("%s: %d authorizers, want 1", nginxOAuth2Config, len(yamlCfg.Authorizers))
	}
	a := yamlCfg.Authorizers[0].HTTP
	if !slices.Equal(a.Headers, []string{"cookie", "authorization"}) {
		t.Errorf("%s: headers %v, want what the snippet sends: cookie, authorization", nginxOAuth2Config, a.Headers)
	}
	answerHidden := directives(block(t, "corsauthz-authorizer-endpoint.conf", authzEndpoints, "location @corsauthz_answer"), "proxy_hide_header")
	setUpstream := headersSet(authzLocation)
	for _, name := range a.UpstreamHeaders {
		variable := "$corsauthz_auth_" + strings.ReplaceAll(strings.TrimPrefix(name, "x-auth-request-"), "-", "_")
		want := variable + " $upstream_http_" + strings.ReplaceAll(name, "-", "_")
		if !slices.Contains(directives(authzLocation, "auth_request_set"), want) {
			t.Errorf("corsauthz-authorizer-location.conf: no auth_request_set %s", want)
		}
		if setUpstream[name] != variable {
			t.Errorf("corsauthz-authorizer-location.conf: proxy_set_header %s is %q, want %s", name, setUpstream[name], variable)
		}
		if !slices.ContainsFunc(answerHidden, func(h string) bool { return strings.EqualFold(h, name) }) {
			t.Errorf("@corsauthz_answer does not hide %s from the browser", name)
		}
	}
	if len(setUpstream) != len(a.UpstreamHeaders) {
		t.Errorf("corsauthz-authorizer-location.conf sets %d upstream headers, %s lists %d", len(setUpstream), nginxOAuth2Config, len(a.UpstreamHeaders))
	}

	// The examples: every location proxying to the API is behind corsauthz
	// and sets its policy just before the include; the authorizer's example
	// includes its endpoint and its location snippet; every address is
	// loopback.
	policies := examplePolicies(t)
	for _, ex := range []struct {
		file, include string
		endpoints     []string
	}{
		{nginxExample, "snippets/corsauthz-location.conf", []string{"snippets/corsauthz-endpoint.conf"}},
		{nginxOAuth2Example, "snippets/corsauthz-authorizer-location.conf", []string{"snippets/corsauthz-endpoint.conf", "snippets/corsauthz-authorizer-endpoint.conf"}},
	} {
		conf := string(readFile(t, ex.file))
		server := block(t, ex.file, conf, "server")
		var serverIncludes []string
		for _, inc := range directives(server, "include") {
			if !strings.HasSuffix(inc, "location.conf") {
				serverIncludes = append(serverIncludes, inc)
			}
		}
		if !slices.Equal(serverIncludes, ex.endpoints) {
			t.Errorf("%s: the server includes %v, want %v", ex.file, serverIncludes, ex.endpoints)
		}
		if v := directives(conf, "include"); len(v) == 0 || v[0] != "snippets/corsauthz-http.conf" {
			t.Errorf("%s does not include snippets/corsauthz-http.conf first", ex.file)
		}
		if a, b := strings.Count(conf, "proxy_pass http://api;"), strings.Count(conf, "include "+ex.include+";"); a != b || a == 0 {
			t.Errorf("%s: %d locations proxy to the API, %d include %s", ex.file, a, b, ex.include)
		}
		setThenInclude := regexp.MustCompile(`(?m)^\s*set \$corsauthz_policy [^;]+;\n\s*include snippets/corsauthz-(authorizer-)?location\.conf;`)
		if n := len(setThenInclude.FindAllString(conf, -1)); n != strings.Count(conf, "location.conf;") {
			t.Errorf("%s: %d of the locations including a location snippet set $corsauthz_policy just before it", ex.file, n)
		}
		if regexp.MustCompile(`(?m)^ {4}set \$corsauthz_policy`).MatchString(conf) {
			t.Errorf("%s sets $corsauthz_policy at the server level, which the subrequest resets", ex.file)
		}
		if ex.file == nginxExample {
			for _, d := range directives(conf, "set") {
				if name, value, _ := strings.Cut(d, " "); name == "$corsauthz_policy" && value != `""` {
					if _, ok := policies[value]; !ok {
						t.Errorf("%s names policy %q, which deploy/corsauthz.yaml lacks", ex.file, value)
					}
				}
			}
		}
		for _, d := range append(directives(conf, "listen"), directives(conf, "server")...) {
			if !strings.HasPrefix(d, "127.0.0.1:") {
				t.Errorf("%s: %q is not on 127.0.0.1", ex.file, d)
			}
		}
	}
}

// TestNginxDocCommands checks what the docs page says beyond the commands
// the other tests run: the shipped files it links exist, and its
// oauth2-proxy command line has the flags corsauthz.yaml and
// corsauthz.conf count on (e2e/nginx_auth_test.go runs oauth2-proxy with
// the same).
func TestNginxDocCommands(t *testing.T) {
	t.Parallel()
	doc := string(readFile(t, nginxDoc))
	for _, m := range regexp.MustCompile(`\]\(\.\./(deploy/[^)#]+)\)`).FindAllStringSubmatch(doc, -1) {
		if _, err := os.Stat(filepath.Join("..", m[1])); err != nil {
			t.Errorf("docs/nginx.md links %s: %v", m[1], err)
		}
	}
	// Each example's opening comment gives the page's commands.
	for _, r := range nginxRecipes {
		comment := string(readFile(t, r.example))
		comment = comment[:strings.Index(comment, "\ninclude ")]
		for _, b := range r.blocks {
			for _, c := range docCommands(docBlock(t, b)) {
				if strings.HasPrefix(c, "corsauthz ") || strings.HasPrefix(c, "install ") {
					if !strings.Contains(comment, "#   "+c+"\n") && !strings.Contains(comment, "#       "+c+"\n") {
						t.Errorf("%s does not say, as docs/nginx.md does: %s", r.example, c)
					}
				}
			}
		}
	}

	cmds := docCommands(docBlock(t, "nginx-oauth2-proxy"))
	if len(cmds) != 1 {
		t.Fatalf("docs/nginx.md: the oauth2-proxy block has %d commands, want 1", len(cmds))
	}
	flags := map[string]string{}
	for _, f := range strings.Fields(cmds[0])[1:] {
		name, value, _ := strings.Cut(f, "=")
		flags[name] = value
	}
	for name, want := range map[string]string{
		"--http-address": "127.0.0.1:4180", "--upstream": "static://202", "--set-xauthrequest": "",
		"--reverse-proxy": "", "--trusted-proxy-ip": "127.0.0.1/32", "--redirect-url": "https://api.example.com/oauth2/callback",
	} {
		if got, ok := flags[name]; !ok || got != want {
			t.Errorf("docs/nginx.md: oauth2-proxy %s=%q, want %q", name, got, want)
		}
	}
	if !strings.Contains(string(readFile(t, nginxOAuth2Config)), "url: http://"+flags["--http-address"]+"/oauth2/auth") {
		t.Errorf("%s does not ask oauth2-proxy at the documented --http-address %s", nginxOAuth2Config, flags["--http-address"])
	}
}

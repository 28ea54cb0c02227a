package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/corsauthz/corsauthz/internal/freeport"
	"github.com/corsauthz/corsauthz/xdsconfig"
)

// A stack is what the dashboard and the alerts watch, running on
// loopback: a corsauthz process (built from ./cmd/corsauthz) with an HTTP
// authorizer in front of which it
// decides, and a Go gateway subscribed to it over xDS (the xdsconfig
// package, as the middleware and the Caddy module use it) whose metrics
// are served on a port of their own, plus a second subscription to an
// address where nothing listens, whose configuration is stale.
type stack struct {
	dir        string
	configPath string
	grpcAddr   string
	adminAddr  string
	httpAddr   string
	// gatewayAddr serves the gateway's /metrics.
	gatewayAddr string
	authorizer  *stackAuthorizer
	httpClient  *http.Client
	httpBase    string // http:// or https:// and httpAddr
	check       authv3.AuthorizationClient
	out         *syncBuffer // corsauthz's log
}

type stackOptions struct {
	// tls serves gRPC and HTTP with a certificate that expires in a day.
	tls bool
}

// stackAuthorizerTimeout is the authorizer's timeout in stackConfig.
const stackAuthorizerTimeout = 250 * time.Millisecond

// stackConfig is the configuration the stack starts with; withFiles adds
// a policy, for a reload that changes something.
func stackConfig(authorizerURL string, withFiles bool) string {
	cfg := fmt.Sprintf(`authorizers:
  - name: auth
    http:
      url: %s/check
      timeout: %s
policies:
  - name: api
    match: {hosts: [api.example.com]}
    allowed_origins: [https://app.example.com]
    allowed_methods: [GET, POST]
    allow_credentials: true
    authorizer: auth
  - name: public
    match: {hosts: [public.example.com]}
    allowed_origins: ["*"]
`, authorizerURL, stackAuthorizerTimeout)
	if withFiles {
		cfg += `  - name: files
    match: {hosts: [fs.example.com]}
    allowed_origins: [https://app.example.com]
`
	}
	return cfg
}

// stackBadConfig does not validate (a trailing slash in an origin): a
// reload to it fails and keeps the configuration in force.
const stackBadConfig = `policies:
  - name: api
    allowed_origins: [https://app.example.com/]
`

// stackAuthorizer answers like an auth service having a bad day: of every
// 16 calls, one is denied (401) and two take longer than the timeout
// (corsauthz counts them as errors and answers 503); the others are
// allowed after a few milliseconds.
type stackAuthorizer struct {
	srv   *httptest.Server
	calls atomic.Int64
}

func (a *stackAuthorizer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := a.calls.Add(1)
	delay := 2 * time.Millisecond
	if n%8 == 0 {
		delay = stackAuthorizerTimeout + 100*time.Millisecond
	}
	select {
	case <-time.After(delay):
	case <-r.Context().Done():
		return
	}
	if n%16 == 3 {
		http.Error(w, "sign in first", http.StatusUnauthorized)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// syncBuffer is a bytes.Buffer safe for a process's output and a test
// reading it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startStack starts a stack and stops it when the test ends.
func startStack(t *testing.T, opts stackOptions) *stack {
	t.Helper()
	s := &stack{
		dir: t.TempDir(),
		// Port 0 everywhere: the kernel picks, and startCorsauthz reads the
		// addresses from the "serving" line. A port found free and closed again
		// can be taken by another package's test before corsauthz binds it.
		grpcAddr:    "127.0.0.1:0",
		adminAddr:   "127.0.0.1:0",
		httpAddr:    "127.0.0.1:0",
		authorizer:  &stackAuthorizer{},
		out:         &syncBuffer{},
		httpBase:    "http://",
		httpClient:  &http.Client{Timeout: 5 * time.Second},
		configPath:  "",
		gatewayAddr: "",
	}
	s.authorizer.srv = httptest.NewServer(s.authorizer)
	t.Cleanup(s.authorizer.srv.Close)
	s.configPath = filepath.Join(s.dir, "corsauthz.yaml")
	s.writeConfig(t, stackConfig(s.authorizer.srv.URL, false))

	args := []string{"serve",
		"--config", s.configPath,
		"--grpc-addr", s.grpcAddr,
		"--admin-addr", s.adminAddr,
		"--http-addr", s.httpAddr,
		// Low, so that the load's rejections are also rate-limited log lines.
		"--decision-log-rate", "5",
	}
	grpcCreds := insecure.NewCredentials()
	if opts.tls {
		cert, key := selfSignedCert(t, s.dir) // expires in a day
		args = append(args, "--tls-cert-file", cert, "--tls-key-file", key)
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(readFile(t, cert)) {
			t.Fatal("no certificate in " + cert)
		}
		tlsConfig := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		grpcCreds = credentials.NewTLS(tlsConfig)
		s.httpClient.Transport = &http.Transport{TLSClientConfig: tlsConfig}
		s.httpBase = "https://"
	}
	s.startCorsauthz(t, args)

	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(grpcCreds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s.check = authv3.NewAuthorizationClient(conn)

	// The gateway, and a second subscription that never connects.
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	sub := xdsconfig.Subscribe(ctx, conn, xdsconfig.SubscribeOptions{
		NodeID: "deploy-test-gateway", Registerer: reg, Address: s.grpcAddr,
	})
	deadAddr := freeport.Addr(t) // closed again: nothing listens there
	deadConn, err := grpc.NewClient(deadAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	dead := xdsconfig.Subscribe(ctx, deadConn, xdsconfig.SubscribeOptions{
		NodeID: "deploy-test-gateway", Registerer: reg, Address: deadAddr,
	})
	t.Cleanup(func() {
		cancel()
		sub.Close()
		dead.Close()
		deadConn.Close()
	})
	metrics := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(metrics.Close)
	s.gatewayAddr = strings.TrimPrefix(metrics.URL, "http://")
	select {
	case <-sub.Ready():
	case <-time.After(15 * time.Second):
		t.Fatalf("the gateway received no configuration over xDS in 15 s; corsauthz's log:\n%s", s.out)
	}
	return s
}

// startCorsauthz runs `corsauthz serve args…` with a 128 MiB GOMEMLIMIT
// (the shipped memory limit), and waits until it is ready.
func (s *stack) startCorsauthz(t *testing.T, args []string) {
	t.Helper()
	bin, err := buildCorsauthz()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	// None of the developer's CORSAUTHZ_* settings: they would set flags.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CORSAUTHZ_") && !strings.HasPrefix(kv, "GOMEMLIMIT=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "GOMEMLIMIT=128MiB")
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Errorf("corsauthz did not stop within 10 s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("corsauthz's log:\n%s", s.out)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for !s.readServingAddrs() {
		select {
		case <-exited:
			t.Fatalf("corsauthz exited before it was serving:\n%s", s.out)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("corsauthz logged no \"serving\" line in 20 s:\n%s", s.out)
		}
	}
	for {
		resp, err := http.Get("http://" + s.adminAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-exited:
			t.Fatalf("corsauthz exited before it was ready:\n%s", s.out)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("corsauthz not ready after 20 s:\n%s", s.out)
		}
	}
}

// servingLine is the text log's "serving" record, which names the addresses
// the listeners were bound to.
var servingLine = regexp.MustCompile(`msg=serving grpc_addr=(\S+) admin_addr=(\S+) http_addr=(\S+)`)

// readServingAddrs sets the stack's addresses from corsauthz's "serving" line,
// and reports whether that line has been logged yet.
func (s *stack) readServingAddrs() bool {
	m := servingLine.FindStringSubmatch(s.out.String())
	if m == nil {
		return false
	}
	s.grpcAddr, s.adminAddr, s.httpAddr = m[1], m[2], m[3]
	return true
}

// writeConfig replaces the configuration file the way the kubelet and
// editors do: a new file renamed over the old one.
func (s *stack) writeConfig(t *testing.T, content string) {
	t.Helper()
	tmp := s.configPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, s.configPath); err != nil {
		t.Fatal(err)
	}
}

// stackRequest is a request a gateway asks corsauthz about.
type stackRequest struct {
	desc     string
	method   string
	host     string
	origin   string
	acrm     string // Access-Control-Request-Method
	policy   string // cors_policy / X-Corsauthz-Policy
	wantHTTP []int  // what the HTTP listener may answer
}

// stackRequests are one of each kind of answer the dashboard shows.
var stackRequests = []stackRequest{
	{desc: "allowed preflight", method: "OPTIONS", host: "api.example.com", origin: "https://app.example.com", acrm: "POST", wantHTTP: []int{204}},
	{desc: "rejected preflight", method: "OPTIONS", host: "api.example.com", origin: "https://evil.example", acrm: "POST", wantHTTP: []int{403}},
	{desc: "actual request from an allowed origin", method: "GET", host: "api.example.com", origin: "https://app.example.com", wantHTTP: []int{200, 401, 503}},
	{desc: "actual request from another origin", method: "GET", host: "api.example.com", origin: "https://evil.example", wantHTTP: []int{200, 401, 503}},
	{desc: "not CORS", method: "GET", host: "api.example.com", wantHTTP: []int{200, 401, 503}},
	{desc: "public, no authorizer", method: "GET", host: "public.example.com", origin: "https://any.example", wantHTTP: []int{200}},
	{desc: "a policy that is not configured", method: "GET", host: "api.example.com", origin: "https://app.example.com", policy: "nope", wantHTTP: []int{503}},
}

// sendHTTP asks the HTTP listener about r, as NGINX's auth_request or
// Envoy's http_service would, and returns the status.
func (s *stack) sendHTTP(ctx context.Context, r stackRequest) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.httpBase+s.httpAddr+"/", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("X-Forwarded-Method", r.method)
	req.Header.Set("X-Forwarded-Host", r.host)
	req.Header.Set("X-Forwarded-Uri", "/v1/orders")
	req.Header.Set("X-Forwarded-Proto", "https")
	if r.origin != "" {
		req.Header.Set("Origin", r.origin)
	}
	if r.acrm != "" {
		req.Header.Set("Access-Control-Request-Method", r.acrm)
	}
	if r.policy != "" {
		req.Header.Set("X-Corsauthz-Policy", r.policy)
	}
	resp, err := s.httpClient.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// sendCheck asks the gRPC listener about r, as Envoy's ext_authz would;
// a refused request is an error, as Envoy sees it.
func (s *stack) sendCheck(ctx context.Context, r stackRequest) error {
	headers := map[string]string{}
	if r.origin != "" {
		headers["origin"] = r.origin
	}
	if r.acrm != "" {
		headers["access-control-request-method"] = r.acrm
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: r.method, Host: r.host, Path: "/v1/orders", Scheme: "https", Headers: headers,
		}},
	}}
	if r.policy != "" {
		req.Attributes.ContextExtensions = map[string]string{"cors_policy": r.policy}
	}
	_, err := s.check.Check(ctx, req)
	return err
}

// sendEach sends every stackRequest once over each front end and checks
// the HTTP answers.
func (s *stack) sendEach(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, r := range stackRequests {
		status, err := s.sendHTTP(ctx, r)
		if err != nil {
			t.Fatalf("%s over HTTP: %v", r.desc, err)
		}
		if !slices.Contains(r.wantHTTP, status) {
			t.Errorf("%s over HTTP: status %d, want one of %v", r.desc, status, r.wantHTTP)
		}
		err = s.sendCheck(ctx, r)
		if (err != nil) != (r.policy != "") {
			t.Errorf("%s over gRPC: error %v", r.desc, err)
		}
	}
}

// load sends stackRequests round-robin from workers goroutines, paced,
// until ctx is done, and returns how many requests were sent and how
// many failed to be sent (transport errors, not refusals).
func (s *stack) load(ctx context.Context, workers int) (sent, failed int64) {
	var nSent, nFailed atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; ctx.Err() == nil; i++ {
				r := stackRequests[i%len(stackRequests)]
				var err error
				if i%2 == 0 {
					_, err = s.sendHTTP(ctx, r)
				} else if err = s.sendCheck(ctx, r); r.policy != "" {
					err = nil // refused, as asked
				}
				nSent.Add(1)
				if err != nil && ctx.Err() == nil {
					nFailed.Add(1)
				}
				select {
				case <-ctx.Done():
				case <-time.After(10 * time.Millisecond):
				}
			}
		})
	}
	wg.Wait()
	return nSent.Load(), nFailed.Load()
}

// scrape returns the metric names (histograms' _bucket, _sum and _count
// included) that addr's /metrics exports, with a value each (the first
// series'); the samples are in the text format.
func scrape(t *testing.T, addr string) map[string]string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/metrics: %s", addr, resp.Status)
	}
	names := map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name := line
		if i := strings.IndexAny(name, "{ "); i >= 0 {
			name = name[:i]
		}
		if _, seen := names[name]; !seen {
			names[name] = line
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

// waitMetric polls addr's /metrics until a sample line starting with
// prefix has a value for which ok is true.
func waitMetric(t *testing.T, addr, prefix string, ok func(v float64) bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var last []string
	for time.Now().Before(deadline) {
		last = last[:0]
		resp, err := http.Get("http://" + addr + "/metrics")
		if err == nil {
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				line := sc.Text()
				if !strings.HasPrefix(line, prefix) {
					continue
				}
				last = append(last, line)
				var v float64
				if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil && ok(v) {
					resp.Body.Close()
					return
				}
			}
			resp.Body.Close()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s/metrics: no %s with the awaited value after 15 s; last: %q", addr, prefix, last)
}

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/chromedp/cdproto/network"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/server"
)

// stack is everything a scenario talks to: a page server on two ports,
// the gateway in front of an upstream, and corsauthz behind the gateway.
//
// Every server listens on 127.0.0.1; the browser reaches them by
// *.localhost names, which Chromium resolves to loopback by itself and
// treats as potentially trustworthy. The page and the API differ in host
// and port, so every call is cross-origin; they share the site
// corsauthz.localhost (as app.example.com and api.example.com would), so
// the API's cookies are first-party. That matters: headless Chromium
// blocks third-party cookies (it drops a cross-site Set-Cookie with the
// reason "UserPreferences", SameSite=None; Secure or not), so only a
// same-site API can show a cookie going out and coming back.
// evil.localhost is another site altogether.
type stack struct {
	app    string // http://app.corsauthz.localhost:PAGE1, the origin the policies list
	tenant string // http://tenant.corsauthz.localhost:PAGE1, matched only by the wildcard
	deep   string // http://a.b.corsauthz.localhost:PAGE1, two labels under the wildcard
	apex   string // http://corsauthz.localhost:PAGE1, not matched by http://*.corsauthz.localhost:PAGE1
	evil   string // http://evil.localhost:PAGE2, allowed by no policy but star
	api    string // http://api.corsauthz.localhost:GATEWAY
	gw     *gateway
	// direct is an HTTP client that reaches the gateway (for the NGINX
	// and Caddy suites, the tap) as the browser does, by the name
	// api.corsauthz.localhost (which Go's resolver does not resolve to
	// loopback by itself).
	direct *http.Client
	names  map[string]string // origin -> short name, for the exchange log
	// log is where the exchanges are read: the ext_authz gateway's own
	// log, or the tap in front of NGINX or Caddy (tap_test.go).
	log exchangeLog
	// upstream is the API's address (host:port); reached tells which of
	// the tap's requests it saw.
	upstream string
	reached  *reached

	// corsauthz is the service the gateway asks, started with policies;
	// stopCorsauthz stops it (once) and returns Serve's error.
	corsauthz     *server.Server
	policies      []byte
	stopCorsauthz func() error
}

// exchangeLog returns the exchanges so far whose path is one of paths.
type exchangeLog interface {
	exchanges(paths ...string) []exchange
}

// routes are the gateway's routes: each names its policy the way an Envoy
// route does, in the cors_policy context extension of its ext_authz
// per-filter config.
var routes = []route{
	{prefix: "/creds/", extensions: map[string]string{"cors_policy": "creds"}},
	{prefix: "/nocreds/", extensions: map[string]string{"cors_policy": "nocreds"}},
	{prefix: "/wild/", extensions: map[string]string{"cors_policy": "wild"}},
	{prefix: "/star/", extensions: map[string]string{"cors_policy": "star"}},
	{prefix: "/cached/", extensions: map[string]string{"cors_policy": "cached"}},
	{prefix: "/uncached/", extensions: map[string]string{"cors_policy": "uncached"}},
	{prefix: "/patch/", extensions: map[string]string{"cors_policy": "patch"}},
	{prefix: "/strict/", extensions: map[string]string{"cors_policy": "strict"}},
	{prefix: "/report/", extensions: map[string]string{"cors_policy": "report"}},
	{prefix: "/conflict/", extensions: map[string]string{"cors_policy": "conflict"}},
	{prefix: "/mismatch/", extensions: map[string]string{"cors_policy": "not-configured"}},
	{prefix: "/upstream-star/", extensions: map[string]string{"cors_policy": "nocreds"}},
	// The shared cache in front, over a policy of listed origins, a "*"
	// policy, and a broken cache that ignores Vary.
	{prefix: "/cache-listed/", extensions: map[string]string{"cors_policy": "nocreds"}, cache: true},
	{prefix: "/cache-star/", extensions: map[string]string{"cors_policy": "star"}, cache: true},
	{prefix: "/cache-broken/", extensions: map[string]string{"cors_policy": "nocreds"}, cache: true, ignoreVary: true},
	// No cors_policy: corsauthz selects by host and path, and under
	// /shared two policies share the match (the app with credentials,
	// partners without).
	{prefix: "/shared/"},
	{prefix: "/named-group/", extensions: map[string]string{"cors_policy": "shared-app,shared-partners"}},
}

// gatewayRoutes are routes as the shipped Envoy configuration writes
// them: each removes the upstream's Access-Control-* response headers. A
// route to an upstream nobody listens on shows the gateway's own 503.
func gatewayRoutes(t *testing.T) []route {
	t.Helper()
	out := append(slices.Clone(routes), downRoute(t))
	for i := range out {
		out[i].responseHeadersToRemove = corsResponseHeaders
	}
	return out
}

// downRoute is a route to an upstream nobody listens on: the gateway
// answers with its own error.
func downRoute(t *testing.T) route {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := &url.URL{Scheme: "http", Host: l.Addr().String()}
	l.Close()
	return route{prefix: "/down/", extensions: map[string]string{"cors_policy": "nocreds"}, upstream: down}
}

// startStack starts the servers for one test, with the ext_authz gateway;
// they stop at its end.
func startStack(t *testing.T) *stack {
	t.Helper()
	s, engine, up := startPagesAndUpstream(t, http.HandlerFunc(serveUpstream))
	srv := s.startCorsauthz(t, engine, server.Options{})

	// The gateway, a real gRPC client of corsauthz.
	conn, err := grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	upURL, err := url.Parse(up.URL)
	if err != nil {
		t.Fatal(err)
	}
	s.gw = &gateway{authz: authv3.NewAuthorizationClient(conn), routes: gatewayRoutes(t), upstream: upURL}
	s.log = s.gw
	gw := httptest.NewServer(s.gw)
	t.Cleanup(gw.Close)
	s.setFront(t, gw)
	return s
}

// startPagesAndUpstream starts the page servers and the upstream (served
// by upstream, noting the tap's requests it sees in s.reached), and loads
// the test policies for the page's origins; every suite shares them.
func startPagesAndUpstream(t *testing.T, upstream http.Handler) (*stack, *policy.Engine, *httptest.Server) {
	t.Helper()
	page1 := httptest.NewServer(http.HandlerFunc(servePage))
	t.Cleanup(page1.Close)
	page2 := httptest.NewServer(http.HandlerFunc(servePage))
	t.Cleanup(page2.Close)

	s := &stack{
		app:     "http://app.corsauthz.localhost:" + port(t, page1),
		tenant:  "http://tenant.corsauthz.localhost:" + port(t, page1),
		deep:    "http://a.b.corsauthz.localhost:" + port(t, page1),
		apex:    "http://corsauthz.localhost:" + port(t, page1),
		evil:    "http://evil.localhost:" + port(t, page2),
		reached: &reached{},
	}
	up := httptest.NewServer(s.reached.noting(upstream))
	t.Cleanup(up.Close)

	// corsauthz, with the test policies for the page's real origin.
	var yaml bytes.Buffer
	tmpl := template.Must(template.ParseFiles("testdata/policies.yaml"))
	if err := tmpl.Execute(&yaml, map[string]string{"App": s.app, "PagePort": port(t, page1), "Partner": s.evil}); err != nil {
		t.Fatal(err)
	}
	engine, warnings, err := policy.Load("testdata/policies.yaml", yaml.Bytes())
	if err != nil {
		t.Fatalf("load the test policies:\n%v\n%s", err, yaml.Bytes())
	}
	for _, w := range warnings {
		t.Errorf("policy warning: %v", w)
	}
	s.names = map[string]string{s.app: "app", s.tenant: "tenant", s.deep: "deep", s.apex: "apex", s.evil: "evil"}
	s.upstream = up.Listener.Addr().String()
	s.policies = yaml.Bytes()
	return s, engine, up
}

// startCorsauthz starts corsauthz deciding with engine, on loopback ports
// (gRPC, admin, and HTTP when opts.HTTPAddr says so), until the test ends
// or s.stopCorsauthz.
func (s *stack) startCorsauthz(t *testing.T, engine *policy.Engine, opts server.Options) *server.Server {
	t.Helper()
	opts.GRPCAddr, opts.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	opts.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts.Registry = prometheus.NewRegistry()
	opts.DrainTimeout = time.Second
	srv, err := server.New(policy.NewHolder(engine), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	s.corsauthz = srv
	s.stopCorsauthz = sync.OnceValue(func() error {
		stop()
		return <-served
	})
	t.Cleanup(func() {
		if err := s.stopCorsauthz(); err != nil {
			t.Errorf("corsauthz Serve: %v", err)
		}
	})
	return srv
}

// setFront makes front (the gateway, or the tap in front of NGINX or
// Caddy) the API the browser calls, as api.corsauthz.localhost, and points
// s.direct at it.
func (s *stack) setFront(t *testing.T, front *httptest.Server) {
	t.Helper()
	s.api = "http://api.corsauthz.localhost:" + port(t, front)
	addr := front.Listener.Addr().String()
	s.direct = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	t.Cleanup(s.direct.CloseIdleConnections)
}

func port(t *testing.T, ts *httptest.Server) string {
	t.Helper()
	_, p, err := net.SplitHostPort(ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// servePage serves the page the scripts run in: an empty document.
func servePage(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprint(w, "<!doctype html><title>corsauthz e2e</title>")
}

// The upstream's values, for the scenarios to compare.
const (
	exposedValue   = "exposed-value"
	hiddenValue    = "hidden-value"
	textPlain      = "text/plain; charset=utf-8"
	sessionCookie  = "e2e_session=s3cr3t"
	upstreamOrigin = "http://upstream.localhost" // what the upstream of /conflict/ claims
)

// serveUpstream is the API behind the gateway. Its body echoes the request
// ("METHOD PATH", then the Cookie and X-Custom headers and the body when
// present), so that the page sees what arrived. It sets X-Exposed and
// X-Hidden, which CORS hides from scripts unless exposed, and a Vary of
// its own. Under /conflict/ it also answers CORS by itself, wrongly; a
// path ending in /set-cookie sets a cookie for the rest of its directory.
func serveUpstream(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", textPlain)
	h.Set("X-Exposed", exposedValue)
	h.Set("X-Hidden", hiddenValue)
	if strings.Contains(r.URL.Path, "/cacheable/") {
		// Cacheable by shared caches, and varying on nothing of its own:
		// any Vary is corsauthz's.
		h.Set("Cache-Control", "public, max-age=300")
	} else {
		h.Set("Vary", "Accept-Encoding")
	}
	if strings.HasPrefix(r.URL.Path, "/conflict/") {
		h.Set("Access-Control-Allow-Origin", upstreamOrigin)
		h.Set("Access-Control-Expose-Headers", "X-Hidden")
	}
	if strings.HasPrefix(r.URL.Path, "/upstream-star/") {
		// What many frameworks send by default.
		h.Set("Access-Control-Allow-Origin", "*")
	}
	if dir, ok := strings.CutSuffix(r.URL.Path, "/set-cookie"); ok {
		// SameSite=Lax: sent on same-site requests only, fetches from
		// app.corsauthz.localhost included; HttpOnly: the script never
		// sees it, so only the echo can tell it came back.
		h.Set("Set-Cookie", sessionCookie+"; Path="+dir+"/; SameSite=Lax; HttpOnly")
	}
	body, _ := io.ReadAll(r.Body)
	lines := []string{r.Method + " " + r.URL.RequestURI()}
	if c := r.Header.Get("Cookie"); c != "" {
		lines = append(lines, "cookie: "+c)
	}
	if c := r.Header.Get("X-Custom"); c != "" {
		lines = append(lines, "x-custom: "+c)
	}
	if len(body) > 0 {
		lines = append(lines, "body: "+string(body))
	}
	fmt.Fprint(w, strings.Join(lines, "\n"))
}

// describe summarises an exchange for comparison: the request as Check
// saw it (method, path, origin by name, and for a preflight what it
// asks) and what the gateway did.
func (s *stack) describe(x exchange) string {
	h := x.check.GetAttributes().GetRequest().GetHttp()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", h.GetMethod(), h.GetPath())
	if o := h.GetHeaders()["origin"]; o != "" {
		fmt.Fprintf(&b, " from %s", cmpOr(s.names[o], o))
	}
	if m := h.GetHeaders()["access-control-request-method"]; m != "" {
		fmt.Fprintf(&b, " asking %s", m)
		if hs := h.GetHeaders()["access-control-request-headers"]; hs != "" {
			fmt.Fprintf(&b, " with %s", hs)
		}
	}
	switch {
	case x.cached:
		fmt.Fprintf(&b, ": cache hit %d", x.status)
	case x.resp == nil && x.err != nil:
		fmt.Fprintf(&b, ": Check failed (%s), answered %d", status.Code(x.err), x.status)
	case x.err != nil:
		fmt.Fprintf(&b, ": upstream failed, answered %d", x.status)
	case x.upstream:
		fmt.Fprintf(&b, ": upstream %d", x.status)
	default:
		fmt.Fprintf(&b, ": answered %d", x.status)
	}
	return b.String()
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// sentHeader is a header the gateway sent the browser on the exchange at
// index Exchange: all its lines, in order (nil: absent).
type sentHeader struct {
	Exchange int
	Name     string
	Values   []string
}

// scenario is a page's script making fetch calls to the API, and what
// must come of it: what the script sees, which CORS error Chromium
// reports, what the gateway asked corsauthz and answered.
type scenario struct {
	desc string
	page string // the origin the page is served from
	// prime are paths requested before the page runs, with GET and
	// without Origin, as a page load or a server-side client would.
	prime []string
	calls []fetchCall
	want  []fetchResult
	// corsErrors are the CORS errors Chromium reports, in order.
	corsErrors []network.CorsError
	// exchanges are the gateway's exchanges for the calls' paths, as
	// describe writes them, through the ext_authz gateway.
	exchanges []string
	sent      []sentHeader
	// elsewhere is what another gateway does differently by design, for
	// the suites through it (scenariosThrough).
	elsewhere map[gatewayKind]variant
}

// gatewayKind names a gateway the scenarios run through besides the
// ext_authz gateway (Envoy's semantics).
type gatewayKind string

const (
	nginxGateway gatewayKind = "NGINX"
	caddyGateway gatewayKind = "Caddy"
)

// variant is what a scenario expects through another gateway, where that
// differs: what the script sees, and the exchanges (nil: the scenario's).
type variant struct {
	want      []fetchResult
	exchanges []string
}

// scenariosThrough returns the scenarios with what differs through g.
func (s *stack) scenariosThrough(g gatewayKind) []scenario {
	scenarios := s.scenarios()
	for i := range scenarios {
		v, ok := scenarios[i].elsewhere[g]
		if !ok {
			continue
		}
		if v.want != nil {
			scenarios[i].want = v.want
		}
		if v.exchanges != nil {
			scenarios[i].exchanges = v.exchanges
		}
	}
	return scenarios
}

// maxTabs bounds the tabs open at once.
const maxTabs = 6

// TestBrowser runs every scenario in a fresh tab of one headless
// Chromium, several at a time, then checks each in a subtest. Each
// scenario uses paths of its own, so that neither the preflight cache nor
// the exchange log mixes scenarios. (The scenarios are not parallel
// subtests: the preflight cache ones mostly wait, and should not take a
// -parallel slot from the others while they do.)
func TestBrowser(t *testing.T) {
	browser := startBrowser(t)
	s := startStack(t)
	s.run(t, browser, s.scenarios())
}

// run observes the scenarios in browser, maxTabs at a time, then checks
// each in a subtest.
func (s *stack) run(t *testing.T, browser context.Context, scenarios []scenario) {
	outcomes := make([]outcome, len(scenarios))
	tabs := make(chan struct{}, maxTabs)
	var wg sync.WaitGroup
	for _, i := range slowestFirst(scenarios) {
		tabs <- struct{}{}
		wg.Go(func() {
			defer func() { <-tabs }()
			outcomes[i] = s.observe(browser, scenarios[i])
		})
	}
	wg.Wait()
	for i, sc := range scenarios {
		t.Run(sc.desc, func(t *testing.T) { s.check(t, sc, outcomes[i]) })
	}
}

// slowestFirst returns the indexes of scenarios, those that pause first,
// so that their pauses overlap the others' work.
func slowestFirst(scenarios []scenario) []int {
	pause := func(sc scenario) (total int) {
		for _, c := range sc.calls {
			total += c.PauseMillis
		}
		return total
	}
	order := make([]int, len(scenarios))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return pause(scenarios[b]) - pause(scenarios[a]) })
	return order
}

// outcome is what came of a scenario.
type outcome struct {
	err        error // the scenario could not run
	results    []fetchResult
	corsErrors []network.CorsError
	exchanges  []exchange
}

// observe runs a scenario in a new tab.
func (s *stack) observe(browser context.Context, sc scenario) outcome {
	for _, path := range sc.prime {
		resp, err := s.direct.Get(s.api + path)
		if err != nil {
			return outcome{err: err}
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	var results []fetchResult
	var corsErrors []network.CorsError
	if len(sc.calls) > 0 {
		tb, closeTab, err := openTab(browser, sc.page+"/")
		defer closeTab()
		if err != nil {
			return outcome{err: err}
		}
		if results, err = tb.fetch(sc.calls); err != nil {
			return outcome{err: err}
		}
		corsErrors = tb.waitCORSErrors(len(sc.corsErrors))
	}
	paths := slices.Clone(sc.prime)
	for _, c := range sc.calls {
		u, err := url.Parse(c.URL)
		if err != nil {
			return outcome{err: err}
		}
		if !slices.Contains(paths, u.RequestURI()) {
			paths = append(paths, u.RequestURI())
		}
	}
	return outcome{
		results:    results,
		corsErrors: corsErrors,
		exchanges:  s.log.exchanges(paths...), // recorded before the gateway answered
	}
}

func (s *stack) check(t *testing.T, sc scenario, o outcome) {
	if o.err != nil {
		t.Fatal(o.err)
	}
	got := o.results
	for i := range got {
		if got[i].Message != "" {
			t.Logf("call %d: %s: %s", i, got[i].Error, got[i].Message)
		}
		got[i].Message = ""
		if len(got[i].Headers) == 0 {
			got[i].Headers = nil
		}
	}
	if !reflect.DeepEqual(got, sc.want) {
		t.Errorf("the page saw\n%s\nwant\n%s", results(got), results(sc.want))
	}
	if !slices.Equal(o.corsErrors, sc.corsErrors) {
		t.Errorf("Chromium's CORS errors: %q, want %q", o.corsErrors, sc.corsErrors)
	}
	var described []string
	for _, x := range o.exchanges {
		described = append(described, s.describe(x))
	}
	if !slices.Equal(described, sc.exchanges) {
		t.Errorf("the gateway's exchanges:\n\t%s\nwant\n\t%s",
			strings.Join(described, "\n\t"), strings.Join(sc.exchanges, "\n\t"))
	}
	for _, sh := range sc.sent {
		if sh.Exchange >= len(o.exchanges) {
			t.Errorf("no exchange %d to check %s on", sh.Exchange, sh.Name)
			continue
		}
		if got := o.exchanges[sh.Exchange].header.Values(sh.Name); !slices.Equal(got, sh.Values) {
			t.Errorf("exchange %d: the gateway sent %s: %q, want %q", sh.Exchange, sh.Name, got, sh.Values)
		}
	}
}

func results(rs []fetchResult) string {
	var b strings.Builder
	for i, r := range rs {
		fmt.Fprintf(&b, "\t%d: ok=%t status=%d error=%q headers=%v body=%q\n", i, r.OK, r.Status, r.Error, r.Headers, r.Body)
	}
	return b.String()
}

// Scenario helpers.

func (s *stack) get(path string, read ...string) fetchCall {
	return fetchCall{URL: s.api + path, Read: read}
}

func (s *stack) call(method, path string, headers map[string]string, read ...string) fetchCall {
	return fetchCall{URL: s.api + path, Init: fetchInit{Method: method, Headers: headers}, Read: read}
}

func credentialed(c fetchCall) fetchCall {
	c.Init.Credentials = "include"
	return c
}

func after(pause time.Duration, c fetchCall) fetchCall {
	c.PauseMillis = int(pause.Milliseconds())
	return c
}

// ok is a response the script can read: status 200 and body.
func ok(body string, headers map[string]string) fetchResult {
	return fetchResult{OK: true, Status: 200, Body: body, Headers: headers}
}

// blocked is what a script sees of a request CORS refuses: fetch rejects
// with a TypeError, whatever the server answered.
var blocked = fetchResult{Error: "TypeError"}

// chromiumDefaultPreflightCache is how long Chromium caches a preflight
// answer that has no Access-Control-Max-Age; a pause longer than it shows
// that only max_age_seconds kept the answer cached.
const chromiumDefaultPreflightCache = 5 * time.Second

func (s *stack) scenarios() []scenario {
	preflightPause := chromiumDefaultPreflightCache + 500*time.Millisecond
	return []scenario{
		{
			desc:      "simple GET: no preflight, the response is readable",
			page:      s.app,
			calls:     []fetchCall{s.get("/nocreds/simple", "Content-Type")},
			want:      []fetchResult{ok("GET /nocreds/simple", map[string]string{"Content-Type": textPlain})},
			exchanges: []string{"GET /nocreds/simple from app: upstream 200"},
			sent: []sentHeader{
				{0, "Access-Control-Allow-Origin", []string{s.app}},
				{0, "Access-Control-Allow-Credentials", nil},
				{0, "Vary", []string{"Accept-Encoding", "Origin"}},
			},
		},
		{
			desc: "POST with application/json: a preflight, then the request",
			page: s.app,
			calls: []fetchCall{{URL: s.api + "/nocreds/json", Init: fetchInit{
				Method: "POST", Headers: map[string]string{"Content-Type": "application/json"}, Body: `{"n":1}`,
			}}},
			want: []fetchResult{ok("POST /nocreds/json\nbody: {\"n\":1}", nil)},
			exchanges: []string{
				"OPTIONS /nocreds/json from app asking POST with content-type: answered 204",
				"POST /nocreds/json from app: upstream 200",
			},
			sent: []sentHeader{
				{0, "Access-Control-Allow-Origin", []string{s.app}},
				{0, "Vary", []string{"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"}},
			},
		},
		{
			desc: "PUT with two allowed headers",
			page: s.app,
			calls: []fetchCall{{URL: s.api + "/creds/put", Init: fetchInit{
				Method: "PUT", Headers: map[string]string{"X-Custom": "one", "Content-Type": "application/json"}, Body: `{}`,
			}}},
			want: []fetchResult{ok("PUT /creds/put\nx-custom: one\nbody: {}", nil)},
			exchanges: []string{
				"OPTIONS /creds/put from app asking PUT with content-type,x-custom: answered 204",
				"PUT /creds/put from app: upstream 200",
			},
		},
		{
			desc:  "DELETE with an allowed custom header",
			page:  s.app,
			calls: []fetchCall{s.call("DELETE", "/creds/delete", map[string]string{"X-Custom": "two"})},
			want:  []fetchResult{ok("DELETE /creds/delete\nx-custom: two", nil)},
			exchanges: []string{
				"OPTIONS /creds/delete from app asking DELETE with x-custom: answered 204",
				"DELETE /creds/delete from app: upstream 200",
			},
		},
		{
			desc:       "a header the policy does not allow: the preflight fails and the PUT is never sent",
			page:       s.app,
			calls:      []fetchCall{s.call("PUT", "/creds/other-header", map[string]string{"X-Other": "1"})},
			want:       []fetchResult{blocked},
			corsErrors: []network.CorsError{network.CorsErrorPreflightMissingAllowOriginHeader},
			exchanges:  []string{"OPTIONS /creds/other-header from app asking PUT with x-other: answered 403"},
			sent:       []sentHeader{{0, "Access-Control-Allow-Origin", nil}},
		},
		{
			desc:      "PATCH, where the policy allows it",
			page:      s.app,
			calls:     []fetchCall{s.call("PATCH", "/patch/upper", nil)},
			want:      []fetchResult{ok("PATCH /patch/upper", nil)},
			exchanges: []string{"OPTIONS /patch/upper from app asking PATCH: answered 204", "PATCH /patch/upper from app: upstream 200"},
		},
		{
			// fetch upper-cases only DELETE, GET, HEAD, OPTIONS, POST and PUT.
			desc:       "methods are case-sensitive: a lower-case patch is not PATCH",
			page:       s.app,
			calls:      []fetchCall{s.call("patch", "/patch/lower", nil)},
			want:       []fetchResult{blocked},
			corsErrors: []network.CorsError{network.CorsErrorPreflightMissingAllowOriginHeader},
			exchanges:  []string{"OPTIONS /patch/lower from app asking patch: answered 403"},
		},
		{
			desc:       "a method the policy does not allow: the preflight fails and the PATCH is never sent",
			page:       s.app,
			calls:      []fetchCall{s.call("PATCH", "/creds/patch", nil)},
			want:       []fetchResult{blocked},
			corsErrors: []network.CorsError{network.CorsErrorPreflightMissingAllowOriginHeader},
			exchanges:  []string{"OPTIONS /creds/patch from app asking PATCH: answered 403"},
		},
		{
			desc: "credentials: a cookie the API sets comes back on the next credentialed request",
			page: s.app,
			calls: []fetchCall{
				credentialed(s.get("/creds/cookie/set-cookie")),
				credentialed(s.get("/creds/cookie/echo")),
				s.get("/creds/cookie/uncredentialed"), // credentials: "same-origin", the default
			},
			want: []fetchResult{
				ok("GET /creds/cookie/set-cookie", nil),
				ok("GET /creds/cookie/echo\ncookie: "+sessionCookie, nil),
				ok("GET /creds/cookie/uncredentialed", nil),
			},
			exchanges: []string{
				"GET /creds/cookie/set-cookie from app: upstream 200",
				"GET /creds/cookie/echo from app: upstream 200",
				"GET /creds/cookie/uncredentialed from app: upstream 200",
			},
			sent: []sentHeader{
				{0, "Access-Control-Allow-Origin", []string{s.app}},
				{0, "Access-Control-Allow-Credentials", []string{"true"}},
			},
		},
		{
			desc:  "a credentialed PUT: the preflight allows credentials too",
			page:  s.app,
			calls: []fetchCall{credentialed(s.call("PUT", "/creds/credentialed-put", map[string]string{"X-Custom": "c"}))},
			want:  []fetchResult{ok("PUT /creds/credentialed-put\nx-custom: c", nil)},
			exchanges: []string{
				"OPTIONS /creds/credentialed-put from app asking PUT with x-custom: answered 204",
				"PUT /creds/credentialed-put from app: upstream 200",
			},
			sent: []sentHeader{
				{0, "Access-Control-Allow-Credentials", []string{"true"}},
				{1, "Access-Control-Allow-Credentials", []string{"true"}},
			},
		},
		{
			desc: "a credentialed preflight against a policy without allow_credentials fails",
			page: s.app,
			calls: []fetchCall{credentialed(fetchCall{URL: s.api + "/nocreds/credentialed-post", Init: fetchInit{
				Method: "POST", Headers: map[string]string{"Content-Type": "application/json"}, Body: `{}`,
			}})},
			want:       []fetchResult{blocked},
			corsErrors: []network.CorsError{network.CorsErrorPreflightInvalidAllowCredentials},
			exchanges:  []string{"OPTIONS /nocreds/credentialed-post from app asking POST with content-type: answered 204"},
		},
		{
			desc:       "credentials against a policy without allow_credentials: the browser refuses the response",
			page:       s.app,
			calls:      []fetchCall{credentialed(s.get("/nocreds/credentialed"))},
			want:       []fetchResult{blocked},
			corsErrors: []network.CorsError{network.CorsErrorInvalidAllowCredentials},
			exchanges:  []string{"GET /nocreds/credentialed from app: upstream 200"},
		},
		{
			desc:      "Access-Control-Expose-Headers makes X-Exposed readable, and only it",
			page:      s.app,
			calls:     []fetchCall{s.get("/creds/expose", "X-Exposed", "X-Hidden")},
			want:      []fetchResult{ok("GET /creds/expose", map[string]string{"X-Exposed": exposedValue, "X-Hidden": noHeader})},
			exchanges: []string{"GET /creds/expose from app: upstream 200"},
			sent:      []sentHeader{{0, "Access-Control-Expose-Headers", []string{"X-Exposed"}}},
		},
		{
			desc:      "without Access-Control-Expose-Headers X-Exposed stays hidden",
			page:      s.app,
			calls:     []fetchCall{s.get("/nocreds/expose", "X-Exposed", "Content-Type")},
			want:      []fetchResult{ok("GET /nocreds/expose", map[string]string{"X-Exposed": noHeader, "Content-Type": textPlain})},
			exchanges: []string{"GET /nocreds/expose from app: upstream 200"},
			sent:      []sentHeader{{0, "Access-Control-Expose-Headers", nil}},
		},
		{
			desc:       "an origin the policy does not list: the response goes out with Vary only, the browser blocks it",
			page:       s.evil,
			calls:      []fetchCall{s.get("/creds/evil")},
			want:       []fetchResult{blocked},
			corsErrors: []network.CorsError{network.CorsErrorMissingAllowOriginHeader},
			exchanges:  []string{"GET /creds/evil from evil: upstream 200"},
			sent: []sentHeader{
				{0, "Access-Control-Allow-Origin", nil},
				{0, "Vary", []string{"Accept-Encoding", "Origin"}},
			},
		},
		{
			desc:       "reject_disallowed_origins: the gateway answers 403 and the request never reaches the upstream",
			page:       s.evil,
			calls:      []fetchCall{s.get("/strict/evil")},
			want:       []fetchResult{blocked},
			corsErrors: []network.CorsError{network.CorsErrorMissingAllowOriginHeader},
			exchanges:  []string{"GET /strict/evil from evil: answered 403"},
		},
		{
			desc:      "reject_disallowed_origins lets the listed origin through",
			page:      s.app,
			calls:     []fetchCall{s.get("/strict/app")},
			want:      []fetchResult{ok("GET /strict/app", nil)},
			exchanges: []string{"GET /strict/app from app: upstream 200"},
		},
		{
			desc:       "an origin the policy does not list, preflighted: the PUT is never sent",
			page:       s.evil,
			calls:      []fetchCall{s.call("PUT", "/creds/evil-put", map[string]string{"X-Custom": "1"})},
			want:       []fetchResult{blocked},
			corsErrors: []network.CorsError{network.CorsErrorPreflightMissingAllowOriginHeader},
			exchanges:  []string{"OPTIONS /creds/evil-put from evil asking PUT with x-custom: answered 403"},
		},
		{
			desc:      "a subdomain matching a wildcard pattern is allowed",
			page:      s.tenant,
			calls:     []fetchCall{s.get("/wild/sub")},
			want:      []fetchResult{ok("GET /wild/sub", nil)},
			exchanges: []string{"GET /wild/sub from tenant: upstream 200"},
			sent:      []sentHeader{{0, "Access-Control-Allow-Origin", []string{s.tenant}}},
		},
		{
			desc:      "a wildcard pattern matches more than one label",
			page:      s.deep,
			calls:     []fetchCall{s.get("/wild/deep")},
			want:      []fetchResult{ok("GET /wild/deep", nil)},
			exchanges: []string{"GET /wild/deep from deep: upstream 200"},
			sent:      []sentHeader{{0, "Access-Control-Allow-Origin", []string{s.deep}}},
		},
		{
			desc:       "a wildcard pattern does not match the apex",
			page:       s.apex,
			calls:      []fetchCall{s.get("/wild/apex")},
			want:       []fetchResult{blocked},
			corsErrors: []network.CorsError{network.CorsErrorMissingAllowOriginHeader},
			exchanges:  []string{"GET /wild/apex from apex: upstream 200"},
		},
		{
			desc:       "a wildcard pattern does not match another port",
			page:       s.evil,
			calls:      []fetchCall{s.get("/wild/other-port")},
			want:       []fetchResult{blocked},
			corsErrors: []network.CorsError{network.CorsErrorMissingAllowOriginHeader},
			exchanges:  []string{"GET /wild/other-port from evil: upstream 200"},
		},
		{
			desc:      "a * policy allows any origin",
			page:      s.evil,
			calls:     []fetchCall{s.get("/star/get", "X-Exposed")},
			want:      []fetchResult{ok("GET /star/get", map[string]string{"X-Exposed": exposedValue})},
			exchanges: []string{"GET /star/get from evil: upstream 200"},
			sent: []sentHeader{
				{0, "Access-Control-Allow-Origin", []string{"*"}},
				{0, "Vary", []string{"Accept-Encoding"}},
			},
		},
		{
			desc:  "a * policy with allowed_headers * lets any header through a preflight",
			page:  s.evil,
			calls: []fetchCall{s.call("PUT", "/star/put", map[string]string{"X-Custom": "any"})},
			want:  []fetchResult{ok("PUT /star/put\nx-custom: any", nil)},
			exchanges: []string{
				"OPTIONS /star/put from evil asking PUT with x-custom: answered 204",
				"PUT /star/put from evil: upstream 200",
			},
		},
		{
			desc:       "allowed_headers * does not cover Authorization",
			page:       s.evil,
			calls:      []fetchCall{s.call("PUT", "/star/authorization", map[string]string{"Authorization": "Bearer t"})},
			want:       []fetchResult{blocked},
			corsErrors: []network.CorsError{network.CorsErrorPreflightMissingAllowOriginHeader},
			exchanges:  []string{"OPTIONS /star/authorization from evil asking PUT with authorization: answered 403"},
		},
		{
			desc:       "a * policy and a credentialed request: the browser refuses Access-Control-Allow-Origin: *",
			page:       s.evil,
			calls:      []fetchCall{credentialed(s.get("/star/credentialed"))},
			want:       []fetchResult{blocked},
			corsErrors: []network.CorsError{network.CorsErrorWildcardOriginNotAllowed},
			exchanges:  []string{"GET /star/credentialed from evil: upstream 200"},
		},
		{
			desc: "max_age_seconds: a second PUT, past Chromium's default 5 s, sends no preflight",
			page: s.app,
			calls: []fetchCall{
				s.call("PUT", "/cached/put", nil),
				after(preflightPause, s.call("PUT", "/cached/put", nil)),
			},
			want: []fetchResult{ok("PUT /cached/put", nil), ok("PUT /cached/put", nil)},
			exchanges: []string{
				"OPTIONS /cached/put from app asking PUT: answered 204",
				"PUT /cached/put from app: upstream 200",
				"PUT /cached/put from app: upstream 200",
			},
			sent: []sentHeader{{0, "Access-Control-Max-Age", []string{"600"}}},
		},
		{
			desc: "no max_age_seconds: the same second PUT sends a new preflight",
			page: s.app,
			calls: []fetchCall{
				s.call("PUT", "/uncached/put", nil),
				after(preflightPause, s.call("PUT", "/uncached/put", nil)),
			},
			want: []fetchResult{ok("PUT /uncached/put", nil), ok("PUT /uncached/put", nil)},
			exchanges: []string{
				"OPTIONS /uncached/put from app asking PUT: answered 204",
				"PUT /uncached/put from app: upstream 200",
				"OPTIONS /uncached/put from app asking PUT: answered 204",
				"PUT /uncached/put from app: upstream 200",
			},
			sent: []sentHeader{{0, "Access-Control-Max-Age", nil}},
		},
		{
			desc:      "an upstream that answers CORS itself: the service's headers replace its own",
			page:      s.app,
			calls:     []fetchCall{s.get("/conflict/get", "X-Exposed", "X-Hidden")},
			want:      []fetchResult{ok("GET /conflict/get", map[string]string{"X-Exposed": exposedValue, "X-Hidden": noHeader})},
			exchanges: []string{"GET /conflict/get from app: upstream 200"},
			sent: []sentHeader{
				{0, "Access-Control-Allow-Origin", []string{s.app}},
				{0, "Access-Control-Expose-Headers", []string{"X-Exposed"}},
				{0, "Vary", []string{"Accept-Encoding", "Origin"}},
			},
		},
		{
			desc:       "report_only: the service decides but changes nothing, so the browser blocks",
			page:       s.app,
			calls:      []fetchCall{s.get("/report/get")},
			want:       []fetchResult{blocked},
			corsErrors: []network.CorsError{network.CorsErrorMissingAllowOriginHeader},
			exchanges:  []string{"GET /report/get from app: upstream 200"},
			sent: []sentHeader{
				{0, "Access-Control-Allow-Origin", nil},
				{0, "Vary", []string{"Accept-Encoding"}},
			},
		},
		{
			desc:       "report_only: a preflight goes upstream too, which does not answer CORS",
			page:       s.app,
			calls:      []fetchCall{s.call("PUT", "/report/put", nil)},
			want:       []fetchResult{blocked},
			corsErrors: []network.CorsError{network.CorsErrorPreflightMissingAllowOriginHeader},
			exchanges:  []string{"OPTIONS /report/put from app asking PUT: upstream 200"},
			elsewhere: map[gatewayKind]variant{
				// NGINX sends every preflight to corsauthz, whose 200 goes
				// to the browser as it is.
				nginxGateway: {exchanges: []string{"OPTIONS /report/put from app asking PUT: answered 200"}},
			},
		},
		{
			desc:       "an upstream's own Access-Control-Allow-Origin: * never reaches the browser for an origin not allowed",
			page:       s.evil,
			calls:      []fetchCall{s.get("/upstream-star/evil")},
			want:       []fetchResult{blocked},
			corsErrors: []network.CorsError{network.CorsErrorMissingAllowOriginHeader},
			exchanges:  []string{"GET /upstream-star/evil from evil: upstream 200"},
			sent: []sentHeader{
				{0, "Access-Control-Allow-Origin", nil},
				{0, "Vary", []string{"Accept-Encoding", "Origin"}},
			},
		},
		{
			desc:      "an upstream's own Access-Control-Allow-Origin: * is removed from a response without Origin, which gets Vary: Origin",
			page:      s.app,
			prime:     []string{"/upstream-star/no-origin"},
			exchanges: []string{"GET /upstream-star/no-origin: upstream 200"},
			sent: []sentHeader{
				{0, "Access-Control-Allow-Origin", nil},
				{0, "Vary", []string{"Accept-Encoding", "Origin"}},
			},
		},
		{
			desc:  "cache: an answer cached for a request without Origin is not handed to a later fetch, thanks to Vary: Origin",
			page:  s.app,
			prime: []string{"/cache-listed/cacheable/data"},
			calls: []fetchCall{s.get("/cache-listed/cacheable/data")},
			want:  []fetchResult{ok("GET /cache-listed/cacheable/data", nil)},
			exchanges: []string{
				"GET /cache-listed/cacheable/data: upstream 200",
				"GET /cache-listed/cacheable/data from app: upstream 200",
			},
			sent: []sentHeader{
				{0, "Vary", []string{"Origin"}},
				{0, "Access-Control-Allow-Origin", nil},
				{1, "Access-Control-Allow-Origin", []string{s.app}},
			},
		},
		{
			desc:       "cache: a cache that ignored Vary would hand the answer without Origin to the fetch, which fails",
			page:       s.app,
			prime:      []string{"/cache-broken/cacheable/data"},
			calls:      []fetchCall{s.get("/cache-broken/cacheable/data")},
			want:       []fetchResult{blocked},
			corsErrors: []network.CorsError{network.CorsErrorMissingAllowOriginHeader},
			exchanges: []string{
				"GET /cache-broken/cacheable/data: upstream 200",
				"GET /cache-broken/cacheable/data from app: cache hit 200",
			},
		},
		{
			desc:  "cache: under a * policy the answer without Origin carries Access-Control-Allow-Origin: *, so the cached copy serves any page",
			page:  s.evil,
			prime: []string{"/cache-star/cacheable/data"},
			calls: []fetchCall{s.get("/cache-star/cacheable/data", "X-Exposed")},
			want:  []fetchResult{ok("GET /cache-star/cacheable/data", map[string]string{"X-Exposed": exposedValue})},
			exchanges: []string{
				"GET /cache-star/cacheable/data: upstream 200",
				"GET /cache-star/cacheable/data from evil: cache hit 200",
			},
			sent: []sentHeader{
				{0, "Access-Control-Allow-Origin", []string{"*"}},
				{0, "Vary", nil},
			},
		},
		{
			desc: "a shared match: the app's own page, with cookies, gets the app's policy",
			page: s.app,
			calls: []fetchCall{
				credentialed(s.get("/shared/orders/set-cookie")),
				credentialed(s.call("PUT", "/shared/orders/echo", nil)),
			},
			want: []fetchResult{
				ok("GET /shared/orders/set-cookie", nil),
				ok("PUT /shared/orders/echo\ncookie: "+sessionCookie, nil),
			},
			exchanges: []string{
				"GET /shared/orders/set-cookie from app: upstream 200",
				"OPTIONS /shared/orders/echo from app asking PUT: answered 204",
				"PUT /shared/orders/echo from app: upstream 200",
			},
			sent: []sentHeader{
				{0, "Access-Control-Allow-Origin", []string{s.app}},
				{0, "Access-Control-Allow-Credentials", []string{"true"}},
				{1, "Access-Control-Allow-Credentials", []string{"true"}},
			},
		},
		{
			desc: "a shared match: a partner's page, on the same path, gets the partners' policy, without credentials",
			page: s.evil,
			calls: []fetchCall{
				s.get("/shared/orders/partner"),
				credentialed(s.get("/shared/orders/partner-credentialed")),
				s.call("PUT", "/shared/orders/partner-put", nil),
			},
			want:       []fetchResult{ok("GET /shared/orders/partner", nil), blocked, blocked},
			corsErrors: []network.CorsError{network.CorsErrorInvalidAllowCredentials, network.CorsErrorPreflightMissingAllowOriginHeader},
			exchanges: []string{
				"GET /shared/orders/partner from evil: upstream 200",
				"GET /shared/orders/partner-credentialed from evil: upstream 200",
				"OPTIONS /shared/orders/partner-put from evil asking PUT: answered 403",
			},
			sent: []sentHeader{
				{0, "Access-Control-Allow-Origin", []string{s.evil}},
				{0, "Access-Control-Allow-Credentials", nil},
			},
		},
		{
			desc:      "a group named by the route's cors_policy: the partner's origin picks the partners' policy",
			page:      s.evil,
			calls:     []fetchCall{s.get("/named-group/x")},
			want:      []fetchResult{ok("GET /named-group/x", nil)},
			exchanges: []string{"GET /named-group/x from evil: upstream 200"},
			sent:      []sentHeader{{0, "Access-Control-Allow-Origin", []string{s.evil}}},
		},
		{
			desc:      "the gateway's own error answer (upstream down) carries the CORS headers, so the page can read it",
			page:      s.app,
			calls:     []fetchCall{s.get("/down/get")},
			want:      []fetchResult{{Status: 503}},
			exchanges: []string{"GET /down/get from app: upstream failed, answered 503"},
			sent:      []sentHeader{{0, "Access-Control-Allow-Origin", []string{s.app}}},
			elsewhere: map[gatewayKind]variant{
				// NGINX answers 502, with add_header ... always putting
				// corsauthz's headers on it.
				nginxGateway: {
					want:      []fetchResult{{Status: 502, Body: nginx502Body}},
					exchanges: []string{"GET /down/get from app: answered 502"},
				},
				// Caddy's own 502, made Envoy's 503 by handle_errors in the
				// Caddyfile; the module's CORS headers stay on it.
				caddyGateway: {exchanges: []string{"GET /down/get from app: answered 503"}},
			},
		},
		{
			desc:       "a route naming a policy the service does not have fails closed",
			page:       s.app,
			calls:      []fetchCall{s.get("/mismatch/get")},
			want:       []fetchResult{blocked},
			corsErrors: []network.CorsError{network.CorsErrorMissingAllowOriginHeader},
			exchanges:  []string{"GET /mismatch/get from app: Check failed (FailedPrecondition), answered 403"},
			elsewhere: map[gatewayKind]variant{
				// corsauthz's 503 is an error to auth_request: NGINX
				// answers 500.
				nginxGateway: {exchanges: []string{"GET /mismatch/get from app: answered 500"}},
				// Caddy refuses to start with a route naming a policy
				// corsauthz does not have (TestCaddyRefusesBadDirective), so
				// the Caddyfile has no such route: its catch-all 404, without
				// CORS headers, is what the page is refused.
				caddyGateway: {exchanges: []string{"GET /mismatch/get from app: answered 404"}},
			},
		},
	}
}

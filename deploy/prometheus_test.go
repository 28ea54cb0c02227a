package deploy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/corsauthz/corsauthz/internal/freeport"
)

// prometheusEnv makes a missing prometheus or promtool a failure instead
// of a skip: CI installs Debian's prometheus package and sets
// CORSAUTHZ_E2E_PROMETHEUS=require.
const prometheusEnv = "CORSAUTHZ_E2E_PROMETHEUS"

// needPrometheusTool returns the path of name (prometheus or promtool), or
// skips the test (fails it, with CORSAUTHZ_E2E_PROMETHEUS=require).
func needPrometheusTool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	msg := "no " + name + " found (apt-get install prometheus: Debian's package has both prometheus and promtool)"
	if os.Getenv(prometheusEnv) == "require" {
		t.Fatalf("%s; %s=require makes this a failure", msg, prometheusEnv)
	}
	t.Skipf("%s; set %s=require to make this a failure", msg, prometheusEnv)
	return ""
}

// runPromtool runs promtool in dir and fails the test with its output
// when it fails.
func runPromtool(t *testing.T, dir string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, needPrometheusTool(t, "promtool"), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestPrometheusRules: the rules load, and each alert fires on the series
// its unit tests say it must, and not on the others.
func TestPrometheusRules(t *testing.T) {
	t.Parallel()
	t.Log(runPromtool(t, "prometheus", "check", "rules", filepath.Base(rulesFile)))
	t.Log(runPromtool(t, "prometheus", "test", "rules", filepath.Base(rulesTestFile)))
}

// operationsDoc is the page that says what to do when each alert fires.
const (
	operationsDoc    = "../docs/operations.md"
	operationsDocURL = "https://github.com/corsauthz/corsauthz/blob/main/docs/operations.md"
)

// rulesTests is the part of a promtool unit test file read here.
type rulesTests struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		Name           string `yaml:"name"`
		AlertRuleTests []struct {
			Alertname string `yaml:"alertname"`
			ExpAlerts []any  `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// TestPrometheusRulesComplete: every alert says how bad it is and links
// its section of the operations page, which exists; and its unit tests
// show it both firing and staying quiet.
func TestPrometheusRulesComplete(t *testing.T) {
	t.Parallel()
	doc := string(readFile(t, operationsDoc))
	var tests rulesTests
	if err := yaml.Unmarshal(readFile(t, rulesTestFile), &tests); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tests.RuleFiles, []string{filepath.Base(rulesFile)}) {
		t.Errorf("%s tests %v, want [%s]", rulesTestFile, tests.RuleFiles, filepath.Base(rulesFile))
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTests {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	alerts := 0
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts++
			if sev := r.Labels["severity"]; sev != "warning" && sev != "critical" {
				t.Errorf("%s: severity %q, want warning or critical", r.Alert, sev)
			}
			for _, a := range []string{"summary", "description"} {
				if r.Annotations[a] == "" {
					t.Errorf("%s has no %s", r.Alert, a)
				}
			}
			anchor := strings.ToLower(r.Alert)
			if want := operationsDocURL + "#" + anchor; r.Annotations["runbook_url"] != want {
				t.Errorf("%s: runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], want)
			}
			if !strings.Contains(doc, "\n### "+r.Alert+"\n") {
				t.Errorf("%s has no section \"### %s\" in docs/operations.md", r.Alert, r.Alert)
			}
			if !fires[r.Alert] || !quiet[r.Alert] {
				t.Errorf("%s: its unit tests show it firing: %v, quiet: %v; want both", r.Alert, fires[r.Alert], quiet[r.Alert])
			}
		}
	}
	if alerts == 0 {
		t.Fatal("no alerts")
	}
}

// e2eAlerts says, for every alert, whether the end-to-end stack makes it
// fire. For one that cannot, signal is the part of its expression that
// must still return data (the series exist, with the labels the
// expression matches on), and why says why it stays quiet.
var e2eAlerts = map[string]struct {
	fires  bool
	signal string
	why    string
}{
	"CorsauthzConfigReloadFailing":   {fires: true},
	"CorsauthzAuthorizerErrors":      {fires: true},
	"CorsauthzAuthorizerSlow":        {fires: true},
	"CorsauthzRefusalsSpike":         {fires: true},
	"CorsauthzCertificateExpiring":   {fires: true},
	"CorsauthzGatewayConfigStale":    {signal: "corsauthz_gateway_xds_staleness_seconds", why: "it needs a gateway without its stream for 300 s; the stack's second subscription has had none only since the test started"},
	"CorsauthzGatewayConfigRejected": {signal: "corsauthz_xds_versions_nacked_total", why: "a gateway compiles what corsauthz compiled, so one of the same version never NACKs; the promtool tests make it fire"},
	"CorsauthzMemoryNearLimit":       {signal: "process_resident_memory_bytes / go_gc_gomemlimit_bytes", why: "corsauthz stays well under 90 % of its 128 MiB GOMEMLIMIT under this load"},
	"CorsauthzNoReadyReplicas":       {why: "its series come from kube-state-metrics, and there is no Kubernetes here"},
}

// e2eRateInterval replaces Grafana's $__rate_interval: at least four
// scrape intervals (1 s here), as Grafana computes it.
const e2eRateInterval = "10s"

// TestPrometheusEndToEnd: a real Prometheus scrapes a running corsauthz
// and a gateway under a short load with an authorizer (which times out
// and denies now and then), a reload and a refused reload, with the
// alert rules loaded; then every dashboard query and every alert
// expression is asked of Prometheus' HTTP API.
func TestPrometheusEndToEnd(t *testing.T) {
	t.Parallel()
	bin := needPrometheusTool(t, "prometheus")
	start := time.Now()
	s := startStack(t, stackOptions{tls: true})
	prom := startPrometheus(t, bin, s)
	t.Logf("stack and Prometheus up in %v", time.Since(start).Round(time.Millisecond))

	// The timeline: a reload at a quarter, a refused one at half, and
	// enough samples for every rate and a few rule evaluations after.
	loadFor := 18 * time.Second
	png := os.Getenv(dashboardPNGEnv)
	if png != "" {
		loadFor = 3 * time.Minute // a picture with some history
	}
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), loadFor+time.Minute)
	defer cancel()
	loadDone := make(chan [2]int64, 1)
	go func() {
		sent, failed := s.load(ctx, 2)
		loadDone <- [2]int64{sent, failed}
	}()
	time.Sleep(loadFor / 4)
	s.writeConfig(t, stackConfig(s.authorizer.srv.URL, true))
	waitMetric(t, s.adminAddr, `corsauthz_config_reloads_total{result="success"}`, func(v float64) bool { return v >= 1 })
	time.Sleep(time.Until(t0.Add(loadFor / 2)))
	s.writeConfig(t, stackBadConfig)
	waitMetric(t, s.adminAddr, `corsauthz_config_reloads_total{result="failure"}`, func(v float64) bool { return v >= 1 })
	time.Sleep(time.Until(t0.Add(loadFor)))

	// The dashboard: every query returns data.
	replacer := strings.NewReplacer(
		"${__rate_interval}", e2eRateInterval, "$__rate_interval", e2eRateInterval,
		"${job}", "corsauthz", "$job", "corsauthz",
		"${gateway_job}", "gateway", "$gateway_job", "gateway",
	)
	for _, q := range loadDashboard(t).queries() {
		expr := replacer.Replace(q.expr)
		if strings.Contains(expr, "$") {
			t.Errorf("%s: a variable is left in %s", q.where, expr)
			continue
		}
		n, err := prom.queryRange(expr, t0, time.Now())
		switch {
		case err != nil:
			t.Errorf("%s: %v", q.where, err)
		case n == 0:
			t.Errorf("%s returned no data: %s", q.where, expr)
		}
	}

	// The alerts: those the stack provokes return data (and Prometheus
	// has them pending or firing); the others are empty, for the reason
	// given, while their signal returns data.
	states, err := prom.ruleStates()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			seen[r.Alert] = true
			want, ok := e2eAlerts[r.Alert]
			if !ok {
				t.Errorf("%s: say in e2eAlerts whether the stack makes it fire", r.Alert)
				continue
			}
			st := states[r.Alert]
			if st.health != "ok" {
				t.Errorf("%s: Prometheus evaluates it with health %q: %s", r.Alert, st.health, st.lastError)
			}
			expr := r.Expr.String()
			n, err := prom.queryRange(expr, t0, time.Now())
			if err != nil {
				t.Errorf("%s: %v", r.Alert, err)
				continue
			}
			switch {
			case want.fires && n == 0:
				t.Errorf("%s returned no data, though the stack provokes it: %s", r.Alert, expr)
			case want.fires && st.state == "inactive":
				t.Errorf("%s returns data but Prometheus has it inactive", r.Alert)
			case want.fires:
				t.Logf("%s: %s, as provoked", r.Alert, st.state)
			case n > 0:
				t.Errorf("%s returned data, though it should stay quiet here (%s): %s", r.Alert, want.why, expr)
			default:
				t.Logf("%s: quiet, as expected: %s", r.Alert, want.why)
			}
			if want.signal != "" {
				if !strings.Contains(expr, want.signal) {
					t.Errorf("%s: its expression no longer contains the signal %q", r.Alert, want.signal)
				}
				if n, err := prom.queryRange(want.signal, t0, time.Now()); err != nil || n == 0 {
					t.Errorf("%s: its signal %s returned no data (%v)", r.Alert, want.signal, err)
				} else if v, err := prom.maxValue(want.signal, t0, time.Now()); err == nil {
					t.Logf("%s: signal %s peaks at %.4g", r.Alert, want.signal, v)
				}
			}
		}
	}
	for name := range e2eAlerts {
		if !seen[name] {
			t.Errorf("e2eAlerts names %s, which is not in %s", name, rulesFile)
		}
	}

	if png != "" {
		renderDashboardPNG(t, prom, loadDashboard(t), replacer, t0, time.Now(), png)
	}
	cancel()
	counts := <-loadDone
	t.Logf("load: %d requests over %v, %d not sent; the authorizer answered %d calls; whole test %v",
		counts[0], time.Since(t0).Round(time.Millisecond), counts[1], s.authorizer.calls.Load(), time.Since(start).Round(time.Millisecond))
	if counts[1] > counts[0]/100 {
		t.Errorf("%d of %d requests could not be sent", counts[1], counts[0])
	}
}

// promServer is a running Prometheus.
type promServer struct {
	base string // http://host:port
}

// startPrometheus runs Prometheus on loopback with the shipped rules,
// scraping the stack's corsauthz (job corsauthz) and gateway (job
// gateway) every second, and waits until it has scraped both.
func startPrometheus(t *testing.T, bin string, s *stack) *promServer {
	t.Helper()
	dir := t.TempDir()
	rules, err := filepath.Abs(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: corsauthz
    static_configs: [{targets: [%q]}]
  - job_name: gateway
    static_configs: [{targets: [%q]}]
`, rules, s.adminAddr, s.gatewayAddr)
	configPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeport.Addr(t)
	out := &syncBuffer{}
	cmd := exec.Command(bin,
		"--config.file="+configPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("Prometheus' log:\n%s", out)
		}
	})
	// Ready, and both targets scraped: Prometheus' service discovery
	// hands targets to the scrapers only some seconds after it starts.
	p := &promServer{base: "http://" + addr}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if n, err := p.queryRange(`sum(up{job=~"corsauthz|gateway"}) == 2`, time.Now(), time.Now()); err == nil && n > 0 {
			return p
		}
		select {
		case <-exited:
			t.Fatalf("prometheus exited:\n%s", out)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus has not scraped both targets after 30 s:\n%s", out)
		}
	}
}

// promResult is a /api/v1/query_range answer.
type promResult struct {
	Status    string `json:"status"`
	Error     string `json:"error"`
	ErrorType string `json:"errorType"`
	Data      struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Values [][2]any          `json:"values"`
		} `json:"result"`
	} `json:"data"`
}

func (p *promServer) get(path string, params url.Values, v any) error {
	resp, err := http.Get(p.base + path + "?" + params.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("%s: %s: %w", path, resp.Status, err)
	}
	return nil
}

func (p *promServer) rangeQuery(expr string, from, to time.Time) (*promResult, error) {
	var r promResult
	err := p.get("/api/v1/query_range", url.Values{
		"query": {expr},
		"start": {strconv.FormatInt(from.Unix(), 10)},
		"end":   {strconv.FormatInt(to.Unix()+1, 10)},
		"step":  {"1"},
	}, &r)
	if err != nil {
		return nil, err
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s: %s", r.ErrorType, r.Error)
	}
	return &r, nil
}

// queryRange returns how many points of expr between from and to are
// numbers (not NaN).
func (p *promServer) queryRange(expr string, from, to time.Time) (int, error) {
	r, err := p.rangeQuery(expr, from, to)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, series := range r.Data.Result {
		for _, v := range series.Values {
			if f, err := strconv.ParseFloat(fmt.Sprint(v[1]), 64); err == nil && !math.IsNaN(f) {
				n++
			}
		}
	}
	return n, nil
}

// maxValue returns the largest value of expr between from and to.
func (p *promServer) maxValue(expr string, from, to time.Time) (float64, error) {
	r, err := p.rangeQuery(expr, from, to)
	if err != nil {
		return 0, err
	}
	m := math.Inf(-1)
	for _, series := range r.Data.Result {
		for _, v := range series.Values {
			if f, err := strconv.ParseFloat(fmt.Sprint(v[1]), 64); err == nil && !math.IsNaN(f) {
				m = max(m, f)
			}
		}
	}
	return m, nil
}

type ruleState struct {
	state, health, lastError string
}

// ruleStates returns each alerting rule's state (inactive, pending,
// firing) and health, by alert name.
func (p *promServer) ruleStates() (map[string]ruleState, error) {
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Groups []struct {
				Rules []struct {
					Name      string `json:"name"`
					Type      string `json:"type"`
					State     string `json:"state"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := p.get("/api/v1/rules", url.Values{"type": {"alert"}}, &r); err != nil {
		return nil, err
	}
	states := map[string]ruleState{}
	for _, g := range r.Data.Groups {
		for _, rule := range g.Rules {
			states[rule.Name] = ruleState{rule.State, rule.Health, rule.LastError}
		}
	}
	if len(states) == 0 {
		return nil, fmt.Errorf("Prometheus loaded no alerting rule")
	}
	return states, nil
}

package deploy_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	sigsyaml "sigs.k8s.io/yaml"
)

const (
	dashboardFile = "grafana/corsauthz.json"
	rulesFile     = "prometheus/corsauthz.rules.yaml"
	rulesTestFile = "prometheus/corsauthz.rules.test.yaml"
)

// dashboard is the part of a Grafana dashboard these tests read.
type dashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Templating struct {
		List []dashboardVariable `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []dashboardAnnotation `json:"list"`
	} `json:"annotations"`
	Panels []dashboardPanel `json:"panels"`
}

type dashboardDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type dashboardVariable struct {
	Name       string               `json:"name"`
	Type       string               `json:"type"`
	Query      json.RawMessage      `json:"query"`
	Definition string               `json:"definition"`
	Datasource *dashboardDatasource `json:"datasource"`
}

type dashboardAnnotation struct {
	Name       string               `json:"name"`
	BuiltIn    int                  `json:"builtIn"`
	Datasource *dashboardDatasource `json:"datasource"`
	Expr       string               `json:"expr"`
}

type dashboardPanel struct {
	ID         int                  `json:"id"`
	Type       string               `json:"type"`
	Title      string               `json:"title"`
	Datasource *dashboardDatasource `json:"datasource"`
	GridPos    struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID        string               `json:"refId"`
		Expr         string               `json:"expr"`
		LegendFormat string               `json:"legendFormat"`
		Datasource   *dashboardDatasource `json:"datasource"`
	} `json:"targets"`
	FieldConfig struct {
		Defaults struct {
			Unit     string `json:"unit"`
			Mappings []struct {
				Options map[string]struct {
					Text  string `json:"text"`
					Color string `json:"color"`
				} `json:"options"`
			} `json:"mappings"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Panels []dashboardPanel `json:"panels"` // a collapsed row's
}

// dashboardDatasourceUID is how every query names the data source: the
// dashboard's datasource variable, so that it works with any Prometheus.
const dashboardDatasourceUID = "${datasource}"

// dashboardQuery is a PromQL query of the dashboard and where it is.
type dashboardQuery struct {
	where string // panel title and refId, or annotation or variable name
	expr  string
}

func loadDashboard(t *testing.T) *dashboard {
	t.Helper()
	var d dashboard
	if err := json.Unmarshal(readFile(t, dashboardFile), &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return &d
}

// allPanels returns the panels, those of collapsed rows included.
func (d *dashboard) allPanels() []dashboardPanel {
	var out []dashboardPanel
	for _, p := range d.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	return out
}

// labelValuesQuery matches a query variable's label_values(metric, label).
var labelValuesQuery = regexp.MustCompile(`^label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// queries returns every PromQL query: panel targets, annotations, and
// the metric of each label_values variable.
func (d *dashboard) queries() []dashboardQuery {
	var qs []dashboardQuery
	for _, p := range d.allPanels() {
		for _, tg := range p.Targets {
			qs = append(qs, dashboardQuery{fmt.Sprintf("panel %q query %s", p.Title, tg.RefID), tg.Expr})
		}
	}
	for _, a := range d.Annotations.List {
		if a.BuiltIn == 0 {
			qs = append(qs, dashboardQuery{fmt.Sprintf("annotation %q", a.Name), a.Expr})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			if m := labelValuesQuery.FindStringSubmatch(v.Definition); m != nil {
				qs = append(qs, dashboardQuery{fmt.Sprintf("variable %q", v.Name), m[1]})
			}
		}
	}
	return qs
}

// grafanaBuiltins are the variables Grafana defines itself.
var grafanaBuiltins = []string{"__rate_interval", "__interval", "__range", "__range_s", "__interval_ms"}

var dashboardVariableRef = regexp.MustCompile(`\$\{?([a-zA-Z_][a-zA-Z0-9_]*)`)

func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	d := loadDashboard(t)
	if d.Title == "" || d.UID == "" {
		t.Errorf("title %q, uid %q: both are needed to import and link the dashboard", d.Title, d.UID)
	}

	vars := map[string]dashboardVariable{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	ds, ok := vars["datasource"]
	var dsQuery string
	if ok {
		json.Unmarshal(ds.Query, &dsQuery)
	}
	if !ok || ds.Type != "datasource" || dsQuery != "prometheus" {
		t.Fatalf("no datasource variable of type datasource for prometheus: %+v", ds)
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		if v.Datasource == nil || v.Datasource.UID != dashboardDatasourceUID {
			t.Errorf("variable %q asks data source %+v, want %s", v.Name, v.Datasource, dashboardDatasourceUID)
		}
		if !labelValuesQuery.MatchString(v.Definition) {
			t.Errorf("variable %q: definition %q is not label_values(metric, label)", v.Name, v.Definition)
		}
	}

	ids := map[int]string{}
	titles := map[string]bool{}
	type cell struct{ x, y int }
	grid := map[cell]string{}
	graphs := 0
	for _, p := range d.allPanels() {
		if other, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share the id %d", p.Title, other, p.ID)
		}
		ids[p.ID] = p.Title
		if titles[p.Title] {
			t.Errorf("two panels are titled %q", p.Title)
		}
		titles[p.Title] = true
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v is outside the 24 columns", p.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, taken := grid[cell{x, y}]; taken {
					t.Errorf("panels %q and %q overlap at column %d, row %d", p.Title, other, x, y)
					x, y = g.X+g.W, g.Y+g.H // once a pair
				} else {
					grid[cell{x, y}] = p.Title
				}
			}
		}
		if p.Type == "row" {
			continue
		}
		graphs++
		if p.Datasource == nil || p.Datasource.UID != dashboardDatasourceUID || p.Datasource.Type != "prometheus" {
			t.Errorf("panel %q: data source %+v, want prometheus %s", p.Title, p.Datasource, dashboardDatasourceUID)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refIDs := map[string]bool{}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q query %s is empty", p.Title, tg.RefID)
			}
			if tg.RefID == "" || refIDs[tg.RefID] {
				t.Errorf("panel %q: refId %q is empty or repeated", p.Title, tg.RefID)
			}
			refIDs[tg.RefID] = true
			if tg.Datasource == nil || tg.Datasource.UID != dashboardDatasourceUID {
				t.Errorf("panel %q query %s: data source %+v, want %s", p.Title, tg.RefID, tg.Datasource, dashboardDatasourceUID)
			}
		}
	}
	if graphs < 10 {
		t.Errorf("only %d panels", graphs)
	}
	for _, a := range d.Annotations.List {
		if a.BuiltIn == 0 && (a.Datasource == nil || a.Datasource.UID != dashboardDatasourceUID || a.Expr == "") {
			t.Errorf("annotation %q: data source %+v, expr %q", a.Name, a.Datasource, a.Expr)
		}
	}

	// Every $variable a query uses is defined, and the job variables are
	// used: a panel that ignores $job mixes two installations.
	used := map[string]bool{}
	for _, q := range d.queries() {
		for _, m := range dashboardVariableRef.FindAllStringSubmatch(q.expr, -1) {
			used[m[1]] = true
			if _, ok := vars[m[1]]; !ok && !slices.Contains(grafanaBuiltins, m[1]) {
				t.Errorf("%s uses $%s, which is not defined", q.where, m[1])
			}
		}
		if strings.Contains(q.expr, "corsauthz_") && !strings.Contains(q.expr, "job=~\"$") && !strings.HasPrefix(q.where, "variable") {
			t.Errorf("%s selects no job: %s", q.where, q.expr)
		}
	}
	for name, v := range vars {
		if v.Type == "query" && !used[name] {
			t.Errorf("variable %q is used by no query", name)
		}
	}

	// What the issue asks the dashboard to show, by the metric each needs.
	for _, metric := range []string{
		"corsauthz_decisions_total", "corsauthz_check_duration_seconds_bucket",
		"corsauthz_authorizer_requests_total", "corsauthz_authorizer_request_duration_seconds_bucket",
		"corsauthz_config_reloads_total", "corsauthz_config_info", "corsauthz_build_info",
		"corsauthz_xds_streams", "corsauthz_xds_versions_acked_total", "corsauthz_xds_versions_nacked_total",
		"corsauthz_check_errors_total", "corsauthz_decision_logs_suppressed_total",
		"process_resident_memory_bytes", "go_gc_gomemlimit_bytes",
	} {
		found := false
		for _, q := range d.queries() {
			if slices.Contains(metricNames(q.expr), metric) {
				found = true
			}
		}
		if !found {
			t.Errorf("no panel shows %s", metric)
		}
	}
}

// metricRef matches the metric names these files use: corsauthz's, the Go
// runtime's and process collectors', and kube-state-metrics'.
var metricRef = regexp.MustCompile(`\b(?:corsauthz|go|process|kube)_[a-z0-9_]+\b`)

// metricNames returns the metric names expr refers to, sorted, once each.
func metricNames(expr string) []string {
	names := metricRef.FindAllString(expr, -1)
	sort.Strings(names)
	return slices.Compact(names)
}

// kubeStateMetrics are the kube-state-metrics series the alerts use; no
// corsauthz process exports them, so the stack cannot show them.
var kubeStateMetrics = []string{"kube_deployment_status_replicas_available", "kube_deployment_spec_replicas"}

// loadRules decodes the rules file strictly as a PrometheusRule's spec,
// whose groups have exactly a rules file's fields.
func loadRules(t *testing.T) monitoringv1.PrometheusRuleSpec {
	t.Helper()
	js, err := sigsyaml.YAMLToJSONStrict(readFile(t, rulesFile))
	if err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	var spec monitoringv1.PrometheusRuleSpec
	if err := decodeStrictJSON(js, &spec); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	return spec
}

// TestMetricNamesExist: every metric the dashboard and the alerts refer
// to is one a running corsauthz (or a gateway subscribed to it) exports,
// so a renamed metric fails here rather than as an empty panel or an
// alert that can never fire.
func TestMetricNamesExist(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	s.sendEach(t)
	// The authorizer metrics appear with the first call: wait for it.
	waitMetric(t, s.adminAddr, `corsauthz_authorizer_requests_total{`, func(v float64) bool { return v > 0 })
	exported := scrape(t, s.adminAddr)
	gateway := scrape(t, s.gatewayAddr)
	for name := range gateway {
		exported[name] = "gateway"
	}
	for _, name := range kubeStateMetrics {
		exported[name] = "kube-state-metrics"
	}

	var refs []dashboardQuery
	refs = append(refs, loadDashboard(t).queries()...)
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			refs = append(refs, dashboardQuery{"alert " + r.Alert, r.Expr.String()})
		}
	}
	checked := 0
	for _, q := range refs {
		names := metricNames(q.expr)
		if len(names) == 0 {
			t.Errorf("%s refers to no metric: %s", q.where, q.expr)
		}
		for _, name := range names {
			checked++
			if _, ok := exported[name]; !ok {
				t.Errorf("%s refers to %s, which neither corsauthz nor a gateway exports", q.where, name)
			}
		}
	}
	t.Logf("%d references to %d exported metric names checked", checked, len(exported))
}

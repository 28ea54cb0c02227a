package deploy_test

import (
	"context"
	"fmt"
	"html"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// dashboardPNGEnv, set to a file name, makes TestPrometheusEndToEnd run
// its load longer and draw the dashboard from what Prometheus recorded
// into that PNG (docs/operations.md shows it):
//
//	CORSAUTHZ_DASHBOARD_PNG=$PWD/docs/dashboard.png go test ./deploy -run TestPrometheusEndToEnd
//
// Each panel is drawn from its own queries, as Grafana would ask them;
// the drawing is this file's (SVG in headless Chromium), not Grafana's.
const dashboardPNGEnv = "CORSAUTHZ_DASHBOARD_PNG"

// Pixels per Grafana grid unit.
const (
	pngWidth     = 1600
	pngUnitWidth = pngWidth / 24
	pngUnitH     = 30
)

var pngColors = []string{"#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#fade2a", "#37872d", "#e0b400", "#c4162a", "#1f60c4"}

// pngSeries is one line of a panel.
type pngSeries struct {
	name   string
	points [][2]float64 // unix seconds, value
}

// renderDashboardPNG draws every panel of d with the data prom has between
// from and to and writes the PNG to out.
func renderDashboardPNG(t *testing.T, prom *promServer, d *dashboard, replacer *strings.Replacer, from, to time.Time, out string) {
	t.Helper()
	var body strings.Builder
	height := 0
	for _, p := range d.allPanels() {
		g := p.GridPos
		x, y, w, h := g.X*pngUnitWidth, g.Y*pngUnitH, g.W*pngUnitWidth, g.H*pngUnitH
		height = max(height, y+h)
		if p.Type == "row" {
			fmt.Fprintf(&body, `<div class="row" style="left:%dpx;top:%dpx;width:%dpx;height:%dpx">%s</div>`,
				x, y, w, h, html.EscapeString(p.Title))
			continue
		}
		var series []pngSeries
		for _, tg := range p.Targets {
			r, err := prom.rangeQuery(replacer.Replace(tg.Expr), from, to)
			if err != nil {
				t.Fatalf("%s: %v", p.Title, err)
			}
			for _, s := range r.Data.Result {
				ps := pngSeries{name: legend(tg.LegendFormat, s.Metric)}
				for _, v := range s.Values {
					ts, _ := v[0].(float64)
					f, err := strconv.ParseFloat(fmt.Sprint(v[1]), 64)
					if err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
						ps.points = append(ps.points, [2]float64{ts, f})
					}
				}
				if len(ps.points) > 0 {
					series = append(series, ps)
				}
			}
		}
		fmt.Fprintf(&body, `<div class="panel" style="left:%dpx;top:%dpx;width:%dpx;height:%dpx"><div class="title">%s</div>`,
			x+4, y+4, w-8, h-8, html.EscapeString(p.Title))
		switch p.Type {
		case "timeseries":
			body.WriteString(pngTimeSeries(series, w-8, h-8-24, p.Unit(), from, to))
		case "stat":
			body.WriteString(pngStat(series, p))
		default:
			body.WriteString(pngTable(series))
		}
		body.WriteString(`</div>`)
	}
	page := fmt.Sprintf(`<!doctype html><html><head><meta charset="utf-8"><style>
body{margin:0;background:#111217;font-family:Inter,Helvetica,Arial,sans-serif;color:#ccccdc;font-size:12px}
.head{height:40px;line-height:40px;padding-left:12px;font-size:16px;color:#fff}
.head span{color:#8e8e9e;font-size:12px;margin-left:16px}
.board{position:relative;width:%dpx;height:%dpx}
.row{position:absolute;font-size:14px;font-weight:600;color:#fff;line-height:30px;padding-left:8px;box-sizing:border-box}
.panel{position:absolute;background:#181b1f;border:1px solid #2c3235;border-radius:2px;box-sizing:border-box;overflow:hidden}
.title{height:24px;line-height:24px;padding-left:8px;font-weight:500;color:#ccccdc}
.legend{position:absolute;left:8px;bottom:2px;right:8px;font-size:11px;line-height:14px;max-height:42px;overflow:hidden}
.legend i{display:inline-block;width:14px;height:3px;margin:0 4px 3px 10px;vertical-align:middle}
.stat{display:flex;align-items:center;justify-content:center;font-size:40px;font-weight:600;color:#fff;height:calc(100%% - 24px)}
table{width:100%%;border-collapse:collapse;font-size:12px}td,th{padding:4px 8px;border-bottom:1px solid #2c3235;text-align:left}
</style></head><body><div class="head">corsauthz <span>data source: Prometheus · job: corsauthz · gateway job: gateway · %s – %s · rendered by go test ./deploy -run TestPrometheusEndToEnd</span></div><div class="board">%s</div></body></html>`,
		pngWidth, height, from.UTC().Format("15:04:05"), to.UTC().Format("15:04:05 MST"), body.String())
	dir := t.TempDir()
	pagePath := filepath.Join(dir, "dashboard.html")
	if err := os.WriteFile(pagePath, []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	screenshot(t, "file://"+pagePath, pngWidth, height+40, out)
}

// Unit is the panel's unit of values.
func (p dashboardPanel) Unit() string {
	return p.FieldConfig.Defaults.Unit
}

var legendLabel = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)

func legend(format string, metric map[string]string) string {
	if format == "" {
		var parts []string
		for k, v := range metric {
			if k != "__name__" {
				parts = append(parts, k+"="+v)
			}
		}
		sort.Strings(parts)
		return strings.Join(parts, " ")
	}
	return strings.TrimSpace(legendLabel.ReplaceAllStringFunc(format, func(m string) string {
		return metric[legendLabel.FindStringSubmatch(m)[1]]
	}))
}

// formatValue writes v in unit, as Grafana would roughly.
func formatValue(v float64, unit string) string {
	switch unit {
	case "s":
		switch {
		case v == 0:
			return "0 s"
		case v < 1e-3:
			return fmt.Sprintf("%.0f µs", v*1e6)
		case v < 1:
			return fmt.Sprintf("%.0f ms", v*1e3)
		}
		return fmt.Sprintf("%.1f s", v)
	case "bytes":
		return fmt.Sprintf("%.0f MiB", v/(1<<20))
	case "reqps":
		return strconv.FormatFloat(v, 'g', 3, 64) + " req/s"
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

func pngTimeSeries(series []pngSeries, w, h int, unit string, from, to time.Time) string {
	const left, bottom, legendH = 64, 18, 46
	plotW, plotH := w-left-10, h-bottom-legendH
	maxV := 0.0
	for _, s := range series {
		for _, p := range s.points {
			maxV = max(maxV, p[1])
		}
	}
	if maxV == 0 {
		maxV = 1
	}
	maxV *= 1.1
	t0, t1 := float64(from.Unix()), float64(to.Unix())
	px := func(ts float64) float64 { return left + (ts-t0)/(t1-t0)*float64(plotW) }
	py := func(v float64) float64 { return 4 + float64(plotH)*(1-v/maxV) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg width="%d" height="%d" style="display:block">`, w, h-legendH+4)
	for i := 0; i <= 3; i++ {
		v := maxV * float64(i) / 3
		y := py(v)
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#2c3235"/><text x="%d" y="%.1f" fill="#8e8e9e" font-size="10" text-anchor="end">%s</text>`,
			left, left+plotW, y, y, left-6, y+3, html.EscapeString(formatValue(v, unit)))
	}
	for i := 0; i <= 4; i++ {
		ts := t0 + (t1-t0)*float64(i)/4
		anchor := map[int]string{0: "start", 4: "end"}[i]
		if anchor == "" {
			anchor = "middle"
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" fill="#8e8e9e" font-size="10" text-anchor="%s">%s</text>`,
			px(ts), plotH+4+14, anchor, time.Unix(int64(ts), 0).UTC().Format("15:04:05"))
	}
	for i, s := range series {
		var pts []string
		for _, p := range s.points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(p[0]), py(p[1])))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, pngColors[i%len(pngColors)], strings.Join(pts, " "))
	}
	b.WriteString(`</svg><div class="legend">`)
	for i, s := range series {
		fmt.Fprintf(&b, `<span><i style="background:%s"></i>%s</span> `, pngColors[i%len(pngColors)], html.EscapeString(s.name))
	}
	if len(series) == 0 {
		b.WriteString("no data")
	}
	b.WriteString(`</div>`)
	return b.String()
}

func pngStat(series []pngSeries, p dashboardPanel) string {
	if len(series) == 0 {
		return `<div class="stat">no data</div>`
	}
	last := series[0].points[len(series[0].points)-1][1]
	text, color := formatValue(last, p.Unit()), "#73bf69"
	for _, m := range p.FieldConfig.Defaults.Mappings {
		for value, o := range m.Options {
			if value == strconv.FormatFloat(last, 'f', -1, 64) {
				text, color = o.Text, map[string]string{"red": "#c4162a", "green": "#37872d"}[o.Color]
			}
		}
	}
	return fmt.Sprintf(`<div class="stat" style="background:%s">%s</div>`, color, html.EscapeString(text))
}

// pngTable shows the series present at the end, as Grafana's instant
// query would.
func pngTable(series []pngSeries) string {
	end := 0.0
	for _, s := range series {
		end = max(end, s.points[len(s.points)-1][0])
	}
	var b strings.Builder
	b.WriteString(`<table><tr><th>series</th><th>replicas</th></tr>`)
	for _, s := range series {
		if s.points[len(s.points)-1][0] < end {
			continue
		}
		fmt.Fprintf(&b, `<tr><td>%s</td><td>%s</td></tr>`, html.EscapeString(s.name), formatValue(s.points[len(s.points)-1][1], ""))
	}
	b.WriteString(`</table>`)
	return b.String()
}

// screenshot loads url in headless Chromium at width×height and writes
// the PNG to out.
func screenshot(t *testing.T, url string, width, height int, out string) {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Fatalf("%s is set, but no Chromium is installed (apt-get install chromium)", dashboardPNGEnv)
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("disable-extensions", true),
		chromedp.WindowSize(width, height))
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, time.Minute)
	defer cancelTimeout()
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(int64(width), int64(height)), chromedp.Navigate(url)); err != nil {
		t.Fatalf("load the drawing: %v", err)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("dashboard drawn into %s (%d bytes)", out, len(png))
}

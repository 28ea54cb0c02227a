package main

// loadbench -http: the HTTP authorization listener under load.
//
//  1. Directly, with wrk: corsauthz's HTTP listener against a do-nothing
//     net/http server answering 200 (./cmd/loadbench/nothinghttp), and
//     against the same with corsauthz's server settings writing
//     corsauthz's answers without deciding (nothinghttp -same-answer), on the
//     same check requests (as NGINX's auth_request sends them: GET /check
//     with X-Forwarded-Method, -Host and -Uri, Origin and, for a
//     preflight, Access-Control-Request-*). The figure is the server's CPU
//     time per request (target: corsauthz at most 1.1 times the
//     do-nothing server's).
//  2. Through real NGINX, with wrk: the shipped deploy/nginx snippets with
//     auth_request to corsauthz, the same configuration with auth_request
//     to the do-nothing server (target: corsauthz at 0.9 times its
//     requests per second or more) and to the same-answer server, and
//     NGINX answering CORS by itself
//     with static add_header lines and no auth_request (the price of the
//     hop). Each NGINX has one worker; the API behind them is another
//     do-nothing server.
//
// wrk comes from Debian (apt-get install wrk, run by loadbench when wrk is
// missing and it runs as root); NGINX is the machine's (nginx-light).

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/corsauthz/corsauthz/internal/nginxproc"
)

type httpOptions struct {
	duration    time.Duration
	connections int
	rounds      int
	wrk         string
}

// httpKind is one sort of request in the HTTP load.
type httpKind struct {
	name    string
	method  string
	path    string
	headers []string // "Name: value"
}

// directKinds are check requests as NGINX's auth_request sends them for a
// page at https://app.example.com calling https://api.example.com.
func directKinds() []httpKind {
	return []httpKind{
		{"preflight", "GET", "/check", []string{
			"X-Forwarded-Method: OPTIONS", "X-Forwarded-Host: api.example.com", "X-Forwarded-Uri: /v1/orders/42",
			"Origin: " + benchAllowOrigin, "Access-Control-Request-Method: PUT",
			"Access-Control-Request-Headers: authorization,content-type",
		}},
		{"actual", "GET", "/check", []string{
			"X-Forwarded-Method: GET", "X-Forwarded-Host: api.example.com", "X-Forwarded-Uri: /v1/orders/42?expand=items",
			"Origin: " + benchAllowOrigin,
		}},
	}
}

// nginxKinds are the browser's requests to NGINX.
func nginxKinds() []httpKind {
	return []httpKind{
		{"preflight", "OPTIONS", "/v1/orders/42", []string{
			"Host: api.example.com", "Origin: " + benchAllowOrigin, "Access-Control-Request-Method: PUT",
			"Access-Control-Request-Headers: authorization,content-type",
		}},
		{"actual", "GET", "/v1/orders/42?expand=items", []string{"Host: api.example.com", "Origin: " + benchAllowOrigin}},
	}
}

// wrkResult is what one wrk run reports.
type wrkResult struct {
	requests int64
	rps      float64
	non2xx   int64
}

var (
	wrkRequests = regexp.MustCompile(`(?m)^\s*(\d+) requests in `)
	wrkRPS      = regexp.MustCompile(`(?m)^Requests/sec:\s*([0-9.]+)`)
	wrkNon2xx   = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses:\s*(\d+)`)
)

// parseWrk reads wrk's summary.
func parseWrk(out string) (wrkResult, error) {
	m, r := wrkRequests.FindStringSubmatch(out), wrkRPS.FindStringSubmatch(out)
	if m == nil || r == nil {
		return wrkResult{}, fmt.Errorf("wrk printed no summary:\n%s", out)
	}
	var res wrkResult
	res.requests, _ = strconv.ParseInt(m[1], 10, 64)
	res.rps, _ = strconv.ParseFloat(r[1], 64)
	if n := wrkNon2xx.FindStringSubmatch(out); n != nil {
		res.non2xx, _ = strconv.ParseInt(n[1], 10, 64)
	}
	return res, nil
}

// findWrk returns the wrk binary, installing Debian's package when it is
// missing and loadbench runs as root.
func findWrk(ctx context.Context, path string, logf func(string, ...any)) (string, error) {
	if path != "" {
		return path, nil
	}
	if p, err := exec.LookPath("wrk"); err == nil {
		return p, nil
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("no wrk on PATH: apt-get install wrk (or pass -wrk)")
	}
	logf("installing wrk: apt-get install -y wrk")
	for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "wrk"}} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	return exec.LookPath("wrk")
}

// runWrk drives url with k for d.
func runWrk(ctx context.Context, wrk, url string, k httpKind, d time.Duration, conns int) (wrkResult, error) {
	args := []string{"-t1", "-c" + strconv.Itoa(conns), "-d" + strconv.Itoa(int(d.Seconds())) + "s", "--latency"}
	for _, h := range k.headers {
		args = append(args, "-H", h)
	}
	if k.method != "GET" {
		// wrk sets the method only from a Lua script.
		script := filepath.Join(os.TempDir(), fmt.Sprintf("loadbench-%d-%s.lua", os.Getpid(), k.method))
		if err := os.WriteFile(script, []byte(fmt.Sprintf("wrk.method = %q\n", k.method)), 0o644); err != nil {
			return wrkResult{}, err
		}
		defer os.Remove(script)
		args = append(args, "-s", script)
	}
	args = append(args, url+k.path)
	out, err := exec.CommandContext(ctx, wrk, args...).CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return parseWrk(string(out))
}

// httpTarget is a server (or NGINX) under load: its URL, and the
// processes whose CPU is counted.
type httpTarget struct {
	name string
	url  string
	pids []int
}

// cpuOf returns the CPU ticks of pids together.
func cpuOf(pids []int) (int64, error) {
	var sum int64
	for _, pid := range pids {
		n, err := cpuTicks(pid)
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, nil
}

// children returns the child processes of pid (NGINX's workers).
func children(pid int) ([]int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil, err
	}
	var out []int
	for _, f := range strings.Fields(string(data)) {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("process %d has no children", pid)
	}
	return out, nil
}

// workers returns NGINX's worker processes, the children of its master
// pid, waiting up to 5 s for the master to start them: it answers on its
// port before it has forked every worker.
func workers(pid int) ([]int, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids, err := children(pid)
		if err == nil || time.Now().After(deadline) {
			return pids, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// httpRun is one measurement.
type httpRun struct {
	rps     float64
	cpuPerR float64 // µs of the target's CPU per request
}

// measure runs every kind against every target for o.rounds rounds (A, B,
// then B, A, ...) and returns the medians by kind and target.
func measure(ctx context.Context, o httpOptions, kinds []httpKind, targets []httpTarget, logf func(string, ...any)) (map[string]map[string]httpRun, error) {
	ticks := clockTicks()
	runs := map[string]map[string][]httpRun{}
	for _, k := range kinds {
		runs[k.name] = map[string][]httpRun{}
		for _, t := range targets { // warm up
			if _, err := runWrk(ctx, o.wrk, t.url, k, time.Second, o.connections); err != nil {
				return nil, err
			}
		}
	}
	for round := range o.rounds {
		for _, k := range kinds {
			order := slices.Clone(targets)
			if round%2 == 1 {
				slices.Reverse(order)
			}
			for _, t := range order {
				before, err := cpuOf(t.pids)
				if err != nil {
					return nil, err
				}
				res, err := runWrk(ctx, o.wrk, t.url, k, o.duration, o.connections)
				if err != nil {
					return nil, err
				}
				if res.non2xx > 0 {
					return nil, fmt.Errorf("%s, %s: %d answers were not 2xx", t.name, k.name, res.non2xx)
				}
				after, err := cpuOf(t.pids)
				if err != nil {
					return nil, err
				}
				cpu := time.Duration(after-before) * time.Second / time.Duration(ticks)
				r := httpRun{rps: res.rps, cpuPerR: float64(cpu.Microseconds()) / float64(res.requests)}
				runs[k.name][t.name] = append(runs[k.name][t.name], r)
				logf("round %d/%d %-9s %-28s %8.0f req/s  CPU %5.1f µs/req", round+1, o.rounds, k.name, t.name, r.rps, r.cpuPerR)
			}
		}
	}
	out := map[string]map[string]httpRun{}
	for k, byTarget := range runs {
		out[k] = map[string]httpRun{}
		for t, rs := range byTarget {
			out[k][t] = httpRun{
				rps:     medianOf(rs, func(r httpRun) float64 { return r.rps }),
				cpuPerR: medianOf(rs, func(r httpRun) float64 { return r.cpuPerR }),
			}
		}
	}
	return out, nil
}

func medianOf(rs []httpRun, f func(httpRun) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// checkAnswer makes sure url answers k as intended before it is measured.
func checkAnswer(ctx context.Context, url string, k httpKind, wantStatus int, wantACAO string) error {
	req, err := http.NewRequestWithContext(ctx, k.method, url+k.path, nil)
	if err != nil {
		return err
	}
	for _, h := range k.headers {
		name, value, _ := strings.Cut(h, ": ")
		if name == "Host" {
			req.Host = value
			continue
		}
		req.Header.Set(name, value)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != wantStatus || resp.Header.Get("Access-Control-Allow-Origin") != wantACAO {
		return fmt.Errorf("%s %s%s answered %d with Access-Control-Allow-Origin %q, want %d and %q",
			k.method, url, k.path, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"), wantStatus, wantACAO)
	}
	return nil
}

// waitHTTP waits until addr accepts HTTP requests.
func waitHTTP(ctx context.Context, p *process, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+p.addr+"/.corsauthz/healthz", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer HTTP within %v; see %s", p.name, timeout, p.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// nginxBenchConf is an NGINX configuration for the load: one worker, the
// API behind it, and in front of it either the shipped corsauthz snippets
// with authAddr as the corsauthz upstream, or (authAddr "") static CORS
// headers.
func nginxBenchConf(dir *nginxproc.Dir, listen, authAddr, apiAddr string) string {
	var b strings.Builder
	b.WriteString("worker_processes 1;\n")
	b.WriteString(dir.MainLines())
	b.WriteString("events { worker_connections 1024; }\nhttp {\n")
	b.WriteString(strings.Replace(dir.HTTPLines(), "access_log "+filepath.Join(dir.Path, "access.log")+";", "access_log off;", 1))
	fmt.Fprintf(&b, "upstream api { server %s; keepalive 64; }\n", apiAddr)
	if authAddr != "" {
		fmt.Fprintf(&b, `include snippets/corsauthz-http.conf;
upstream corsauthz { server %s; keepalive 64; }
server {
    listen %s;
    include snippets/corsauthz-endpoint.conf;
    location / {
        set $corsauthz_policy "";
        include snippets/corsauthz-location.conf;
        proxy_pass http://api;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
    }
}
}
`, authAddr, listen)
		return b.String()
	}
	fmt.Fprintf(&b, `server {
    listen %[1]s;
    location / {
        if ($request_method = OPTIONS) {
            add_header Access-Control-Allow-Origin %[2]s always;
            add_header Access-Control-Allow-Credentials true always;
            add_header Access-Control-Allow-Methods "GET, POST, PUT, PATCH, DELETE" always;
            add_header Access-Control-Allow-Headers "Authorization, Content-Type, X-Request-Id" always;
            add_header Access-Control-Max-Age 600 always;
            add_header Vary "Origin, Access-Control-Request-Method, Access-Control-Request-Headers" always;
            return 204;
        }
        proxy_hide_header Access-Control-Allow-Origin;
        add_header Access-Control-Allow-Origin %[2]s always;
        add_header Access-Control-Allow-Credentials true always;
        add_header Access-Control-Expose-Headers X-Request-Id always;
        add_header Vary Origin always;
        proxy_pass http://api;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
    }
}
}
`, listen, benchAllowOrigin)
	return b.String()
}

func runHTTP(ctx context.Context, o options, stdout io.Writer, logf func(string, ...any)) error {
	ho := o.http
	var err error
	if ho.wrk, err = findWrk(ctx, ho.wrk, logf); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "loadbench-http-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	logf("building corsauthz and the do-nothing HTTP server in %s", work)
	corsBin, nothingBin := filepath.Join(work, "corsauthz"), filepath.Join(work, "nothinghttp")
	for _, b := range [][2]string{{corsBin, "./cmd/corsauthz"}, {nothingBin, "./cmd/loadbench/nothinghttp"}} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", b[0], b[1])
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", b[1], err, out)
		}
	}
	configFile := filepath.Join(work, "config.yaml")
	if err := os.WriteFile(configFile, []byte(benchConfig()), 0o644); err != nil {
		return err
	}
	addrs := make([]string, 7)
	for i := range addrs {
		if addrs[i], err = freePort(); err != nil {
			return err
		}
	}
	grpcAddr, adminAddr, corsHTTP, nothingAddr, apiAddr, sameAddr := addrs[0], addrs[1], addrs[2], addrs[3], addrs[4], addrs[5]
	var procs []*process
	defer func() {
		for _, p := range procs {
			if err := p.stop(); err != nil {
				logf("stopping %s: %v", p.name, err)
			}
		}
	}()
	cors, err := start("corsauthz", corsHTTP, filepath.Join(work, "corsauthz.log"), nil, corsBin,
		"serve", "--config", configFile, "--grpc-addr", grpcAddr, "--admin-addr", adminAddr, "--http-addr", corsHTTP, "--log-level", "warn")
	if err != nil {
		return err
	}
	procs = append(procs, cors)
	nothing, err := start("do-nothing", nothingAddr, filepath.Join(work, "nothing.log"), nil, nothingBin, "-addr", nothingAddr)
	if err != nil {
		return err
	}
	procs = append(procs, nothing)
	same, err := start("same answer", sameAddr, filepath.Join(work, "same.log"), nil, nothingBin, "-addr", sameAddr, "-same-answer")
	if err != nil {
		return err
	}
	procs = append(procs, same)
	api, err := start("api", apiAddr, filepath.Join(work, "api.log"), nil, nothingBin, "-addr", apiAddr)
	if err != nil {
		return err
	}
	procs = append(procs, api)
	for _, p := range procs {
		if err := waitHTTP(ctx, p, 15*time.Second); err != nil {
			return err
		}
	}

	// 1. Directly.
	direct := directKinds()
	for _, k := range direct {
		status := 200
		if k.name == "preflight" {
			status = 204
		}
		if err := checkAnswer(ctx, "http://"+corsHTTP, k, status, benchAllowOrigin); err != nil {
			return fmt.Errorf("corsauthz: %w", err)
		}
		// The same-answer server must answer what corsauthz does, or the
		// comparison says nothing.
		a, err := corsHeaders(ctx, "http://"+corsHTTP, k)
		if err != nil {
			return err
		}
		b, err := corsHeaders(ctx, "http://"+sameAddr, k)
		if err != nil {
			return err
		}
		if a != b {
			return fmt.Errorf("%s: corsauthz answers\n%s\nthe same-answer server\n%s", k.name, a, b)
		}
	}
	logf("direct: corsauthz's HTTP listener against the do-nothing net/http server, wrk -c%d, %v a run", ho.connections, ho.duration)
	directRes, err := measure(ctx, ho, direct, []httpTarget{
		{name: "corsauthz", url: "http://" + corsHTTP, pids: []int{cors.pid()}},
		{name: "do-nothing", url: "http://" + nothingAddr, pids: []int{nothing.pid()}},
		{name: "same answer", url: "http://" + sameAddr, pids: []int{same.pid()}},
	}, logf)
	if err != nil {
		return err
	}

	// 2. Through NGINX.
	bin := nginxproc.Path()
	if bin == "" {
		return fmt.Errorf("no nginx: apt-get install nginx-light")
	}
	var nginxTargets []httpTarget
	for _, v := range []struct {
		name, auth string
		authPid    int
	}{
		{"auth_request → corsauthz", corsHTTP, cors.pid()},
		{"auth_request → do-nothing", nothingAddr, nothing.pid()},
		{"auth_request → same answer", sameAddr, same.pid()},
		{"static add_header", "", 0},
	} {
		dir, err := nginxproc.NewDir(bin)
		if err != nil {
			return err
		}
		defer dir.Remove()
		if _, err := dir.InstallSnippets(filepath.Join(root, filepath.FromSlash(nginxproc.SnippetsDir))); err != nil {
			return err
		}
		listen, err := freePort()
		if err != nil {
			return err
		}
		conf, err := dir.WriteFile("nginx.conf", nginxBenchConf(dir, listen, v.auth, apiAddr))
		if err != nil {
			return err
		}
		if _, err := dir.Test(ctx, conf); err != nil {
			return err
		}
		p, err := dir.Start(conf, listen)
		if err != nil {
			return err
		}
		defer p.Stop()
		// CPU: NGINX's worker, the auth server, the API.
		pids, err := workers(p.Pid())
		if err != nil {
			return err
		}
		pids = append(pids, api.pid())
		if v.authPid != 0 {
			pids = append(pids, v.authPid)
		}
		nginxTargets = append(nginxTargets, httpTarget{name: v.name, url: "http://" + listen, pids: pids})
	}
	nk := nginxKinds()
	for _, k := range nk {
		status := 200
		if k.name == "preflight" {
			status = 204
		}
		for _, t := range []httpTarget{nginxTargets[0], nginxTargets[2], nginxTargets[3]} {
			if err := checkAnswer(ctx, t.url, k, status, benchAllowOrigin); err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
		}
	}
	logf("through NGINX %s (one worker each), wrk -c%d, %v a run", bin, ho.connections, ho.duration)
	nginxRes, err := measure(ctx, ho, nk, nginxTargets, logf)
	if err != nil {
		return err
	}
	writeHTTPReport(stdout, ho, direct, directRes, nk, nginxRes)
	return nil
}

func writeHTTPReport(w io.Writer, o httpOptions, direct []httpKind, d map[string]map[string]httpRun, nk []httpKind, n map[string]map[string]httpRun) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	fmt.Fprintf(bw, "## HTTP authorization listener (medians of %d rounds, wrk -t1 -c%d -d%v)\n\n", o.rounds, o.connections, o.duration)
	fmt.Fprintln(bw, "| request | corsauthz CPU/req | do-nothing CPU/req | ratio | same-answer CPU/req | ratio | corsauthz req/s | do-nothing req/s |")
	fmt.Fprintln(bw, "| --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, k := range direct {
		c, z, a := d[k.name]["corsauthz"], d[k.name]["do-nothing"], d[k.name]["same answer"]
		fmt.Fprintf(bw, "| %s | %.1f µs | %.1f µs | %.2f× | %.1f µs | %.2f× | %.0f | %.0f |\n",
			k.name, c.cpuPerR, z.cpuPerR, c.cpuPerR/z.cpuPerR, a.cpuPerR, c.cpuPerR/a.cpuPerR, c.rps, z.rps)
	}
	fmt.Fprintf(bw, "\n## Through NGINX (medians of %d rounds; CPU is NGINX's worker, the auth server and the API together)\n\n", o.rounds)
	fmt.Fprintln(bw, "| request | figure | → corsauthz | → do-nothing | → same answer | static add_header | corsauthz / do-nothing | corsauthz / same answer | corsauthz / static |")
	fmt.Fprintln(bw, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, k := range nk {
		c, z, a, s := n[k.name]["auth_request → corsauthz"], n[k.name]["auth_request → do-nothing"], n[k.name]["auth_request → same answer"], n[k.name]["static add_header"]
		fmt.Fprintf(bw, "| %s | req/s | %.0f | %.0f | %.0f | %.0f | %.2f× | %.2f× | %.2f× |\n", k.name, c.rps, z.rps, a.rps, s.rps, c.rps/z.rps, c.rps/a.rps, c.rps/s.rps)
		// Requests per CPU-second: what the same machine could serve.
		fmt.Fprintf(bw, "| %s | CPU/req | %.1f µs | %.1f µs | %.1f µs | %.1f µs | %.2f× | %.2f× | %.2f× |\n",
			k.name, c.cpuPerR, z.cpuPerR, a.cpuPerR, s.cpuPerR, z.cpuPerR/c.cpuPerR, a.cpuPerR/c.cpuPerR, s.cpuPerR/c.cpuPerR)
	}
	fmt.Fprintln(bw, "\n(CPU/req ratios are requests per CPU-second: the other's CPU per request over corsauthz's.)")
}

// corsHeaders returns the status and CORS headers of url's answer to k,
// one "Name: value" a line, sorted.
func corsHeaders(ctx context.Context, url string, k httpKind) (string, error) {
	req, err := http.NewRequestWithContext(ctx, k.method, url+k.path, nil)
	if err != nil {
		return "", err
	}
	for _, h := range k.headers {
		name, value, _ := strings.Cut(h, ": ")
		req.Header.Set(name, value)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	lines := []string{strconv.Itoa(resp.StatusCode)}
	for name, vs := range resp.Header {
		if strings.HasPrefix(name, "Access-Control-") || name == "Vary" {
			for _, v := range vs {
				lines = append(lines, name+": "+v)
			}
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n"), nil
}

package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Targets of issue 5, each a ratio to the do-nothing server from one run.
const (
	targetCPURatio = 0.8
	targetP99Ratio = 1.1
	targetRSSMiB   = 64
)

// run1 is one ghz run against one server.
type run1 struct {
	checks   uint64
	cpu      time.Duration // the server's utime+stime during the run
	rps      float64
	p50, p99 time.Duration
	rssKiB   int64 // VmRSS right after the run
}

func (r run1) cpuPerCheck() float64 {
	return float64(r.cpu.Nanoseconds()) / 1e3 / float64(r.checks)
}

type results struct {
	kinds   []string
	servers []string // corsauthz, the do-nothing server, then any variants
	runs    map[[2]string][]run1
	hwmKiB  map[string]int64
}

func newResults(kinds []requestKind, servers []*process) *results {
	r := &results{runs: map[[2]string][]run1{}, hwmKiB: map[string]int64{}}
	for _, k := range kinds {
		r.kinds = append(r.kinds, k.name)
	}
	for _, p := range servers {
		r.servers = append(r.servers, p.name)
	}
	return r
}

func (r *results) add(server, kind string, run run1) {
	key := [2]string{server, kind}
	r.runs[key] = append(r.runs[key], run)
}

// summary is the figures for one server and request sort over all rounds:
// CPU per Check from the totals, the others the median of the rounds.
type summary struct {
	cpuPerCheck   float64 // µs
	rps           float64
	p50, p99      time.Duration
	maxRSSKiB     int64
	perRoundCPUUs []float64
}

func (r *results) summary(server, kind string) summary {
	runs := r.runs[[2]string{server, kind}]
	var s summary
	var cpu time.Duration
	var checks uint64
	var rps []float64
	var p50, p99 []time.Duration
	for _, run := range runs {
		cpu += run.cpu
		checks += run.checks
		rps = append(rps, run.rps)
		p50 = append(p50, run.p50)
		p99 = append(p99, run.p99)
		s.maxRSSKiB = max(s.maxRSSKiB, run.rssKiB)
		s.perRoundCPUUs = append(s.perRoundCPUUs, run.cpuPerCheck())
	}
	if checks > 0 {
		s.cpuPerCheck = float64(cpu.Nanoseconds()) / 1e3 / float64(checks)
	}
	s.rps, s.p50, s.p99 = median(rps), median(p50), median(p99)
	return s
}

func median[T float64 | time.Duration](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

func check(ok bool) string {
	if ok {
		return "met"
	}
	return "**NOT met**"
}

func (r *results) write(w io.Writer, o options, ticks int64) {
	ref := r.servers[1] // the do-nothing server; the others are corsauthz
	fmt.Fprintf(w, "ghz v0.120.0 `--insecure --protoset … --call envoy.service.auth.v3.Authorization/Check -D <request>.json -c %d -n %d --connections %d`, "+
		"%d rounds alternating the servers, after %d warm-up Checks each. "+
		"CPU is the server process's utime+stime (/proc/PID/stat, %d ticks/s) over all rounds divided by the Checks; "+
		"Checks/s, p50 and p99 are the medians of the rounds.\n\n",
		o.c, o.n, o.conns, o.rounds, o.warmup, ticks)
	fmt.Fprintln(w, "| request | server | Checks/s | p50 | p99 | CPU per Check | peak RSS |")
	fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | ---: | ---: |")
	for _, k := range r.kinds {
		for _, srv := range r.servers {
			s := r.summary(srv, k)
			fmt.Fprintf(w, "| %s | %s | %.0f | %s | %s | %.1f µs | %.1f MiB |\n",
				k, srv, s.rps, ms(s.p50), ms(s.p99), s.cpuPerCheck, float64(r.hwmKiB[srv])/1024)
		}
	}
	for _, cors := range r.servers {
		if cors == ref || isChained(cors) { // the chain has a table and a target of its own
			continue
		}
		fmt.Fprintf(w, "\nRatios %s / do-nothing (targets: CPU per Check ≤ %.2f, p99 ≤ %.2f):\n\n", cors, targetCPURatio, targetP99Ratio)
		fmt.Fprintln(w, "| request | CPU per Check | per round | p99 latency | Checks/s |")
		fmt.Fprintln(w, "| --- | ---: | --- | ---: | ---: |")
		allCPU, allP99 := true, true
		for _, k := range r.kinds {
			a, b := r.summary(cors, k), r.summary(ref, k)
			cpu := a.cpuPerCheck / b.cpuPerCheck
			p99 := float64(a.p99) / float64(b.p99)
			var rounds []string
			for i := range min(len(a.perRoundCPUUs), len(b.perRoundCPUUs)) {
				rounds = append(rounds, fmt.Sprintf("%.2f", a.perRoundCPUUs[i]/b.perRoundCPUUs[i]))
			}
			allCPU = allCPU && cpu <= targetCPURatio
			allP99 = allP99 && p99 <= targetP99Ratio
			fmt.Fprintf(w, "| %s | **%.2f** | %s | %.2f | %.2f |\n", k, cpu, strings.Join(rounds, ", "), p99, a.rps/b.rps)
		}
		rssMiB := float64(r.hwmKiB[cors]) / 1024
		fmt.Fprintf(w, "\nTargets: CPU per Check ≤ %.1f× for every request: %s. p99 ≤ %.1f× for every request: %s. "+
			"Peak RSS %.1f MiB ≤ %d MiB: %s.\n",
			targetCPURatio, check(allCPU), targetP99Ratio, check(allP99), rssMiB, targetRSSMiB, check(rssMiB <= targetRSSMiB))
	}
	r.writeChain(w, ref) // chain.go
}

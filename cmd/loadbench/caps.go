package main

import (
	"fmt"
	"io"
	"time"

	"github.com/corsauthz/corsauthz/policy"
)

// loadbench -caps: every corsauthz server runs the configuration at the
// documented caps (capsConfig: 1,000 policies, 50,000 allowed origins)
// under the same load, and the report gives each one's peak RSS (VmHWM,
// which includes loading the configuration and publishing it over xDS at
// start) against the do-nothing server's, and the time policy.Load takes
// on the file.

// Targets at the caps (issue 21): peak RSS under load, and the load time.
const (
	targetCapsRSSMiB = 48
	targetCapsLoad   = time.Second
)

// writeCaps reports peak RSS at the caps and times loading config.
func (r *results) writeCaps(w io.Writer, config []byte) error {
	ref := r.servers[1]
	fmt.Fprintf(w, "\n## At the caps: %d policies, %d allowed origins (%d KiB of YAML)\n\n", capsPolicies, capsOrigins, len(config)>>10)
	fmt.Fprintln(w, "| server | peak RSS | / do-nothing | target ≤ 48 MiB |")
	fmt.Fprintln(w, "| --- | ---: | ---: | --- |")
	refMiB := float64(r.hwmKiB[ref]) / 1024
	for _, srv := range r.servers {
		mib := float64(r.hwmKiB[srv]) / 1024
		target := "–"
		if srv != ref {
			target = check(mib <= targetCapsRSSMiB)
		}
		fmt.Fprintf(w, "| %s | %.1f MiB | %.2f | %s |\n", srv, mib, mib/refMiB, target)
	}
	var times []time.Duration
	for range 3 {
		t0 := time.Now()
		if _, _, err := policy.Load("caps.yaml", config); err != nil {
			return fmt.Errorf("loading the configuration at the caps: %w", err)
		}
		times = append(times, time.Since(t0))
	}
	best := min(times[0], times[1], times[2])
	fmt.Fprintf(w, "\npolicy.Load (YAML parse, validation, compile) of the file, in this process: best %.0f ms, median %.0f ms of 3 (target < %v: %s).\n",
		float64(best)/1e6, float64(median(times))/1e6, targetCapsLoad, check(median(times) < targetCapsLoad))
	return nil
}

package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// The chained Check (docs/authorizers.md): corsauthz in front of an authorizer,
// here the do-nothing server as the api policy's gRPC authorizer, against
// the do-nothing server called directly, in the same rounds. What it costs
// to put corsauthz in front of an auth service: corsauthz's own CPU per
// chained Check (its process only; the do-nothing server's share is
// counted in its own direct runs) and the latency the extra hop adds.

// chainedName is the chained server's name in the results; every
// -variant and -variant-bin is chained too, under its name with
// chainedSuffix.
const (
	chainedName   = "corsauthz chained"
	chainedSuffix = " chained"
)

// isChained reports whether server is one of the chained ones.
func isChained(server string) bool { return strings.HasSuffix(server, chainedSuffix) }

// targetChainCPURatio is issue 12's target: corsauthz's CPU per chained
// Check at most the do-nothing server's CPU per Check.
const targetChainCPURatio = 1.0

// chainConfig is cfg (benchConfig or capsConfig) with the do-nothing
// server at addr as the api policy's authorizer.
func chainConfig(cfg, addr string) string {
	cfg = strings.Replace(cfg, "policies:\n", fmt.Sprintf(`authorizers:
  - name: nothing
    grpc:
      address: %s
      timeout: 1s
policies:
`, addr), 1)
	return strings.Replace(cfg, "  - name: "+benchPolicyName+"\n", "  - name: "+benchPolicyName+"\n    authorizer: nothing\n", 1)
}

// writeChain reports each chained Check against the do-nothing server.
func (r *results) writeChain(w io.Writer, ref string) {
	for _, srv := range r.servers {
		if !isChained(srv) {
			continue
		}
		fmt.Fprintf(w, "\nChained Check: %s (asking the do-nothing server as its gRPC authorizer) / do-nothing called directly "+
			"(target: its own CPU per chained Check ≤ %.1f× the do-nothing server's CPU per Check). "+
			"A preflight never reaches the authorizer.\n\n", srv, targetChainCPURatio)
		fmt.Fprintln(w, "| request | CPU per chained Check | do-nothing CPU per Check | ratio | per round | added p50 | added p99 |")
		fmt.Fprintln(w, "| --- | ---: | ---: | ---: | --- | ---: | ---: |")
		met := true
		for _, k := range r.kinds {
			a, b := r.summary(srv, k), r.summary(ref, k)
			ratio := a.cpuPerCheck / b.cpuPerCheck
			if k != "preflight" {
				met = met && ratio <= targetChainCPURatio
			}
			var rounds []string
			for i := range min(len(a.perRoundCPUUs), len(b.perRoundCPUUs)) {
				rounds = append(rounds, fmt.Sprintf("%.2f", a.perRoundCPUUs[i]/b.perRoundCPUUs[i]))
			}
			fmt.Fprintf(w, "| %s | %.1f µs | %.1f µs | **%.2f** | %s | %s | %s |\n",
				k, a.cpuPerCheck, b.cpuPerCheck, ratio, strings.Join(rounds, ", "), signedMs(a.p50-b.p50), signedMs(a.p99-b.p99))
		}
		fmt.Fprintf(w, "\nTarget for the chained requests (actual, no-origin): %s.\n", check(met))
	}
}

func signedMs(d time.Duration) string { return fmt.Sprintf("%+.2f ms", float64(d)/1e6) }

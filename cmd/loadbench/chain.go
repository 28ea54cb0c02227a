package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// The chained Check (docs/authorizers.md): corsauthz in front of an authorizer,
// here the do-nothing server as the api policy's gRPC authorizer, against
// the do-nothing server called directly, in the same rounds. What it costs
// to put corsauthz in front of an auth service: corsauthz's own CPU per
// chained Check (its process only; the do-nothing server's share is
// counted in its own direct runs) and the latency the extra hop adds.

// chainedName is the chained server's name in the results.
const chainedName = "corsauthz chained"

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

// writeChain reports the chained Check against the do-nothing server.
func (r *results) writeChain(w io.Writer, ref string) {
	if !slices.Contains(r.servers, chainedName) {
		return
	}
	fmt.Fprintf(w, "\nChained Check: %s (corsauthz asking the do-nothing server as its gRPC authorizer) / do-nothing called directly "+
		"(target: corsauthz's own CPU per chained Check ≤ %.1f× the do-nothing server's CPU per Check). "+
		"A preflight never reaches the authorizer.\n\n", chainedName, targetChainCPURatio)
	fmt.Fprintln(w, "| request | corsauthz CPU per chained Check | do-nothing CPU per Check | ratio | added p50 | added p99 |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: |")
	met := true
	for _, k := range r.kinds {
		a, b := r.summary(chainedName, k), r.summary(ref, k)
		ratio := a.cpuPerCheck / b.cpuPerCheck
		if k != "preflight" {
			met = met && ratio <= targetChainCPURatio
		}
		fmt.Fprintf(w, "| %s | %.1f µs | %.1f µs | **%.2f** | %s | %s |\n",
			k, a.cpuPerCheck, b.cpuPerCheck, ratio, signedMs(a.p50-b.p50), signedMs(a.p99-b.p99))
	}
	fmt.Fprintf(w, "\nTarget for the chained requests (actual, no-origin): %s.\n", check(met))
}

func signedMs(d time.Duration) string { return fmt.Sprintf("%+.2f ms", float64(d)/1e6) }

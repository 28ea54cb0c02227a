package cli

import (
	"fmt"
	"os"
	"runtime/debug"
	"runtime/pprof"
)

// servingGCPercent is the garbage collector's target (GOGC) while serving,
// unless GOGC is set. corsauthz's live heap is small (a few MiB), so at
// the default of 100 the collector runs every few hundred Checks and its
// fixed cost per cycle is a large part of a Check's CPU; at 200 it runs
// half as often. Measured with cmd/loadbench (-variant gogc100=GOGC=100):
// about 15% less CPU per Check for about 3 MiB more memory.
const servingGCPercent = 200

// tuneGC sets the collector's target for serving, unless the environment
// sets GOGC (the Go runtime has then applied it).
func tuneGC(env Env) {
	if _, set := env("GOGC"); !set {
		debug.SetGCPercent(servingGCPercent)
	}
}

// startCPUProfile starts writing a CPU profile to name ("": none) and
// returns the function that stops it and closes the file. serve's
// --cpuprofile uses it, so that a profile covers exactly the time served
// (cmd/loadbench reads it with go tool pprof).
func startCPUProfile(name string) (stop func(), err error) {
	if name == "" {
		return func() {}, nil
	}
	f, err := os.Create(name)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

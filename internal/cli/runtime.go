package cli

import (
	"fmt"
	"math"
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
// sets GOGC (the Go runtime has then applied it), and keeps
// memoryLimitHeadroom of a GOMEMLIMIT out of the Go runtime's own limit.
// It returns the limit set (0: none).
func tuneGC(env Env) (runtimeLimit int64) {
	if _, set := env("GOGC"); !set {
		debug.SetGCPercent(servingGCPercent)
	}
	if _, set := env("GOMEMLIMIT"); !set {
		return 0
	}
	limit := debug.SetMemoryLimit(-1)
	if limit <= 0 || limit == math.MaxInt64 {
		return 0
	}
	runtimeLimit = limit - min(memoryLimitHeadroom, limit/4)
	debug.SetMemoryLimit(runtimeLimit)
	return runtimeLimit
}

// memoryLimitHeadroom is the part of GOMEMLIMIT that serve keeps for the
// memory the Go runtime does not count: the binary's code and data, about
// 19 MiB resident. The Kubernetes example sets GOMEMLIMIT to the
// container's limit, which the whole resident size must stay under; with
// the runtime aiming at the full limit, a process whose heap reached it
// would be killed at about 128 + 19 MiB. So the runtime aims at
// GOMEMLIMIT minus this (at most a quarter of it): 104 MiB of a 128 MiB
// limit (docs/limits.md).
const memoryLimitHeadroom = 24 << 20

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

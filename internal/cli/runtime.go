package cli

import (
	"fmt"
	"math"
	"os"
	"path"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
)

// The memory policy of serve:
//
//   - While a configuration loads (at start and on each reload) the
//     collector's target is loadingGCPercent: loading a file at the caps
//     (1,000 policies, 50,000 origins) holds the file, its parsed form and
//     the compiled configuration at once (about 14 MiB live at the end),
//     and at the default target of 100 the heap grew to twice that before
//     a collection. At 25 the load takes the same CPU (about 0.2 s) and
//     peaks about 2 MiB lower than at 50.
//   - While serving, the target depends on the configuration's size
//     (gcPercentFor): servingGCPercent for a usual one (a few MiB of live
//     heap), lower for a large one, so that the heap grows by at most
//     servingHeadroom between collections instead of three times the
//     configuration.
//   - The soft memory limit is GOMEMLIMIT's, when set (the Kubernetes
//     example sets it to the container's limit), less memoryLimitHeadroom
//     (at most a quarter): the binary's own pages, which the runtime does
//     not count, must fit under the container's limit too. Without it, in
//     a container whose cgroup (v2) sets memory.max, the same below
//     memory.max; else none. go_gc_gomemlimit_bytes reports it, and the
//     CorsauthzMemoryNearLimit alert compares the resident size to it.
//
// GOGC, when set, replaces both targets. Measured with cmd/loadbench -caps
// (docs/performance.md).
const (
	// servingGCPercent: corsauthz's live heap is small, so at the default
	// of 100 the collector runs every few hundred Checks and its fixed
	// cost per cycle is a large part of a Check's CPU; at 200 it runs
	// half as often (about 15% less CPU per Check).
	servingGCPercent = 200
	loadingGCPercent = 25
	// servingHeadroom: at the caps (about 9 MiB live while serving) 8 MiB
	// of growth keeps the peak resident size of the load benchmark under
	// 48 MiB (45.1 and 45.5 MiB, against 49.1 and 49.2 MiB with 12) for
	// about 4% more CPU per Check there; 6 MiB gained 2 MiB more for 8%
	// (docs/performance.md, "Memory at the caps"). A usual configuration
	// (1 MiB live) grows by servingGCPercent, well below it.
	servingHeadroom = 8 << 20
)

// gcPercentFor is the collector's target while serving with live bytes of
// live heap: servingGCPercent, or less when that would let the heap grow
// by more than servingHeadroom, never below loadingGCPercent.
func gcPercentFor(live int64) int {
	p := 100 * servingHeadroom / max(live, 1)
	return int(min(servingGCPercent, max(loadingGCPercent, p)))
}

// memoryLimitHeadroom is the part of a memory limit (GOMEMLIMIT, or the
// container's memory.max) that serve keeps for the memory the Go runtime
// does not count: the binary's code and data, about 19 MiB resident. With
// the runtime aiming at the full limit, a process whose heap reached it
// would be killed at about 128 + 19 MiB of a 128 MiB limit. So the runtime
// aims at the limit minus this (at most a quarter of it): 104 MiB of a
// 128 MiB limit (docs/limits.md).
const memoryLimitHeadroom = 24 << 20

// runtimeTuning applies the memory policy. A nil *runtimeTuning changes
// nothing (commands run in tests, which share one process).
type runtimeTuning struct {
	gcPercentSet bool  // GOGC is set
	limitSet     bool  // GOMEMLIMIT is set
	container    int64 // the limit below the container's memory.max; 0: none
}

// newRuntimeTuning reads GOGC, GOMEMLIMIT and the container's memory.max
// (readFile reads /proc and /sys); it changes nothing yet.
func newRuntimeTuning(env Env, readFile func(string) ([]byte, error)) *runtimeTuning {
	t := &runtimeTuning{}
	_, t.gcPercentSet = env("GOGC")
	_, t.limitSet = env("GOMEMLIMIT")
	if memMax, ok := containerMemoryMax(readFile); ok && !t.limitSet {
		t.container = belowLimit(memMax)
	}
	return t
}

// start sets the soft memory limit, once, before anything is loaded.
func (t *runtimeTuning) start() {
	switch {
	case t == nil:
	case t.limitSet:
		keepHeadroom()
	case t.container > 0:
		debug.SetMemoryLimit(t.container)
	}
}

// belowLimit is what the runtime aims at under a limit of limit bytes.
func belowLimit(limit int64) int64 { return limit - min(memoryLimitHeadroom, limit/4) }

// keepHeadroom lowers the runtime's memory limit (GOMEMLIMIT) by
// memoryLimitHeadroom, and returns the limit set (0: none).
func keepHeadroom() int64 {
	limit := debug.SetMemoryLimit(-1)
	if limit <= 0 || limit == math.MaxInt64 {
		return 0
	}
	debug.SetMemoryLimit(belowLimit(limit))
	return belowLimit(limit)
}

// loading is called before a configuration is loaded.
func (t *runtimeTuning) loading() {
	if t != nil && !t.gcPercentSet {
		debug.SetGCPercent(loadingGCPercent)
	}
}

// serving is called once a configuration is in force; it returns the
// collector's target and the soft memory limit (math.MaxInt64: none).
func (t *runtimeTuning) serving() (gcPercent int, limit int64) {
	if t == nil {
		return 0, 0
	}
	// What the loaded configuration holds, without the garbage of loading
	// it, whose pages go back to the system: loading a file at the caps
	// passes through three times the memory the configuration keeps.
	debug.FreeOSMemory()
	if t.gcPercentSet {
		gcPercent = debug.SetGCPercent(-1)
		debug.SetGCPercent(gcPercent)
	} else {
		gcPercent = gcPercentFor(liveHeap())
		debug.SetGCPercent(gcPercent)
	}
	return gcPercent, debug.SetMemoryLimit(-1)
}

// liveHeap is the heap the last collection found live.
func liveHeap() int64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// containerMemoryMax returns the memory.max of the cgroup (v2) the process
// is in, when it sets one: the cgroup named by /proc/self/cgroup's "0::"
// line under /sys/fs/cgroup, else /sys/fs/cgroup itself (a container with
// its own cgroup namespace sees its cgroup there).
func containerMemoryMax(readFile func(string) ([]byte, error)) (int64, bool) {
	var paths []string
	if data, err := readFile("/proc/self/cgroup"); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if rest, ok := strings.CutPrefix(line, "0::"); ok && strings.HasPrefix(rest, "/") && !strings.Contains(rest, "..") {
				paths = append(paths, path.Join("/sys/fs/cgroup", rest, "memory.max"))
			}
		}
	}
	paths = append(paths, "/sys/fs/cgroup/memory.max")
	for _, p := range paths {
		data, err := readFile(p)
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(data))
		if v == "max" {
			return 0, false
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return 0, false
		}
		return n, true
	}
	return 0, false
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

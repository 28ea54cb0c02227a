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
//     collector's target is loadingGCPercent: a file at the caps (1,000
//     policies, 50,000 origins) passes through a YAML node tree several
//     times its compiled size, and at the default target of 100 the heap
//     grew to twice that peak before a collection.
//   - While serving, the target is servingGCPercent.
//   - With GOMEMLIMIT set (the Kubernetes example sets it to the
//     container's limit), the Go runtime aims memoryLimitHeadroom lower
//     (at most a quarter of it): the binary's own pages, which the
//     runtime does not count, must fit under the container's limit too.
//   - Without it, the soft memory limit is the memory the process uses
//     once the configuration is loaded plus servingHeadroom. With a few
//     MiB of live heap (a usual configuration) the target decides and the
//     limit is never reached; with a configuration at the caps the limit
//     keeps the heap from growing to three times the configuration, as
//     the target alone let it. In a container whose cgroup (v2) sets
//     memory.max, the limit is never above memory.max less
//     memoryLimitHeadroom (at most a quarter), as for GOMEMLIMIT.
//
// GOGC, when set, replaces both targets. Measured with cmd/loadbench -caps
// (docs/performance.md).
const (
	// servingGCPercent: corsauthz's live heap is small, so at the default
	// of 100 the collector runs every few hundred Checks and its fixed
	// cost per cycle is a large part of a Check's CPU; at 200 it runs
	// half as often (about 15% less CPU per Check).
	servingGCPercent = 200
	loadingGCPercent = 50
	servingHeadroom  = 16 << 20
)

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
	ceiling      int64 // the highest soft limit: from the container, else none
}

// newRuntimeTuning reads GOGC, GOMEMLIMIT and the container's memory.max
// (readFile reads /proc and /sys). With GOMEMLIMIT set, it lowers the
// runtime's limit by memoryLimitHeadroom at once.
func newRuntimeTuning(env Env, readFile func(string) ([]byte, error)) *runtimeTuning {
	t := &runtimeTuning{ceiling: math.MaxInt64}
	_, t.gcPercentSet = env("GOGC")
	_, t.limitSet = env("GOMEMLIMIT")
	if t.limitSet {
		keepHeadroom()
	} else if memMax, ok := containerMemoryMax(readFile); ok {
		t.ceiling = belowLimit(memMax)
	}
	return t
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
	if t == nil {
		return
	}
	if !t.gcPercentSet {
		debug.SetGCPercent(loadingGCPercent)
	}
	if !t.limitSet {
		// The limit of the configuration before must not make the
		// collector run without pause while a larger one loads.
		debug.SetMemoryLimit(t.ceiling)
	}
}

// serving is called once a configuration is in force; it returns the
// runtime's soft memory limit (0: none) and where it comes from.
func (t *runtimeTuning) serving() (limit int64, source string) {
	if t == nil {
		return 0, ""
	}
	if !t.gcPercentSet {
		debug.SetGCPercent(servingGCPercent)
	}
	if t.limitSet {
		return debug.SetMemoryLimit(-1), "GOMEMLIMIT"
	}
	// What the loaded configuration holds, without the garbage of loading
	// it, whose pages go back to the system: loading a file at the caps
	// passes through three times the memory the configuration keeps.
	debug.FreeOSMemory()
	limit, source = memoryInUse()+servingHeadroom, "configuration"
	if limit > t.ceiling {
		limit, source = t.ceiling, "container"
	}
	debug.SetMemoryLimit(limit)
	return limit, source
}

// memoryInUse is the memory the Go runtime holds, as the soft memory limit
// counts it, less the heap pages that are free.
func memoryInUse() int64 {
	s := []metrics.Sample{
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
	}
	metrics.Read(s)
	return int64(s[0].Value.Uint64() - s[1].Value.Uint64() - s[2].Value.Uint64())
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

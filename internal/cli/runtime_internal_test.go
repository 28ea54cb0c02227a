package cli

import (
	"math"
	"runtime/debug"
	"testing"
)

// TestTuneGCKeepsHeadroom: with GOMEMLIMIT set, the Go runtime aims
// memoryLimitHeadroom lower (at most a quarter of the limit), so that the
// binary's own pages fit under the container's limit too; without it,
// nothing is set. Not parallel: it sets the process's memory limit.
func TestTuneGCKeepsHeadroom(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(before)
	gcBefore := debug.SetGCPercent(100)
	defer debug.SetGCPercent(gcBefore)
	env := func(vars map[string]string) Env {
		return func(name string) (string, bool) { v, ok := vars[name]; return v, ok }
	}
	for _, tc := range []struct {
		desc  string
		limit int64
		env   map[string]string
		want  int64
	}{
		{desc: "128 MiB, as shipped", limit: 128 << 20, env: map[string]string{"GOMEMLIMIT": "128MiB"}, want: 104 << 20},
		{desc: "64 MiB: a quarter kept", limit: 64 << 20, env: map[string]string{"GOMEMLIMIT": "64MiB"}, want: 48 << 20},
		{desc: "1 GiB", limit: 1 << 30, env: map[string]string{"GOMEMLIMIT": "1GiB"}, want: 1<<30 - 24<<20},
		{desc: "no GOMEMLIMIT", limit: math.MaxInt64, env: map[string]string{}, want: 0},
	} {
		debug.SetMemoryLimit(tc.limit)
		got := tuneGC(env(tc.env))
		if got != tc.want {
			t.Errorf("%s: tuneGC = %d, want %d", tc.desc, got, tc.want)
		}
		if tc.want > 0 && debug.SetMemoryLimit(-1) != tc.want {
			t.Errorf("%s: the runtime's limit is %d, want %d", tc.desc, debug.SetMemoryLimit(-1), tc.want)
		}
	}
}

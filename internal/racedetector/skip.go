package racedetector

import "testing"

// SkipMemoryMeasure skips a test that bounds resident memory, the heap or
// allocations, when the race detector is on: its shadow memory and
// sync.Pool's dropped items are then part of what the test would measure.
func SkipMemoryMeasure(tb testing.TB) {
	tb.Helper()
	if Enabled {
		tb.Skip("-race: the race detector's shadow memory and dropped pool items change the memory this test bounds; it is measured without -race")
	}
}

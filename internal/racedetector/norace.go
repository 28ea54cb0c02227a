//go:build !race

// Package racedetector says whether the binary was built with -race, for
// the tests whose measure the race detector changes: its shadow memory
// counts in a process's resident size (children that peak at 60 MiB peak
// at about 250 MiB under -race), sync.Pool drops items at random under it,
// so pooled buffers are allocated again, and its instrumentation
// multiplies the CPU code takes. Memory and allocation bounds are measured
// without -race, and CPU bounds are widened by CPUFactor under it; the
// rest of the suite runs as without it.
package racedetector

// Enabled is false: the binary was built without -race.
const Enabled = false

// CPUFactor multiplies a test's CPU-time bound: 1 without the race
// detector.
const CPUFactor = 1

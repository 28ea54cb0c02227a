//go:build !race

// Package racedetector says whether the binary was built with -race, for
// the tests whose measure the race detector changes: its shadow memory
// counts in a process's resident size (children that peak at 60 MiB peak
// at about 250 MiB under -race), and sync.Pool drops items at random under
// it, so pooled buffers are allocated again. Memory and allocation bounds
// are measured without -race; the rest of the suite runs under it.
package racedetector

// Enabled is false: the binary was built without -race.
const Enabled = false

//go:build !race

// Package racedetector says whether the binary was built with -race, for
// tests whose measure the race detector changes: its shadow memory counts
// in a process's resident size (a child that peaks at 60 MiB peaks at
// about 250 MiB under -race), so a memory bound measured as RSS is only
// measured without it.
package racedetector

// Enabled is false: the binary was built without -race.
const Enabled = false

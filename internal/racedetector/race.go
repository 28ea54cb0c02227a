//go:build race

package racedetector

// Enabled is true: the binary was built with -race.
const Enabled = true

// CPUFactor multiplies a test's CPU-time bound: under the race detector
// code takes 2 to 20 times its CPU (the Go documentation's figures;
// TestNackFloodBounded took 1.3 times its bound).
const CPUFactor = 10

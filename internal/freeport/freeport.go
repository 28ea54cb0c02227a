// Package freeport gives tests a loopback address to hand to a program
// that must be told its port before it starts (NGINX, Caddy, a corsauthz
// started with fixed flags).
//
// A port found with 127.0.0.1:0 and closed again is in the kernel's
// ephemeral range, where every outgoing connection and every other
// listener on port 0 also takes its port: under a busy test run one of
// them can take it before the program binds it ("address already in use"
// failed a CI run that way). The ports here are below that range, where
// only another test's explicit choice can land, and are checked free.
package freeport

import (
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
)

// Below Linux's default ephemeral range (32768–60999) and above the
// ports services usually own.
const (
	low  = 20000
	high = 32000
)

// Addr returns "127.0.0.1:PORT" with a port nothing listens on now.
func Addr(tb testing.TB) string {
	tb.Helper()
	for range 100 {
		addr := "127.0.0.1:" + strconv.Itoa(low+rand.IntN(high-low))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue // taken: try another
		}
		l.Close()
		return addr
	}
	tb.Fatal("freeport: no free loopback port found in 100 tries")
	return ""
}

// Package freeport gives tests and cmd/loadbench a loopback address to
// hand to a program that must be told its port before it starts (NGINX,
// Caddy, a corsauthz started with fixed flags).
//
// A port found with 127.0.0.1:0 and closed again is in the kernel's
// ephemeral range, where every outgoing connection and every other
// listener on port 0 also takes its port: under a busy test run one of
// them can take it before the program binds it ("address already in use"
// failed a CI run that way). The ports here are below that range, where
// only another test's explicit choice can land, and are checked free.
package freeport

import (
	"errors"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
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
	addr, err := Find()
	if err != nil {
		tb.Fatal(err)
	}
	return addr
}

// Find is Addr for a program: it returns an error instead of failing a
// test.
func Find() (string, error) {
	given.Lock()
	defer given.Unlock()
	for range 100 {
		addr := "127.0.0.1:" + strconv.Itoa(low+rand.IntN(high-low))
		if given.addrs[addr] {
			continue // handed out already, maybe not bound yet
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue // taken: try another
		}
		if err := l.Close(); err != nil {
			return "", err
		}
		given.addrs[addr] = true
		return addr, nil
	}
	return "", errors.New("freeport: no free loopback port found in 100 tries")
}

// given are the addresses this process was given: two calls in a row must
// not return the same port before the first program has bound it.
var given = struct {
	sync.Mutex
	addrs map[string]bool
}{addrs: map[string]bool{}}

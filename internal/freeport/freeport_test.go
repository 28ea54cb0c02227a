package freeport_test

import (
	"net"
	"testing"

	"github.com/corsauthz/corsauthz/internal/freeport"
)

// TestFindDistinct: addresses handed out in one process differ (500 draws
// from 12,000 ports would repeat one almost surely otherwise), and the one
// Addr gives can be bound.
func TestFindDistinct(t *testing.T) {
	seen := map[string]bool{}
	for range 500 {
		addr, err := freeport.Find()
		if err != nil {
			t.Fatal(err)
		}
		if seen[addr] {
			t.Fatalf("%s handed out twice", addr)
		}
		seen[addr] = true
	}
	l, err := net.Listen("tcp", freeport.Addr(t))
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
}

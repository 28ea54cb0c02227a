package policy

import (
	"fmt"
	"strings"
	"testing"
)

// originSetCases are lists of origins as compileOrigins builds them (exact
// origins and patterns, in file order) and the origins to look up.
var originSetCases = []struct {
	desc  string
	list  string // "," separated; entries with "*" are patterns, not in the set
	looks string // "," separated, looked up
}{
	{desc: "empty", list: "", looks: "https://a.example,,null"},
	{desc: "one", list: "https://a.example", looks: "https://a.example,https://b.example,https://a.exampl,"},
	{desc: "null and a pattern", list: "null,https://*.example.com", looks: "null,https://*.example.com,https://x.example.com"},
	{desc: "eight (the list)", list: "https://1.ex,https://2.ex,https://3.ex,https://4.ex,https://5.ex,https://6.ex,https://7.ex,https://8.ex", looks: "https://1.ex,https://8.ex,https://9.ex"},
	{desc: "nine (the table)", list: "https://1.ex,https://2.ex,https://3.ex,https://4.ex,https://5.ex,https://6.ex,https://7.ex,https://8.ex,https://9.ex", looks: "https://1.ex,https://9.ex,https://10.ex,https://*.ex"},
	{desc: "patterns among many", list: "https://*.a.ex,https://1.ex,https://*.b.ex,https://2.ex,https://3.ex,https://4.ex,https://5.ex,https://6.ex,https://7.ex,https://8.ex,https://9.ex,https://10.ex", looks: "https://*.a.ex,https://*.b.ex,https://10.ex,https://11.ex"},
}

// checkOriginSet builds a set from list as compileOrigins does (patterns
// and repeats in the list, not in the set) and compares every look-up with
// a map's.
func checkOriginSet(t *testing.T, list, looks []string, reserve int) {
	t.Helper()
	var s originSet
	s.reserve(reserve)
	want := map[string]bool{}
	var out []string
	for _, o := range list {
		if strings.Contains(o, "*") {
			out = append(out, o)
			continue
		}
		if got := s.has(out, o); got != want[o] {
			t.Fatalf("has(%q) while adding = %v, want %v", o, got, want[o])
		}
		if want[o] {
			continue
		}
		want[o] = true
		out = append(out, o)
		s.add(out, len(out)-1)
	}
	for _, o := range append(looks, list...) {
		if got := s.has(out, o); got != want[o] {
			t.Errorf("has(%q) = %v, want %v (set of %d)", o, got, want[o], len(want))
		}
	}
	if s.n != len(want) {
		t.Errorf("n = %d, want %d", s.n, len(want))
	}
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func TestOriginSet(t *testing.T) {
	for _, tc := range originSetCases {
		t.Run(tc.desc, func(t *testing.T) {
			for _, reserve := range []int{0, len(split(tc.list)), 1000} {
				checkOriginSet(t, split(tc.list), split(tc.looks), reserve)
			}
		})
	}
	t.Run("50,000, growing and reserved", func(t *testing.T) {
		list := make([]string, 50000)
		for i := range list {
			list[i] = fmt.Sprintf("https://app%d.example.com", i)
		}
		looks := []string{"https://app50000.example.com", "https://app-1.example.com", "https://app1.example.co"}
		checkOriginSet(t, list, looks, 0)
		checkOriginSet(t, list, looks, len(list))
	})
}

func FuzzOriginSet(f *testing.F) {
	for _, tc := range originSetCases {
		f.Add(tc.list, tc.looks)
	}
	f.Fuzz(func(t *testing.T, list, looks string) {
		checkOriginSet(t, split(list), split(looks), len(split(list))/2)
	})
}

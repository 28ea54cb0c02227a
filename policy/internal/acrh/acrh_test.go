package acrh_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/corsauthz/corsauthz/policy/internal/acrh"
)

var nextCases = []struct {
	desc string
	in   string
	want []string
}{
	{desc: "empty", in: "", want: nil},
	{desc: "one", in: "content-type", want: []string{"content-type"}},
	{desc: "browser form", in: "authorization,content-type,x-request-id", want: []string{"authorization", "content-type", "x-request-id"}},
	{desc: "case kept", in: "Content-Type,X-Request-Id", want: []string{"Content-Type", "X-Request-Id"}},
	{desc: "spaces around commas", in: "a , b ,c", want: []string{"a", "b", "c"}},
	{desc: "tabs around commas", in: "a\t,\tb", want: []string{"a", "b"}},
	{desc: "leading and trailing whitespace", in: " \ta, b\t ", want: []string{"a", "b"}},
	{desc: "empty elements", in: ",a,,b,", want: []string{"a", "b"}},
	{desc: "only separators", in: " , ,\t,", want: nil},
	{desc: "duplicates kept", in: "a,a,A", want: []string{"a", "a", "A"}},
	{desc: "inner space kept", in: "a b, c", want: []string{"a b", "c"}},
	{desc: "other whitespace is not a separator", in: "a\n,\rb", want: []string{"a\n", "\rb"}},
	{desc: "semicolon is not a separator", in: "a;b", want: []string{"a;b"}},
}

func elements(s string) []string {
	var out []string
	for elem, i, ok := acrh.Next(s, 0); ok; elem, i, ok = acrh.Next(s, i) {
		out = append(out, elem)
	}
	return out
}

func TestNext(t *testing.T) {
	t.Parallel()
	for _, tc := range nextCases {
		if got := elements(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("%s: elements of %q = %q, want %q", tc.desc, tc.in, got, tc.want)
		}
	}
}

func TestNextPastTheEnd(t *testing.T) {
	t.Parallel()
	if elem, next, ok := acrh.Next("a,b", 10); ok || elem != "" || next != 10 {
		t.Errorf("Next past the end = %q, %d, %t; want \"\", 10, false", elem, next, ok)
	}
}

func TestNextDoesNotAllocate(t *testing.T) {
	s := " Content-Type , X-Request-Id,,authorization\t"
	allocs := testing.AllocsPerRun(100, func() {
		for _, i, ok := acrh.Next(s, 0); ok; _, i, ok = acrh.Next(s, i) {
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations, want 0", allocs)
	}
}

// FuzzACRH: Next never panics and always makes progress; its elements are
// non-empty, hold no comma and no surrounding space or tab, and are exactly
// what splitting on commas and trimming spaces and tabs gives.
func FuzzACRH(f *testing.F) {
	for _, tc := range nextCases {
		f.Add(tc.in)
	}
	f.Add(strings.Repeat("x-a,", acrh.MaxLen/4))
	f.Fuzz(func(t *testing.T, s string) {
		var got []string
		i, calls := 0, 0
		for {
			calls++
			if calls > len(s)+2 {
				t.Fatalf("Next called %d times on %d bytes: no progress", calls, len(s))
			}
			elem, next, ok := acrh.Next(s, i)
			if next < i || next > len(s) {
				t.Fatalf("Next(%q, %d) = next %d, outside [%d, %d]", s, i, next, i, len(s))
			}
			if !ok {
				if elem != "" || next != len(s) {
					t.Fatalf("Next(%q, %d) at the end = %q, %d", s, i, elem, next)
				}
				break
			}
			if next == i {
				t.Fatalf("Next(%q, %d) returned an element without moving on", s, i)
			}
			if elem == "" || strings.ContainsRune(elem, ',') || strings.Trim(elem, " \t") != elem {
				t.Fatalf("Next(%q, %d) = element %q", s, i, elem)
			}
			got = append(got, elem)
			i = next
		}

		var want []string
		for part := range strings.SplitSeq(s, ",") {
			if part = strings.Trim(part, " \t"); part != "" {
				want = append(want, part)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("elements of %q = %q, want %q", s, got, want)
		}
		// The elements, put end to end, are the input without its commas
		// and without the spaces and tabs around them.
		strip := func(s string) string {
			b := make([]byte, 0, len(s))
			for i := 0; i < len(s); i++ {
				if c := s[i]; c != ',' && c != ' ' && c != '\t' {
					b = append(b, c)
				}
			}
			return string(b)
		}
		if strip(strings.Join(got, "")) != strip(s) {
			t.Errorf("elements of %q lose or add bytes: %q", s, got)
		}
	})
}

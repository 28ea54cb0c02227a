package httpsyntax_test

import (
	"strings"
	"testing"

	"github.com/corsauthz/corsauthz/policy/internal/httpsyntax"
)

func TestIsToken(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want bool
	}{
		{"GET", true},
		{"X-Request-Id", true},
		{"!#$%&'*+-.^_`|~09azAZ", true},
		{"", false},
		{"GE T", false},
		{"X-Foo:", false},
		{"a,b", false},
		{"a\tb", false},
		{"a\"b", false},
		{"(a)", false},
		{"ü", false},
		{"a\x00", false},
		{"a\x7f", false},
	}
	for _, tc := range cases {
		if got := httpsyntax.IsToken(tc.in); got != tc.want {
			t.Errorf("IsToken(%q) = %t, want %t", tc.in, got, tc.want)
		}
	}
	for c := 0; c < 256; c++ {
		if got, want := httpsyntax.IsTokenChar(byte(c)), httpsyntax.IsToken(string([]byte{byte(c)})); got != want {
			t.Errorf("IsTokenChar(%q) = %t, IsToken = %t", byte(c), got, want)
		}
	}
}

func TestCase(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "abc", "Content-Type", "X-ÜBER", "AUTHORIZATION", "a1-_"} {
		lower := string(httpsyntax.AppendLower(nil, s))
		want := strings.Map(func(r rune) rune {
			if 'A' <= r && r <= 'Z' {
				return r + 'a' - 'A'
			}
			return r
		}, s)
		if lower != want {
			t.Errorf("AppendLower(%q) = %q, want %q", s, lower, want)
		}
		if got, want := httpsyntax.HasUpper(s), lower != s; got != want {
			t.Errorf("HasUpper(%q) = %t, want %t", s, got, want)
		}
	}
	if got := string(httpsyntax.AppendLower([]byte("x-"), "AB")); got != "x-ab" {
		t.Errorf("AppendLower appends: got %q", got)
	}
}

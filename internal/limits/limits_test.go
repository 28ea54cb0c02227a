package limits_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/corsauthz/corsauthz/internal/limits"
)

func TestCut(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		desc, in, want string
	}{
		{desc: "short", in: "abc", want: "abc"},
		{desc: "exactly the limit", in: strings.Repeat("a", limits.LoggedValueLen), want: strings.Repeat("a", limits.LoggedValueLen)},
		{desc: "one byte over", in: strings.Repeat("a", limits.LoggedValueLen+1), want: strings.Repeat("a", limits.LoggedValueLen) + "…[cut: 257 bytes]"},
		{desc: "a million bytes", in: strings.Repeat("b", 1_000_000), want: strings.Repeat("b", limits.LoggedValueLen) + "…[cut: 1000000 bytes]"},
		{desc: "cut inside a character", in: strings.Repeat("a", limits.LoggedValueLen-1) + "é" + "zz", want: strings.Repeat("a", limits.LoggedValueLen-1) + "…[cut: 259 bytes]"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			got := limits.Cut(tc.in)
			if got != tc.want {
				t.Errorf("Cut = %q, want %q", got, tc.want)
			}
			if !utf8.ValidString(got) {
				t.Errorf("Cut = %q: not valid UTF-8", got)
			}
		})
	}
}

func FuzzCut(f *testing.F) {
	f.Add("abc")
	f.Add(strings.Repeat("é", 200))
	f.Fuzz(func(t *testing.T, s string) {
		got := limits.Cut(s)
		if len(got) > limits.LoggedValueLen+40 {
			t.Fatalf("Cut(%d bytes) is %d bytes", len(s), len(got))
		}
		if len(s) <= limits.LoggedValueLen && got != s {
			t.Fatalf("Cut changed a short value")
		}
		if utf8.ValidString(s) && !utf8.ValidString(got) {
			t.Fatalf("Cut made valid UTF-8 invalid")
		}
	})
}

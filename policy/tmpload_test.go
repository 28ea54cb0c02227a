package policy_test

import (
	"os"
	"testing"

	"github.com/corsauthz/corsauthz/policy"
)

func BenchmarkTmpLoadCaps(b *testing.B) {
	data, err := os.ReadFile("/tmp/perf/caps.yaml")
	if err != nil {
		b.Skip()
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := policy.Load("caps.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
}

package policy_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/corsauthz/corsauthz/policy"
)

// config10000 is benchConfig's policy with 10,000 exact origins (the last
// one https://app.example.com) and 100 wildcard patterns: the size of a
// large multi-tenant installation.
func config10000() string {
	var b strings.Builder
	b.WriteString(`
policies:
  - name: api
    match:
      hosts: [api.example.com]
    allowed_origins:
`)
	for i := range 9999 {
		fmt.Fprintf(&b, "      - https://tenant%d.app.example.com\n", i)
	}
	b.WriteString("      - https://app.example.com\n")
	for i := range 100 {
		fmt.Fprintf(&b, "      - https://*.tenant%d.example.net\n", i)
	}
	b.WriteString(`    allowed_methods: [PUT, DELETE]
    allowed_headers: [Content-Type, Authorization, X-Request-Id]
    exposed_headers: [X-Request-Id]
    allow_credentials: true
    max_age_seconds: 600
`)
	return b.String()
}

// BenchmarkCompile10000 loads (parses, validates and compiles) the
// 10,000-origin configuration.
func BenchmarkCompile10000(b *testing.B) {
	data := []byte(config10000())
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, _, err := policy.Load("large.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecideLarge10000 is BenchmarkDecide's requests on the
// 10,000-origin configuration: deciding costs the same as on a small one
// (compare with BenchmarkDecide/actual_allowed and friends).
func BenchmarkDecideLarge10000(b *testing.B) {
	large := mustLoad(b, config10000())
	b.Run("actual_allowed", func(b *testing.B) {
		benchDecide(b, large, benchActual, policy.KindActualAllowed)
	})
	b.Run("preflight_allowed", func(b *testing.B) {
		benchDecide(b, large, benchPreflight, policy.KindPreflightAllowed)
	})
	b.Run("actual_disallowed", func(b *testing.B) {
		benchDecide(b, large, benchDisallowed, policy.KindActualDisallowed)
	})
	b.Run("actual_allowed_wildcard", func(b *testing.B) {
		benchDecide(b, large, benchWildcard, policy.KindActualAllowed)
	})
	b.Run("actual_allowed_by_host", func(b *testing.B) {
		benchDecide(b, large, benchByHost, policy.KindActualAllowed)
	})
}

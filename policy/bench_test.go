package policy_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/corsauthz/corsauthz/policy"
)

const benchConfig = `
policies:
  - name: api
    match:
      hosts: [api.example.com]
    allowed_origins: [https://app.example.com]
    allowed_methods: [PUT, DELETE]
    allowed_headers: [Content-Type, Authorization, X-Request-Id]
    exposed_headers: [X-Request-Id]
    allow_credentials: true
    max_age_seconds: 600
`

// largeConfig is benchConfig with 1,000 exact origins and 100 wildcard
// patterns, https://app.example.com among them.
func largeConfig() string {
	var b strings.Builder
	b.WriteString(`
policies:
  - name: api
    match:
      hosts: [api.example.com]
    allowed_origins:
      - https://app.example.com
`)
	for i := range 999 {
		fmt.Fprintf(&b, "      - https://app%d.example.com\n", i)
	}
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

var (
	benchActual = policy.Request{
		Method: "GET", Host: "api.example.com", Path: "/v1/orders", Policy: "api",
		Origin: "https://app.example.com",
	}
	benchPreflight = policy.Request{
		Method: "OPTIONS", Host: "api.example.com", Path: "/v1/orders", Policy: "api",
		Origin: "https://app.example.com", RequestMethod: "PUT", RequestHeaders: "authorization,content-type",
	}
	benchDisallowed = policy.Request{
		Method: "GET", Host: "api.example.com", Path: "/v1/orders", Policy: "api",
		Origin: "https://evil.example.net",
	}
	benchWildcard = policy.Request{
		Method: "GET", Host: "api.example.com", Path: "/v1/orders", Policy: "api",
		Origin: "https://eu.shop.tenant50.example.net",
	}
	benchWildcardPreflight = policy.Request{
		Method: "OPTIONS", Host: "api.example.com", Path: "/v1/orders", Policy: "api",
		Origin: "https://eu.shop.tenant50.example.net", RequestMethod: "PUT", RequestHeaders: "authorization,content-type",
	}
	benchByHost = policy.Request{
		Method: "GET", Host: "api.example.com", Path: "/v1/orders",
		Origin: "https://app.example.com",
	}
)

// benchDecide measures what a front end does per request: Decide, then
// AppendHeaders into a reused slice.
func benchDecide(b *testing.B, e *policy.Engine, req policy.Request, want policy.Kind) {
	b.Helper()
	if d, err := e.Decide(&req); err != nil || d.Kind != want {
		b.Fatalf("Decide = %v, %v; want %v", d.Kind, err, want)
	}
	dst := make([]policy.Header, 0, policy.MaxHeaders)
	b.ReportAllocs()
	for b.Loop() {
		d, _ := e.Decide(&req)
		dst = d.AppendHeaders(dst[:0])
	}
}

func BenchmarkDecide(b *testing.B) {
	small := mustLoad(b, benchConfig)
	large := mustLoad(b, largeConfig())
	b.Run("actual_allowed", func(b *testing.B) {
		benchDecide(b, small, benchActual, policy.KindActualAllowed)
	})
	b.Run("preflight_allowed", func(b *testing.B) {
		benchDecide(b, small, benchPreflight, policy.KindPreflightAllowed)
	})
	b.Run("actual_disallowed", func(b *testing.B) {
		benchDecide(b, small, benchDisallowed, policy.KindActualDisallowed)
	})
	b.Run("actual_allowed_by_host", func(b *testing.B) {
		benchDecide(b, small, benchByHost, policy.KindActualAllowed)
	})
	b.Run("no_origin", func(b *testing.B) {
		benchDecide(b, small, policy.Request{Method: "GET", Host: "api.example.com", Path: "/v1/orders"}, policy.KindNotCORS)
	})
	groups := mustLoad(b, groupConfig)
	b.Run("group_second_policy", func(b *testing.B) {
		benchDecide(b, groups, policy.Request{Method: "GET", Host: "api.example.com", Path: "/v1/orders", Origin: "https://partner.example.net"}, policy.KindActualAllowed)
	})
	b.Run("group_no_origin", func(b *testing.B) {
		benchDecide(b, groups, policy.Request{Method: "GET", Host: "api.example.com", Path: "/v1/orders"}, policy.KindNotCORS)
	})
	b.Run("large/actual_allowed", func(b *testing.B) {
		benchDecide(b, large, benchActual, policy.KindActualAllowed)
	})
	b.Run("large/preflight_allowed", func(b *testing.B) {
		benchDecide(b, large, benchPreflight, policy.KindPreflightAllowed)
	})
	b.Run("large/actual_disallowed", func(b *testing.B) {
		benchDecide(b, large, benchDisallowed, policy.KindActualDisallowed)
	})
	b.Run("large/actual_allowed_wildcard", func(b *testing.B) {
		benchDecide(b, large, benchWildcard, policy.KindActualAllowed)
	})
	b.Run("large/preflight_allowed_wildcard", func(b *testing.B) {
		benchDecide(b, large, benchWildcardPreflight, policy.KindPreflightAllowed)
	})
}

func BenchmarkLoad(b *testing.B) {
	data := []byte(largeConfig())
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := policy.Load("bench.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
}

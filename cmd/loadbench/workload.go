package main

import (
	"fmt"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The workload: a configuration of the size a large installation has, and
// the three sorts of Check a gateway sends most, each as Envoy fills it for
// a Chrome page at https://app.example.com calling https://api.example.com
// with every header the browser sends (no allowed_headers filter: the
// heavier case, and what Istio always sends).

// Configuration sizes.
const (
	numPolicies      = 20
	numExactOrigins  = 1000 // in the api policy, app.example.com among them
	numWildcards     = 100  // in the api policy
	benchPolicyName  = "api"
	benchAllowOrigin = "https://app.example.com"
)

// benchConfig returns the YAML configuration the servers run: the api
// policy the requests name with cors_policy (1,000 exact origins and 100
// wildcard patterns) and 19 others selected by host and path prefix.
func benchConfig() string {
	var b strings.Builder
	b.WriteString("# Written by cmd/loadbench.\npolicies:\n")
	b.WriteString(`  - name: api
    match:
      hosts: [api.example.com, "*.api.example.com"]
      path_prefixes: [/v1/, /v2/]
    allowed_origins:
      - ` + benchAllowOrigin + "\n")
	for i := range numExactOrigins - 1 {
		fmt.Fprintf(&b, "      - https://tenant%d.app.example.com\n", i)
	}
	for i := range numWildcards {
		fmt.Fprintf(&b, "      - https://*.customer%d.example.net\n", i)
	}
	b.WriteString(`    allowed_methods: [GET, POST, PUT, PATCH, DELETE]
    allowed_headers: [Authorization, Content-Type, X-Request-Id]
    exposed_headers: [X-Request-Id]
    allow_credentials: true
    max_age_seconds: 600
`)
	for i := 1; i < numPolicies; i++ {
		fmt.Fprintf(&b, `  - name: svc%[1]d
    match:
      hosts: [svc%[1]d.example.com, "*.svc%[1]d.example.com"]
      path_prefixes: [/v1/, /internal/%[1]d/]
    allowed_origins: [https://app.example.com, https://admin%[1]d.example.com, "https://*.svc%[1]d.example.org"]
    allowed_methods: [GET, POST, DELETE]
    allowed_headers: [Content-Type, X-Trace-Id]
    exposed_headers: [ETag]
    allow_credentials: %[2]t
    max_age_seconds: %[3]d
`, i, i%2 == 0, 60*i)
	}
	b.WriteString("default_policy: svc1\n")
	return b.String()
}

// requestKind is one sort of Check in the load.
type requestKind struct {
	name string
	desc string
	req  *authv3.CheckRequest
}

// browserHeaders are what Chrome sends on a fetch() from app.example.com,
// plus what Envoy adds before ext_authz runs.
func browserHeaders(method, path string) map[string]string {
	return map[string]string{
		":authority":                     "api.example.com",
		":method":                        method,
		":path":                          path,
		":scheme":                        "https",
		"accept":                         "application/json, text/plain, */*",
		"accept-encoding":                "gzip, deflate, br, zstd",
		"accept-language":                "en-US,en;q=0.9,de;q=0.8",
		"origin":                         benchAllowOrigin,
		"priority":                       "u=1, i",
		"referer":                        "https://app.example.com/orders/42",
		"sec-ch-ua":                      `"Chromium";v="139", "Not;A=Brand";v="99"`,
		"sec-ch-ua-mobile":               "?0",
		"sec-ch-ua-platform":             `"Linux"`,
		"sec-fetch-dest":                 "empty",
		"sec-fetch-mode":                 "cors",
		"sec-fetch-site":                 "same-site",
		"user-agent":                     "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/139.0.0.0 Safari/537.36",
		"x-forwarded-for":                "203.0.113.10",
		"x-forwarded-proto":              "https",
		"x-envoy-external-address":       "203.0.113.10",
		"x-request-id":                   "0f6f3b52-1c4e-4d0a-9a56-6f1c2b7d9e01",
		"x-envoy-expected-rq-timeout-ms": "15000",
	}
}

// checkRequest is a CheckRequest as Envoy's HTTP ext_authz filter fills it.
func checkRequest(method, path, protocol string, headers map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: socketAddress("203.0.113.10", 51234)},
		Destination: &authv3.AttributeContext_Peer{
			Address:   socketAddress("192.0.2.10", 8080),
			Principal: "",
		},
		Request: &authv3.AttributeContext_Request{
			Time: &timestamppb.Timestamp{Seconds: 1768471200, Nanos: 120000000},
			Http: &authv3.AttributeContext_HttpRequest{
				Id:       "7195833436459834715",
				Method:   method,
				Headers:  headers,
				Path:     path,
				Host:     "api.example.com",
				Scheme:   "https",
				Protocol: protocol,
			},
		},
		ContextExtensions: map[string]string{"cors_policy": benchPolicyName},
	}}
}

func socketAddress(addr string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       addr,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// requestKinds are the loads, in the order they are reported.
func requestKinds() []requestKind {
	preflight := browserHeaders("OPTIONS", "/v1/orders/42")
	preflight["access-control-request-method"] = "PUT"
	preflight["access-control-request-headers"] = "authorization,content-type,x-request-id"

	actual := browserHeaders("PUT", "/v1/orders/42")
	actual["authorization"] = "Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1c2VyLTQyIn0.c2lnbmF0dXJl"
	actual["content-type"] = "application/json"
	actual["content-length"] = "27"
	actual["cookie"] = "session=9b2c4e1f7a; theme=dark"

	// A same-origin page load: no Origin, but the rest of what a browser sends.
	noOrigin := browserHeaders("GET", "/v1/orders?status=open")
	delete(noOrigin, "origin")
	noOrigin["accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	noOrigin["sec-fetch-mode"] = "navigate"
	noOrigin["sec-fetch-dest"] = "document"
	noOrigin["sec-fetch-site"] = "none"
	noOrigin["sec-fetch-user"] = "?1"
	noOrigin["upgrade-insecure-requests"] = "1"
	noOrigin["cookie"] = "session=9b2c4e1f7a; theme=dark"
	delete(noOrigin, "referer")

	return []requestKind{
		{"preflight", "OPTIONS with Origin, Access-Control-Request-Method/-Headers: answered 204", checkRequest("OPTIONS", "/v1/orders/42", "HTTP/2", preflight)},
		{"actual", "PUT with Origin, cookies, Authorization: OK + Access-Control-Allow-Origin etc.", checkRequest("PUT", "/v1/orders/42", "HTTP/2", actual)},
		{"no-origin", "GET without Origin (same-origin page load): OK + Vary: Origin", checkRequest("GET", "/v1/orders?status=open", "HTTP/2", noOrigin)},
	}
}

// protoset returns a FileDescriptorSet holding the ext_authz service and
// every file it imports, for ghz --protoset: both servers are called the
// same way, and no reflection call is counted in either one's CPU time.
func protoset() *descriptorpb.FileDescriptorSet {
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := range imports.Len() {
			add(imports.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	add(authv3.File_envoy_service_auth_v3_external_auth_proto)
	return set
}

// The documented caps of a configuration (policy.MaxPolicies and
// policy.MaxOrigins): capsConfig is benchConfig's api policy and as many
// other policies, each with its own hosts and origins, as make 1,000
// policies and 50,000 allowed origins (4,096 of them wildcard patterns).
const (
	capsPolicies = 1000
	capsOrigins  = 50_000
)

// capsConfig returns the configuration at the caps. The requests of the
// load decide under its api policy, as under benchConfig's.
func capsConfig() string {
	var b strings.Builder
	bench := benchConfig()
	// benchConfig's api policy, then the others.
	api, _, _ := strings.Cut(bench, "  - name: svc1\n")
	b.WriteString(strings.Replace(api, "# Written by cmd/loadbench.", "# Written by cmd/loadbench: a configuration at the caps.", 1))
	rest := capsOrigins - numExactOrigins - numWildcards
	others := capsPolicies - 1
	for i := 1; i <= others; i++ {
		n := rest / others
		if i <= rest%others {
			n++
		}
		fmt.Fprintf(&b, `  - name: svc%[1]d
    match:
      hosts: [svc%[1]d.example.com, "*.svc%[1]d.example.com"]
      path_prefixes: [/v1/, /internal/%[1]d/]
    allowed_origins:
`, i)
		for j := range n {
			if j%10 == 9 {
				fmt.Fprintf(&b, "      - https://*.customer%d.svc%d.example.net\n", j, i)
			} else {
				fmt.Fprintf(&b, "      - https://tenant%d.svc%d.example.org\n", j, i)
			}
		}
		fmt.Fprintf(&b, `    allowed_methods: [GET, POST, DELETE]
    allowed_headers: [Content-Type, X-Trace-Id]
    exposed_headers: [ETag]
    allow_credentials: %[1]t
    max_age_seconds: %[2]d
`, i%2 == 0, 60*(i%100+1))
	}
	b.WriteString("default_policy: svc1\n")
	return b.String()
}

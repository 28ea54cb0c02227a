package deploy_test

import (
	"bytes"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/corsauthz/corsauthz/httpauthz"
	"github.com/corsauthz/corsauthz/server"
)

const (
	envoyHTTPPath      = "envoy/envoy-http.yaml"
	meshConfigHTTPPath = "istio/meshconfig-http.yaml"
)

// httpPort is the HTTP authorization listener's default port.
func httpPort(t *testing.T) uint32 {
	t.Helper()
	_, p, err := net.SplitHostPort(server.DefaultHTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return uint32(n)
}

// passesAll reports whether list matches every name of corsResponseHeaders
// and Vary, as Envoy's header matchers would (names in lower case).
func passesAll(list *matcherv3.ListStringMatcher) bool {
	match := func(name string) bool {
		for _, p := range list.GetPatterns() {
			if (p.GetExact() != "" && p.GetExact() == name) || (p.GetPrefix() != "" && strings.HasPrefix(name, p.GetPrefix())) {
				return true
			}
		}
		return false
	}
	for _, name := range append(slices.Clone(corsResponseHeaders), "vary") {
		if !match(name) {
			return false
		}
	}
	return true
}

func loadEnvoyHTTPConfig(t *testing.T, data []byte) (*hcmv3.HttpConnectionManager, *extauthzv3.ExtAuthz, envoyConfig) {
	t.Helper()
	b, unpacked, err := loadBootstrap(data)
	if err != nil {
		t.Fatalf("%s: %v", envoyHTTPPath, err)
	}
	hcms := ofType[*hcmv3.HttpConnectionManager](unpacked)
	eas := ofType[*extauthzv3.ExtAuthz](unpacked)
	if len(hcms) != 1 || len(eas) != 1 {
		t.Fatalf("%s: %d HttpConnectionManagers and %d ext_authz filters, want one each", envoyHTTPPath, len(hcms), len(eas))
	}
	return hcms[0], eas[0], envoyConfig{bootstrap: b, hcm: hcms[0], extAuthz: eas[0], unpacked: unpacked}
}

// TestEnvoyHTTPService checks envoy-http.yaml, decoded strictly into
// Envoy's types, against what corsauthz's HTTP listener expects.
func TestEnvoyHTTPService(t *testing.T) {
	t.Parallel()
	hcm, ea, cfg := loadEnvoyHTTPConfig(t, readFile(t, envoyHTTPPath))
	hs := ea.GetHttpService()
	if hs == nil || ea.GetGrpcService() != nil {
		t.Fatalf("ext_authz: http_service %v, grpc_service %v; want http_service only", hs, ea.GetGrpcService())
	}
	if ea.GetFailureModeAllow() || ea.GetStatusOnError().GetCode() != typev3.StatusCode_ServiceUnavailable {
		t.Errorf("failure_mode_allow %t, status_on_error %v; want fail closed with 503", ea.GetFailureModeAllow(), ea.GetStatusOnError())
	}
	if d := hs.GetServerUri().GetTimeout().AsDuration(); d <= 0 || d > time.Second {
		t.Errorf("server_uri.timeout = %v, want in (0, 1s]", d)
	}
	if p := hs.GetPathPrefix(); !strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") {
		t.Errorf("path_prefix = %q: corsauthz's --http-path-prefix takes a path without a trailing /", p)
	}
	if !strings.Contains(string(readFile(t, envoyHTTPPath)), "--http-path-prefix "+hs.GetPathPrefix()) {
		t.Errorf("the file does not tell corsauthz's --http-path-prefix %s", hs.GetPathPrefix())
	}

	// The cluster: the HTTP listener's port, its health endpoint.
	cl := cfg.cluster(hs.GetServerUri().GetCluster())
	if cl == nil {
		t.Fatalf("cluster %q is not defined", hs.GetServerUri().GetCluster())
	}
	for _, a := range socketAddresses(cl) {
		if a.GetPortValue() != httpPort(t) {
			t.Errorf("cluster %q endpoint port %d, want %d", cl.GetName(), a.GetPortValue(), httpPort(t))
		}
	}
	if hc := cl.GetHealthChecks(); len(hc) != 1 || hc[0].GetHttpHealthCheck().GetPath() != httpauthz.HealthPath {
		t.Errorf("cluster %q health check %v, want an HTTP check of %s", cl.GetName(), hc, httpauthz.HealthPath)
	}

	// Only the headers corsauthz reads go out (the top-level
	// allowed_headers; http_service's own is deprecated).
	var sent []string
	for _, p := range ea.GetAllowedHeaders().GetPatterns() {
		sent = append(sent, p.GetExact())
	}
	slices.Sort(sent)
	if want := slices.Sorted(slices.Values(corsRequestHeaders)); !slices.Equal(sent, want) {
		t.Errorf("allowed_headers = %q, want exactly %q", sent, want)
	}
	if hs.GetAuthorizationRequest().GetAllowedHeaders() != nil {
		t.Error("http_service.authorization_request.allowed_headers is deprecated: use the filter's allowed_headers")
	}
	// Every CORS header of the answer reaches the browser, allowed or denied.
	resp := hs.GetAuthorizationResponse()
	if !passesAll(resp.GetAllowedClientHeaders()) {
		t.Errorf("allowed_client_headers %v miss some CORS headers or Vary", resp.GetAllowedClientHeaders())
	}
	if !passesAll(resp.GetAllowedClientHeadersOnSuccess()) {
		t.Errorf("allowed_client_headers_on_success %v miss some CORS headers or Vary", resp.GetAllowedClientHeadersOnSuccess())
	}
	if resp.GetAllowedUpstreamHeaders() != nil {
		t.Error("allowed_upstream_headers is set: corsauthz's answer is for the response, not the upstream")
	}

	// Envoy appends allowed_client_headers_on_success: each virtual host
	// removes the upstream's own CORS headers.
	for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
		removed := vh.GetResponseHeadersToRemove()
		for _, name := range corsResponseHeaders {
			if !slices.Contains(removed, name) {
				t.Errorf("virtual host %s does not remove the upstream's %s", vh.GetName(), name)
			}
		}
	}
	filters := hcm.GetHttpFilters()
	if len(filters) == 0 || filters[0].GetName() != "envoy.filters.http.ext_authz" {
		t.Errorf("ext_authz is not the first HTTP filter")
	}
}

// TestEnvoyHTTPDecoderIsStrict breaks envoy-http.yaml in ways the decoder
// must catch.
func TestEnvoyHTTPDecoderIsStrict(t *testing.T) {
	t.Parallel()
	orig := readFile(t, envoyHTTPPath)
	for _, tt := range []struct{ desc, old, new string }{
		{"misspelt field of the http_service", "allowed_client_headers_on_success:", "allowed_client_headers_on_succes:"},
		{"misspelt field of the server_uri", "cluster: corsauthz_http\n", "clustr: corsauthz_http\n"},
		{"a negative timeout (Envoy's validation)", "timeout: 0.25s\n                        # corsauthz", "timeout: -1s\n                        # corsauthz"},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			if !bytes.Contains(orig, []byte(tt.old)) {
				t.Fatalf("%s no longer contains %q; update this test", envoyHTTPPath, tt.old)
			}
			if _, _, err := loadBootstrap(bytes.Replace(orig, []byte(tt.old), []byte(tt.new), 1)); err == nil {
				t.Error("loadBootstrap accepted the broken file")
			}
		})
	}
}

// TestIstioHTTPProvider checks meshconfig-http.yaml, decoded strictly into
// Istio's MeshConfig.
func TestIstioHTTPProvider(t *testing.T) {
	t.Parallel()
	mc, err := loadMeshConfig(readFile(t, meshConfigHTTPPath))
	if err != nil {
		t.Fatalf("%s: %v", meshConfigHTTPPath, err)
	}
	ps := mc.GetExtensionProviders()
	if len(ps) != 1 || ps[0].GetEnvoyExtAuthzHttp() == nil {
		t.Fatalf("%s: want one envoyExtAuthzHttp provider, have %v", meshConfigHTTPPath, ps)
	}
	h := ps[0].GetEnvoyExtAuthzHttp()
	if h.GetPort() != httpPort(t) {
		t.Errorf("port = %d, want %d", h.GetPort(), httpPort(t))
	}
	if !strings.HasSuffix(h.GetService(), ".svc.cluster.local") {
		t.Errorf("service = %q", h.GetService())
	}
	if d := h.GetTimeout().AsDuration(); d <= 0 || d > time.Second {
		t.Errorf("timeout = %v, want in (0, 1s]", d)
	}
	if h.GetFailOpen() || h.GetStatusOnError() != "503" {
		t.Errorf("failOpen %t, statusOnError %q; want fail closed with 503", h.GetFailOpen(), h.GetStatusOnError())
	}
	if p := h.GetPathPrefix(); !strings.HasPrefix(p, "/") || !strings.Contains(string(readFile(t, meshConfigHTTPPath)), "--http-path-prefix "+p) {
		t.Errorf("pathPrefix %q, and the file must tell the matching --http-path-prefix", p)
	}
	if got, want := slices.Sorted(slices.Values(h.GetIncludeRequestHeadersInCheck())), slices.Sorted(slices.Values(corsRequestHeaders)); !slices.Equal(got, want) {
		t.Errorf("includeRequestHeadersInCheck = %q, want exactly %q", got, want)
	}
	// Istio's patterns: exact, or a prefix ending in *.
	toMatcher := func(patterns []string) *matcherv3.ListStringMatcher {
		l := &matcherv3.ListStringMatcher{}
		for _, p := range patterns {
			if prefix, ok := strings.CutSuffix(p, "*"); ok {
				l.Patterns = append(l.Patterns, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: prefix}})
			} else {
				l.Patterns = append(l.Patterns, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: p}})
			}
		}
		return l
	}
	if !passesAll(toMatcher(h.GetHeadersToDownstreamOnAllow())) {
		t.Errorf("headersToDownstreamOnAllow %q miss some CORS headers or Vary", h.GetHeadersToDownstreamOnAllow())
	}
	if !passesAll(toMatcher(h.GetHeadersToDownstreamOnDeny())) {
		t.Errorf("headersToDownstreamOnDeny %q miss some CORS headers or Vary", h.GetHeadersToDownstreamOnDeny())
	}
	if len(h.GetHeadersToUpstreamOnAllow()) != 0 {
		t.Error("headersToUpstreamOnAllow is set: corsauthz's answer is for the response")
	}
	broken := bytes.Replace(readFile(t, meshConfigHTTPPath), []byte("\n          headersToDownstreamOnDeny:"), []byte("\n          headersToDownstreamOnDenied:"), 1)
	if _, err := loadMeshConfig(broken); err == nil {
		t.Error("loadMeshConfig accepted a misspelt field")
	}
}

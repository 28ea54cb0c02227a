package deploy_test

import (
	"slices"
	"testing"
	"time"

	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// extAuthzFilters returns the ext_authz HTTP filters of an Envoy
// bootstrap, in chain order, with their names.
func extAuthzFilters(t *testing.T, path string) ([]*extauthzv3.ExtAuthz, []string, *hcmv3.HttpConnectionManager) {
	t.Helper()
	_, unpacked, err := loadBootstrap(readFile(t, path))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	hcms := ofType[*hcmv3.HttpConnectionManager](unpacked)
	if len(hcms) != 1 {
		t.Fatalf("%s: %d HttpConnectionManagers", path, len(hcms))
	}
	var out []*extauthzv3.ExtAuthz
	var names []string
	for _, f := range hcms[0].GetHttpFilters() {
		var ea extauthzv3.ExtAuthz
		if f.GetTypedConfig().MessageIs(&ea) {
			if err := f.GetTypedConfig().UnmarshalTo(&ea); err != nil {
				t.Fatal(err)
			}
			out = append(out, &ea)
			names = append(names, f.GetName())
		}
	}
	return out, names, hcms[0]
}

// checkOAuth2Route: oauth2-proxy's own pages skip every ext_authz filter.
func checkOAuth2Route(t *testing.T, hcm *hcmv3.HttpConnectionManager, filters []string) {
	t.Helper()
	for _, r := range hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes() {
		if r.GetMatch().GetPrefix() != "/oauth2/" {
			continue
		}
		for _, name := range filters {
			var pr extauthzv3.ExtAuthzPerRoute
			if err := r.GetTypedPerFilterConfig()[name].UnmarshalTo(&pr); err != nil || !pr.GetDisabled() {
				t.Errorf("/oauth2/ route: filter %s not disabled (%v)", name, err)
			}
		}
		if r.GetRoute().GetCluster() != "oauth2_proxy" {
			t.Errorf("/oauth2/ goes to %s, want oauth2_proxy", r.GetRoute().GetCluster())
		}
		return
	}
	t.Error("no /oauth2/ route for oauth2-proxy's sign-in pages")
}

// TestEnvoyOAuth2ProxyBehindCorsauthz: corsauthz, the only ext_authz
// filter, gets the headers its authorizer forwards and a timeout above the
// authorizer's.
func TestEnvoyOAuth2ProxyBehindCorsauthz(t *testing.T) {
	t.Parallel()
	filters, names, hcm := extAuthzFilters(t, "envoy/oauth2-proxy.yaml")
	if len(filters) != 1 || filters[0].GetGrpcService().GetEnvoyGrpc().GetClusterName() != "corsauthz" {
		t.Fatalf("ext_authz filters %v: want corsauthz alone", names)
	}
	ea := filters[0]
	timeout := ea.GetGrpcService().GetTimeout().AsDuration()
	a, _ := loadOAuth2ProxyConfig(t).Authorizer("oauth2-proxy")
	if timeout-a.Timeout() < 250*time.Millisecond {
		t.Errorf("ext_authz timeout %s leaves too little room above the authorizer's %s (Envoy would answer a slow oauth2-proxy with its own reply, without CORS headers)", timeout, a.Timeout())
	}
	var allowed []string
	for _, p := range ea.GetAllowedHeaders().GetPatterns() {
		allowed = append(allowed, p.GetExact())
	}
	for _, h := range append(append([]string{}, corsRequestHeaders...), a.HTTP.Headers...) {
		if !slices.Contains(allowed, h) {
			t.Errorf("allowed_headers lack %s: corsauthz reads it or sends it to oauth2-proxy", h)
		}
	}
	if ea.GetFailureModeAllow() || ea.GetStatusOnError().GetCode() != 503 {
		t.Error("ext_authz must fail closed with 503")
	}
	checkOAuth2Route(t, hcm, names)
}

// TestEnvoyTwoFilters: corsauthz first, oauth2-proxy's http_service second,
// each failing closed, the second within a timeout of its own.
func TestEnvoyTwoFilters(t *testing.T) {
	t.Parallel()
	filters, names, hcm := extAuthzFilters(t, "envoy/two-filters.yaml")
	if len(filters) != 2 {
		t.Fatalf("ext_authz filters %v, want two", names)
	}
	if filters[0].GetGrpcService().GetEnvoyGrpc().GetClusterName() != "corsauthz" {
		t.Errorf("first ext_authz filter %s is not corsauthz: preflights would reach oauth2-proxy and be refused", names[0])
	}
	hs := filters[1].GetHttpService()
	if hs.GetServerUri().GetCluster() != "oauth2_proxy" || hs.GetPathPrefix() != "/oauth2/auth?uri=" {
		t.Errorf("second filter: %v, want oauth2-proxy's /oauth2/auth", hs)
	}
	if hs.GetServerUri().GetTimeout().AsDuration() <= 0 {
		t.Error("the oauth2-proxy filter has no timeout")
	}
	for i, ea := range filters {
		if ea.GetFailureModeAllow() || ea.GetStatusOnError().GetCode() != 503 {
			t.Errorf("filter %s must fail closed with 503", names[i])
		}
	}
	var allowed []string
	for _, p := range hs.GetAuthorizationResponse().GetAllowedUpstreamHeaders().GetPatterns() {
		allowed = append(allowed, p.GetPrefix())
	}
	if !slices.Contains(allowed, "x-auth-request-") {
		t.Errorf("oauth2-proxy's X-Auth-Request-* headers do not go upstream: %v", allowed)
	}
	checkOAuth2Route(t, hcm, names)
}

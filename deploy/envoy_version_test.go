package deploy_test

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// corsResponseHeaders are the response headers corsauthz answers with:
// every route that asks corsauthz removes the upstream's own, since
// ext_authz's ok_response can add headers but not remove them.
var corsResponseHeaders = []string{
	"access-control-allow-origin",
	"access-control-allow-credentials",
	"access-control-allow-methods",
	"access-control-allow-headers",
	"access-control-allow-private-network",
	"access-control-expose-headers",
	"access-control-max-age",
}

// TestEnvoyRoutesRemoveUpstreamCORSHeaders: on every route where ext_authz
// runs, the upstream's Access-Control-* response headers are removed (at
// the route, its virtual host or the route configuration), so that the
// browser sees corsauthz's answer alone.
func TestEnvoyRoutesRemoveUpstreamCORSHeaders(t *testing.T) {
	t.Parallel()
	cfg := loadEnvoyConfig(t)
	rc := cfg.hcm.GetRouteConfig()
	for _, vh := range rc.GetVirtualHosts() {
		for i, r := range vh.GetRoutes() {
			if perRoute(t, cfg, vh.GetName(), r.GetTypedPerFilterConfig()).GetDisabled() {
				continue
			}
			removed := slices.Concat(r.GetResponseHeadersToRemove(), vh.GetResponseHeadersToRemove(), rc.GetResponseHeadersToRemove())
			for j := range removed {
				removed[j] = strings.ToLower(removed[j])
			}
			for _, h := range corsResponseHeaders {
				if !slices.Contains(removed, h) {
					t.Errorf("%s route %s: the upstream's %s is not removed (response_headers_to_remove)", vh.GetName(), routeString(i, r), h)
				}
			}
		}
	}
}

// TestEnvoyStatsAndAdmin: ext_authz does not charge its own answers to the
// upstream cluster's stats, and the admin interface listens on loopback.
func TestEnvoyStatsAndAdmin(t *testing.T) {
	t.Parallel()
	cfg := loadEnvoyConfig(t)
	if v := cfg.extAuthz.GetChargeClusterResponseStats(); v == nil || v.GetValue() {
		t.Errorf("charge_cluster_response_stats = %v, want false: otherwise every preflight answer counts as an upstream 2xx or 403", v)
	}
	addr := cfg.bootstrap.GetAdmin().GetAddress().GetSocketAddress().GetAddress()
	if addr != "127.0.0.1" && addr != "::1" {
		t.Errorf("admin listens on %q, want loopback (127.0.0.1 or ::1)", addr)
	}
}

// minimumVersionRE finds the minimum Envoy and Istio versions where a file
// states them.
var minimumVersionRE = regexp.MustCompile(`Envoy 1\.31 or later \(Istio 1\.23 or later\)|Envoy ≥ ?1\.31|Envoy 1\.31 \(Istio 1\.23\)`)

// TestMinimumEnvoyVersionStated: Envoy honours append_action in
// ok_response.response_headers_to_add only from 1.31 on, so the files
// that configure Envoy or Istio, the README and docs/envoy.md say so; and the Envoy
// image compose runs is at least that.
func TestMinimumEnvoyVersionStated(t *testing.T) {
	t.Parallel()
	for _, path := range []string{envoyPath, meshConfigPath, authzPath, "istio/README.md", "../README.md", "../docs/envoy.md", "compose/README.md"} {
		if !minimumVersionRE.Match(readFile(t, path)) {
			t.Errorf("%s does not state the minimum version (Envoy 1.31 or later, Istio 1.23 or later)", path)
		}
	}
	image := loadCompose(t).Services["envoy"].Image
	m := regexp.MustCompile(`:v1\.(\d+)`).FindStringSubmatch(image)
	if m == nil {
		t.Fatalf("compose's Envoy image %q names no v1.N version", image)
	}
	if minor, _ := strconv.Atoi(m[1]); minor < 31 {
		t.Errorf("compose runs %s, older than Envoy 1.31", image)
	}
}

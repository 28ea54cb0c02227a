package deploy_test

import (
	"bytes"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

const envoyPath = "envoy/envoy.yaml"

// corsRequestHeaders are the request headers a CORS decision reads; the
// ext_authz filter must send exactly these (method, host and path travel in
// their own CheckRequest fields).
var corsRequestHeaders = []string{
	"origin",
	"access-control-request-method",
	"access-control-request-headers",
	"access-control-request-private-network",
}

// loadBootstrap decodes data strictly into a Bootstrap and validates it and
// every typed extension in it.
func loadBootstrap(data []byte) (*bootstrapv3.Bootstrap, []proto.Message, error) {
	b := new(bootstrapv3.Bootstrap)
	if err := strictProtoYAML(data, b); err != nil {
		return nil, nil, err
	}
	unpacked, err := validateDeep(b)
	if err != nil {
		return nil, nil, err
	}
	return b, unpacked, nil
}

// envoyConfig is envoy.yaml, decoded and validated, with the parts the tests
// look at picked out.
type envoyConfig struct {
	bootstrap *bootstrapv3.Bootstrap
	hcm       *hcmv3.HttpConnectionManager
	extAuthz  *extauthzv3.ExtAuthz
	// extAuthzName is the HTTP filter's name: typed_per_filter_config keys
	// must use it.
	extAuthzName string
	unpacked     []proto.Message
}

func loadEnvoyConfig(t *testing.T) envoyConfig {
	t.Helper()
	b, unpacked, err := loadBootstrap(readFile(t, envoyPath))
	if err != nil {
		t.Fatalf("%s: %v", envoyPath, err)
	}
	hcms := ofType[*hcmv3.HttpConnectionManager](unpacked)
	if len(hcms) != 1 {
		t.Fatalf("%s: %d HttpConnectionManagers, want 1", envoyPath, len(hcms))
	}
	cfg := envoyConfig{bootstrap: b, hcm: hcms[0], unpacked: unpacked}
	for _, f := range cfg.hcm.GetHttpFilters() {
		var ea extauthzv3.ExtAuthz
		if f.GetTypedConfig().MessageIs(&ea) {
			if cfg.extAuthz != nil {
				t.Fatalf("%s: more than one ext_authz filter", envoyPath)
			}
			if err := f.GetTypedConfig().UnmarshalTo(&ea); err != nil {
				t.Fatal(err)
			}
			cfg.extAuthz, cfg.extAuthzName = &ea, f.GetName()
		}
	}
	if cfg.extAuthz == nil {
		t.Fatalf("%s: no ext_authz HTTP filter", envoyPath)
	}
	return cfg
}

func (c envoyConfig) cluster(name string) *clusterv3.Cluster {
	for _, cl := range c.bootstrap.GetStaticResources().GetClusters() {
		if cl.GetName() == name {
			return cl
		}
	}
	return nil
}

// socketAddresses returns the endpoints of a static cluster.
func socketAddresses(cl *clusterv3.Cluster) []*corev3.SocketAddress {
	var out []*corev3.SocketAddress
	for _, le := range cl.GetLoadAssignment().GetEndpoints() {
		for _, ep := range le.GetLbEndpoints() {
			out = append(out, ep.GetEndpoint().GetAddress().GetSocketAddress())
		}
	}
	return out
}

func TestEnvoyExtAuthzFilter(t *testing.T) {
	t.Parallel()
	cfg := loadEnvoyConfig(t)
	ea := cfg.extAuthz

	if got := ea.GetTransportApiVersion(); got != corev3.ApiVersion_V3 {
		t.Errorf("transport_api_version = %v, want V3", got)
	}
	if ea.GetFailureModeAllow() {
		t.Error("failure_mode_allow = true; the example recommends failing closed")
	}
	if got := ea.GetStatusOnError().GetCode(); got != typev3.StatusCode_ServiceUnavailable {
		t.Errorf("status_on_error = %v, want ServiceUnavailable (503)", got)
	}
	if ea.GetWithRequestBody() != nil {
		t.Error("with_request_body is set; CORS never reads the body")
	}
	if ea.GetHttpService() != nil {
		t.Error("ext_authz uses http_service; corsauthz speaks gRPC")
	}

	grpc := ea.GetGrpcService()
	if d := grpc.GetTimeout().AsDuration(); d <= 0 || d > time.Second {
		t.Errorf("grpc_service.timeout = %v, want in (0, 1s]", d)
	}

	// The filter's cluster exists, points at the gRPC port and speaks HTTP/2.
	name := grpc.GetEnvoyGrpc().GetClusterName()
	cl := cfg.cluster(name)
	if cl == nil {
		t.Fatalf("ext_authz cluster %q is not defined", name)
	}
	addrs := socketAddresses(cl)
	if len(addrs) == 0 {
		t.Fatalf("cluster %q has no endpoints", name)
	}
	for _, a := range addrs {
		if a.GetPortValue() != grpcPort {
			t.Errorf("cluster %q endpoint %s:%d, want port %d", name, a.GetAddress(), a.GetPortValue(), grpcPort)
		}
	}
	opts := cl.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
	var hpo upstreamhttpv3.HttpProtocolOptions
	if opts == nil || opts.UnmarshalTo(&hpo) != nil {
		t.Fatalf("cluster %q has no envoy.extensions.upstreams.http.v3.HttpProtocolOptions", name)
	}
	if hpo.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		t.Errorf("cluster %q does not use HTTP/2 (explicit_http_config.http2_protocol_options); gRPC needs it", name)
	}
	if hc := cl.GetHealthChecks(); len(hc) == 0 || hc[0].GetGrpcHealthCheck() == nil {
		t.Errorf("cluster %q has no gRPC health check", name)
	}

	// allowed_headers: exactly the CORS request headers, matched exactly.
	var got []string
	for _, p := range ea.GetAllowedHeaders().GetPatterns() {
		if p.GetExact() == "" {
			t.Errorf("allowed_headers pattern %v is not an exact match", p)
			continue
		}
		got = append(got, strings.ToLower(p.GetExact()))
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(corsRequestHeaders))
	if !slices.Equal(got, want) {
		t.Errorf("allowed_headers = %q, want %q", got, want)
	}
	if ea.GetDisallowedHeaders() != nil {
		t.Error("disallowed_headers is set; allowed_headers already limits what is sent")
	}
}

func TestEnvoyFilterChain(t *testing.T) {
	t.Parallel()
	cfg := loadEnvoyConfig(t)
	filters := cfg.hcm.GetHttpFilters()
	var router routerv3.Router
	if len(filters) == 0 || !filters[len(filters)-1].GetTypedConfig().MessageIs(&router) {
		t.Fatalf("the last HTTP filter is not the router")
	}
	if filters[0].GetName() != cfg.extAuthzName {
		t.Errorf("the first HTTP filter is %q, want ext_authz (%q): filters in front of it may refuse credential-less preflights",
			filters[0].GetName(), cfg.extAuthzName)
	}
	for _, f := range filters {
		if strings.Contains(f.GetName(), "cors") {
			t.Errorf("HTTP filter %q: Envoy's own CORS filter must not run beside corsauthz", f.GetName())
		}
	}

	listeners := cfg.bootstrap.GetStaticResources().GetListeners()
	if len(listeners) != 1 || listeners[0].GetAddress().GetSocketAddress().GetPortValue() != 8080 {
		t.Errorf("want one listener on port 8080, got %v", listeners)
	}
}

// perRoute returns the ExtAuthzPerRoute that cfg sets in a
// typed_per_filter_config, or nil.
func perRoute(t *testing.T, cfg envoyConfig, where string, tpfc map[string]*anypb.Any) *extauthzv3.ExtAuthzPerRoute {
	t.Helper()
	for key, a := range tpfc {
		var pr extauthzv3.ExtAuthzPerRoute
		if !a.MessageIs(&pr) {
			continue
		}
		if key != cfg.extAuthzName {
			t.Errorf("%s: ExtAuthzPerRoute under key %q, but the filter is named %q: Envoy would ignore it", where, key, cfg.extAuthzName)
		}
		if err := a.UnmarshalTo(&pr); err != nil {
			t.Fatal(err)
		}
		return &pr
	}
	return nil
}

func TestEnvoyRoutes(t *testing.T) {
	t.Parallel()
	cfg := loadEnvoyConfig(t)
	policies := examplePolicies(t)

	var (
		disabled  int
		usedNames = make(map[string]bool)
		domains   = make(map[string]bool)
	)
	vhosts := cfg.hcm.GetRouteConfig().GetVirtualHosts()
	if len(vhosts) == 0 {
		t.Fatal("no virtual hosts")
	}
	for _, vh := range vhosts {
		for _, d := range vh.GetDomains() {
			domains[d] = true
		}
		vhPolicy := ""
		if pr := perRoute(t, cfg, "virtual host "+vh.GetName(), vh.GetTypedPerFilterConfig()); pr != nil {
			vhPolicy = pr.GetCheckSettings().GetContextExtensions()["cors_policy"]
		}
		for i, r := range vh.GetRoutes() {
			where := vh.GetName() + " route " + routeString(i, r)
			if c := r.GetRoute().GetCluster(); cfg.cluster(c) == nil {
				t.Errorf("%s: cluster %q is not defined", where, c)
			}
			pr := perRoute(t, cfg, where, r.GetTypedPerFilterConfig())
			if pr.GetDisabled() {
				disabled++
				continue
			}
			name := vhPolicy
			if n, ok := pr.GetCheckSettings().GetContextExtensions()["cors_policy"]; ok {
				name = n
			}
			if name == "" {
				t.Errorf("%s: ext_authz runs but no cors_policy context extension picks a policy", where)
				continue
			}
			p, ok := policies[name]
			if !ok {
				t.Errorf("%s: cors_policy %q names no policy in deploy/corsauthz.yaml (have %v)", where, name, slices.Sorted(maps.Keys(policies)))
				continue
			}
			usedNames[name] = true
			// The policy chosen by name must be one corsauthz's own match
			// rules would consider for this host, or the two configurations
			// have drifted apart.
			if !slices.ContainsFunc(p.Match.Hosts, func(h string) bool { return slices.Contains(vh.GetDomains(), h) }) {
				t.Errorf("%s: cors_policy %q matches hosts %v, none of this virtual host's domains %v", where, name, p.Match.Hosts, vh.GetDomains())
			}
			if prefix := r.GetMatch().GetPrefix(); len(p.Match.PathPrefixes) > 0 && !slices.Contains(p.Match.PathPrefixes, prefix) {
				t.Errorf("%s: cors_policy %q is for path prefixes %v, route matches prefix %q", where, name, p.Match.PathPrefixes, prefix)
			}
		}
	}
	if disabled == 0 {
		t.Error("no route disables ext_authz; the example should show how")
	}
	for name := range policies {
		if !usedNames[name] {
			t.Errorf("policy %q of deploy/corsauthz.yaml is used by no route", name)
		}
	}
	for h := range exampleHosts(t) {
		if !domains[h] {
			t.Errorf("host %q of deploy/corsauthz.yaml is in no virtual host", h)
		}
	}
}

func routeString(i int, r *routev3.Route) string {
	m := r.GetMatch()
	switch {
	case m.GetPath() != "":
		return "path " + m.GetPath()
	case m.GetPrefix() != "":
		return "prefix " + m.GetPrefix()
	}
	return "#" + strconv.Itoa(i)
}

// TestEnvoyTypedExtensions checks that every typed extension the example
// needs was found and validated (a missing blank import would make protojson
// fail instead).
func TestEnvoyTypedExtensions(t *testing.T) {
	t.Parallel()
	cfg := loadEnvoyConfig(t)
	seen := make(map[string]int)
	for _, m := range cfg.unpacked {
		seen[string(m.ProtoReflect().Descriptor().FullName())]++
	}
	for _, want := range []string{
		"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
		"envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
		"envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
		"envoy.extensions.filters.http.router.v3.Router",
		"envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
	} {
		if seen[want] == 0 {
			t.Errorf("no %s in %s", want, envoyPath)
		}
	}
}

// TestEnvoyDecoderIsStrict makes sure loadBootstrap would catch the mistakes
// it exists to catch: each case breaks envoy.yaml in one way.
func TestEnvoyDecoderIsStrict(t *testing.T) {
	t.Parallel()
	orig := readFile(t, envoyPath)
	tests := []struct {
		desc      string
		old, new  string
		wantInErr string
	}{
		{
			desc:      "misspelt field inside a typed extension",
			old:       "\n                      failure_mode_allow: false",
			new:       "\n                      failure_mode_allowed: false",
			wantInErr: "failure_mode_allowed",
		},
		{
			desc:      "unregistered typed extension",
			old:       "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
			new:       "type.googleapis.com/envoy.extensions.filters.http.router.v3.Routr",
			wantInErr: "Routr",
		},
		{
			desc:      "invalid value inside a typed extension (validation)",
			old:       "cluster_name: corsauthz\n",
			new:       "cluster_name: \"\"\n",
			wantInErr: "ClusterName",
		},
		{
			desc:      "invalid value in the bootstrap itself",
			old:       "port_value: 9001",
			new:       "port_value: 90001",
			wantInErr: "PortValue",
		},
		{
			desc:      "duplicate key",
			old:       "stat_prefix: ingress_http",
			new:       "stat_prefix: ingress_http\n                stat_prefix: again",
			wantInErr: "stat_prefix",
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			if !bytes.Contains(orig, []byte(tt.old)) {
				t.Fatalf("%s no longer contains %q; update this test", envoyPath, tt.old)
			}
			broken := bytes.Replace(orig, []byte(tt.old), []byte(tt.new), 1)
			_, _, err := loadBootstrap(broken)
			if err == nil {
				t.Fatal("loadBootstrap accepted the broken file")
			}
			t.Logf("rejected as expected: %v", err)
			if !strings.Contains(err.Error(), tt.wantInErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantInErr)
			}
		})
	}
}

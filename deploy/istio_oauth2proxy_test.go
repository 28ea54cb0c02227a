package deploy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	netv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/corsauthz/corsauthz/policy"
)

// The Istio setup with corsauthz as the single CUSTOM provider and
// oauth2-proxy behind it (deploy/istio/oauth2-proxy).
const oauth2ProxyDir = "istio/oauth2-proxy/"

// loadOAuth2ProxyConfig loads the directory's corsauthz configuration with
// corsauthz's own loader.
func loadOAuth2ProxyConfig(t *testing.T) *policy.Engine {
	t.Helper()
	e, warnings, err := policy.Load(oauth2ProxyDir+"corsauthz.yaml", readFile(t, oauth2ProxyDir+"corsauthz.yaml"))
	if err != nil {
		t.Fatalf("corsauthz.yaml: %v", err)
	}
	if len(warnings) > 0 {
		t.Errorf("corsauthz.yaml warnings: %v", warnings)
	}
	return e
}

// TestIstioOAuth2ProxyTimeouts: the gateway's ext_authz timeout leaves room
// above every authorizer's, so that corsauthz's own 503 (with CORS headers)
// is what the page gets when oauth2-proxy is slow.
func TestIstioOAuth2ProxyTimeouts(t *testing.T) {
	t.Parallel()
	mc, err := loadMeshConfig(readFile(t, oauth2ProxyDir+"meshconfig.yaml"))
	if err != nil {
		t.Fatalf("meshconfig.yaml: %v", err)
	}
	var grpcProviders []string
	var gatewayTimeout time.Duration
	for _, p := range mc.GetExtensionProviders() {
		if g := p.GetEnvoyExtAuthzGrpc(); g != nil {
			grpcProviders = append(grpcProviders, p.GetName())
			gatewayTimeout = g.GetTimeout().AsDuration()
			if g.GetService() != "corsauthz.corsauthz.svc.cluster.local" || g.GetPort() != 9001 || g.GetFailOpen() {
				t.Errorf("provider %s: %s:%d failOpen=%v, want corsauthz.corsauthz.svc.cluster.local:9001, fail closed", p.GetName(), g.GetService(), g.GetPort(), g.GetFailOpen())
			}
		}
		if p.GetEnvoyExtAuthzHttp() != nil {
			t.Errorf("provider %s: an HTTP ext_authz provider beside corsauthz; oauth2-proxy is asked by corsauthz now", p.GetName())
		}
	}
	if !slices.Equal(grpcProviders, []string{"corsauthz"}) {
		t.Fatalf("ext_authz providers %v, want only corsauthz", grpcProviders)
	}
	for _, a := range loadOAuth2ProxyConfig(t).Authorizers() {
		if margin := gatewayTimeout - a.Timeout(); margin < 250*time.Millisecond {
			t.Errorf("Istio's timeout %s leaves %s above authorizer %s's %s: give it at least 250ms more", gatewayTimeout, margin, a.Name, a.Timeout())
		}
	}
}

// TestIstioOAuth2ProxyAuthorizationPolicy: one CUSTOM policy, naming
// corsauthz, for every request to the API's host except oauth2-proxy's own
// pages, and the hosts are the ones corsauthz's policies match.
func TestIstioOAuth2ProxyAuthorizationPolicy(t *testing.T) {
	t.Parallel()
	ap, err := loadAuthorizationPolicy(readFile(t, oauth2ProxyDir+"authorizationpolicy.yaml"))
	if err != nil {
		t.Fatalf("authorizationpolicy.yaml: %v", err)
	}
	if ap.Spec.GetAction().String() != "CUSTOM" || ap.Spec.GetProvider().GetName() != "corsauthz" {
		t.Errorf("action %s provider %q, want CUSTOM corsauthz", ap.Spec.GetAction(), ap.Spec.GetProvider().GetName())
	}
	e := loadOAuth2ProxyConfig(t)
	for _, rule := range ap.Spec.GetRules() {
		if len(rule.GetWhen()) > 0 {
			t.Errorf("rule has when conditions %v: every request needs authentication, CORS or not", rule.GetWhen())
		}
		for _, to := range rule.GetTo() {
			op := to.GetOperation()
			if !slices.Contains(op.GetNotPaths(), "/oauth2/*") {
				t.Errorf("notPaths %v: oauth2-proxy's /oauth2/ pages must not be checked", op.GetNotPaths())
			}
			for _, h := range op.GetHosts() {
				host := strings.TrimSuffix(h, ":*")
				d, err := e.Decide(&policy.Request{Method: "GET", Host: host, Path: "/"})
				if err != nil || e.AuthorizerFor(&d) != "oauth2-proxy" {
					t.Errorf("host %s: corsauthz asks %q, want oauth2-proxy (%v)", h, e.AuthorizerFor(&d), err)
				}
			}
		}
	}
}

// TestIstioOAuth2ProxyDeployment: oauth2-proxy runs with what it needs
// behind corsauthz, on the port and path corsauthz's authorizer calls, and
// only corsauthz and the gateway can reach it.
func TestIstioOAuth2ProxyDeployment(t *testing.T) {
	t.Parallel()
	docs := bytes.Split(readFile(t, oauth2ProxyDir+"oauth2-proxy.yaml"), []byte("\n---\n"))
	if len(docs) != 3 {
		t.Fatalf("%d documents, want Deployment, Service, NetworkPolicy", len(docs))
	}
	var dep appsv1.Deployment
	var svc corev1.Service
	var np netv1.NetworkPolicy
	for i, v := range []any{&dep, &svc, &np} {
		js, err := sigsyaml.YAMLToJSONStrict(docs[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := decodeStrictJSON(js, v); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
	}
	args := dep.Spec.Template.Spec.Containers[0].Args
	for _, want := range []string{"--set-xauthrequest", "--reverse-proxy"} {
		if !slices.Contains(args, want) {
			t.Errorf("oauth2-proxy args lack %s", want)
		}
	}
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--trusted-proxy-ip=") }) {
		t.Error("oauth2-proxy args lack --trusted-proxy-ip: with --reverse-proxy alone it trusts X-Forwarded-* from anyone")
	}
	a, _ := loadOAuth2ProxyConfig(t).Authorizer("oauth2-proxy")
	want := fmt.Sprintf("http://%s.%s.svc.cluster.local:%d/oauth2/auth", svc.Name, svc.Namespace, svc.Spec.Ports[0].Port)
	if a.HTTP == nil || a.HTTP.URL != want || a.HTTP.ForwardPath {
		t.Errorf("authorizer %+v, want url %s with forward_path: false (/oauth2/auth matches that path exactly)", a.HTTP, want)
	}
	for _, h := range []string{"x-auth-request-user", "x-auth-request-email"} {
		if !slices.Contains(a.HTTP.UpstreamHeaders, h) {
			t.Errorf("upstream_headers lack %s", h)
		}
	}
	if !slices.Contains(a.HTTP.Headers, "cookie") {
		t.Error("the authorizer does not send the cookie: oauth2-proxy would never see a session")
	}
	if len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].From) != 2 || !slices.Equal(np.Spec.PolicyTypes, []netv1.PolicyType{netv1.PolicyTypeIngress}) {
		t.Errorf("NetworkPolicy %+v: want one ingress rule from corsauthz and the gateway", np.Spec)
	}
}

// TestIstioOAuth2ProxyVirtualService: the sign-in pages are routed to
// oauth2-proxy on the API's host.
func TestIstioOAuth2ProxyVirtualService(t *testing.T) {
	t.Parallel()
	js, err := sigsyaml.YAMLToJSONStrict(readFile(t, oauth2ProxyDir+"virtualservice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var envelope struct {
		metav1.TypeMeta `json:",inline"`
		ObjectMeta      metav1.ObjectMeta `json:"metadata"`
		Spec            json.RawMessage   `json:"spec"`
	}
	if err := decodeStrictJSON(js, &envelope); err != nil {
		t.Fatal(err)
	}
	if got, want := envelope.GroupVersionKind(), networkingv1.SchemeGroupVersion.WithKind("VirtualService"); got != want {
		t.Fatalf("%v, want %v", got, want)
	}
	vs := &networkingv1.VirtualService{}
	if err := strictProtoJSON(envelope.Spec, &vs.Spec); err != nil {
		t.Fatal(err)
	}
	r := vs.Spec.GetHttp()[0]
	if r.GetMatch()[0].GetUri().GetPrefix() != "/oauth2/" || r.GetRoute()[0].GetDestination().GetPort().GetNumber() != 4180 {
		t.Errorf("route %v: want /oauth2/ to oauth2-proxy:4180", r)
	}
}

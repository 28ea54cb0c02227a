package deploy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	securityv1beta1 "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsyaml "sigs.k8s.io/yaml"
)

const (
	meshConfigPath = "istio/meshconfig.yaml"
	authzPath      = "istio/authorizationpolicy.yaml"
)

// loadMeshConfig decodes the meshConfig of an IstioOperator document
// strictly into Istio's MeshConfig.
func loadMeshConfig(data []byte) (*meshv1alpha1.MeshConfig, error) {
	js, err := sigsyaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, err
	}
	var op struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Spec       struct {
			MeshConfig json.RawMessage `json:"meshConfig"`
		} `json:"spec"`
	}
	if err := decodeStrictJSON(js, &op); err != nil {
		return nil, fmt.Errorf("IstioOperator: %w", err)
	}
	if op.APIVersion != "install.istio.io/v1alpha1" || op.Kind != "IstioOperator" {
		return nil, fmt.Errorf("%s %s, want install.istio.io/v1alpha1 IstioOperator", op.APIVersion, op.Kind)
	}
	mc := new(meshv1alpha1.MeshConfig)
	if err := strictProtoJSON(op.Spec.MeshConfig, mc); err != nil {
		return nil, err
	}
	return mc, nil
}

// loadAuthorizationPolicy decodes a security.istio.io/v1 AuthorizationPolicy
// strictly. The client-go type's spec unmarshals with AllowUnknownFields, so
// a plain strict JSON decode would accept a misspelt spec field: the envelope
// is decoded strictly with encoding/json, the spec strictly with protojson.
func loadAuthorizationPolicy(data []byte) (*securityv1.AuthorizationPolicy, error) {
	js, err := sigsyaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, err
	}
	var envelope struct {
		metav1.TypeMeta `json:",inline"`
		ObjectMeta      metav1.ObjectMeta `json:"metadata"`
		Spec            json.RawMessage   `json:"spec"`
	}
	if err := decodeStrictJSON(js, &envelope); err != nil {
		return nil, fmt.Errorf("AuthorizationPolicy: %w", err)
	}
	if got, want := envelope.GroupVersionKind(), securityv1.SchemeGroupVersion.WithKind("AuthorizationPolicy"); got != want {
		return nil, fmt.Errorf("%v, want %v", got, want)
	}
	ap := &securityv1.AuthorizationPolicy{TypeMeta: envelope.TypeMeta, ObjectMeta: envelope.ObjectMeta}
	if err := strictProtoJSON(envelope.Spec, &ap.Spec); err != nil {
		return nil, err
	}
	return ap, nil
}

// corsauthzProvider returns the mesh's extension provider for corsauthz.
func corsauthzProvider(t *testing.T) (string, *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationGrpcProvider) {
	t.Helper()
	mc, err := loadMeshConfig(readFile(t, meshConfigPath))
	if err != nil {
		t.Fatalf("%s: %v", meshConfigPath, err)
	}
	providers := mc.GetExtensionProviders()
	if len(providers) != 1 {
		t.Fatalf("%s: %d extension providers, want 1", meshConfigPath, len(providers))
	}
	p := providers[0]
	g := p.GetEnvoyExtAuthzGrpc()
	if g == nil {
		t.Fatalf("%s: provider %q is not envoyExtAuthzGrpc", meshConfigPath, p.GetName())
	}
	return p.GetName(), g
}

func TestIstioMeshConfig(t *testing.T) {
	t.Parallel()
	_, g := corsauthzProvider(t)

	// The provider must name the Service deploy/kubernetes creates.
	objs := loadKustomization(t)
	svc := only(t, "Services", objs.services)
	wantHost := fmt.Sprintf("%s.%s.svc.cluster.local", svc.Name, k8sNamespace(t))
	if g.GetService() != wantHost {
		t.Errorf("service = %q, want %q (the Service in deploy/kubernetes)", g.GetService(), wantHost)
	}
	if g.GetPort() != grpcPort {
		t.Errorf("port = %d, want %d", g.GetPort(), grpcPort)
	}
	if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == int32(g.GetPort()) }) {
		t.Errorf("the Service has no port %d", g.GetPort())
	}
	if d := g.GetTimeout().AsDuration(); d <= 0 || d > time.Second {
		t.Errorf("timeout = %v, want in (0, 1s] (Istio's default is 600s)", d)
	}
	if g.GetFailOpen() {
		t.Error("failOpen = true; the example recommends failing closed")
	}
	if g.GetStatusOnError() != "503" {
		t.Errorf("statusOnError = %q, want 503", g.GetStatusOnError())
	}
	if g.GetIncludeRequestBodyInCheck() != nil {
		t.Error("includeRequestBodyInCheck is set; CORS never reads the body")
	}
}

func TestIstioAuthorizationPolicy(t *testing.T) {
	t.Parallel()
	providerName, _ := corsauthzProvider(t)
	ap, err := loadAuthorizationPolicy(readFile(t, authzPath))
	if err != nil {
		t.Fatalf("%s: %v", authzPath, err)
	}
	spec := &ap.Spec

	if spec.GetAction() != securityv1beta1.AuthorizationPolicy_CUSTOM {
		t.Errorf("action = %v, want CUSTOM", spec.GetAction())
	}
	if got := spec.GetProvider().GetName(); got != providerName {
		t.Errorf("provider.name = %q, but meshconfig.yaml defines %q", got, providerName)
	}
	if got := spec.GetSelector().GetMatchLabels()["istio"]; got != "ingressgateway" {
		t.Errorf("selector istio=%q, want ingressgateway", got)
	}
	if ap.Namespace != "istio-system" {
		t.Errorf("namespace = %q, want istio-system (where the ingress gateway runs)", ap.Namespace)
	}

	rules := spec.GetRules()
	if len(rules) == 0 {
		t.Fatal("no rules: a CUSTOM policy without rules matches nothing")
	}
	hosts := make(map[string]bool)
	for i, r := range rules {
		// Every request goes to corsauthz, with or without Origin: a
		// response without Origin needs its Vary: Origin (or the "*"
		// answer) for caches.
		for _, c := range r.GetWhen() {
			if strings.EqualFold(c.GetKey(), "request.headers[origin]") {
				t.Errorf("rule %d has a condition on the Origin header: requests without Origin would get no Vary: Origin, and caches could hand their responses to CORS requests", i)
			}
		}
		// Nothing may keep a preflight away from corsauthz.
		for _, to := range r.GetTo() {
			op := to.GetOperation()
			if m := op.GetMethods(); len(m) > 0 && !slices.Contains(m, "OPTIONS") {
				t.Errorf("rule %d matches methods %v: preflights (OPTIONS) would skip corsauthz", i, m)
			}
			if slices.Contains(op.GetNotMethods(), "OPTIONS") {
				t.Errorf("rule %d excludes OPTIONS: preflights would skip corsauthz", i)
			}
			for _, h := range op.GetHosts() {
				hosts[strings.TrimSuffix(h, ":*")] = true
			}
		}
	}
	// Istio cannot name a policy per route, so corsauthz selects by host:
	// the hosts sent to it must be exactly those its match rules know.
	want := exampleHosts(t)
	for h := range hosts {
		if !want[h] {
			t.Errorf("host %q goes to corsauthz, but no policy in deploy/corsauthz.yaml matches it", h)
		}
	}
	for h := range want {
		if !hosts[h] {
			t.Errorf("host %q has a policy in deploy/corsauthz.yaml, but the AuthorizationPolicy does not send it to corsauthz", h)
		}
	}
}

// TestIstioDecodersAreStrict makes sure the loaders catch misspelt fields,
// including the one this example deliberately leaves out.
func TestIstioDecodersAreStrict(t *testing.T) {
	t.Parallel()
	mesh := readFile(t, meshConfigPath)
	authz := readFile(t, authzPath)
	tests := []struct {
		desc      string
		doc       []byte
		load      func([]byte) error
		old, new  string
		wantInErr string
	}{
		{
			desc: "includeRequestHeadersInCheck does not exist for the gRPC provider",
			doc:  mesh, load: func(b []byte) error { _, err := loadMeshConfig(b); return err },
			old:       "statusOnError: \"503\"",
			new:       "statusOnError: \"503\"\n          includeRequestHeadersInCheck: [origin]",
			wantInErr: "includeRequestHeadersInCheck",
		},
		{
			desc: "misspelt field outside meshConfig",
			doc:  mesh, load: func(b []byte) error { _, err := loadMeshConfig(b); return err },
			old:       "  meshConfig:",
			new:       "  meshconfig:",
			wantInErr: "meshconfig",
		},
		{
			desc: "misspelt field in the AuthorizationPolicy spec",
			doc:  authz, load: func(b []byte) error { _, err := loadAuthorizationPolicy(b); return err },
			old:       "  action: CUSTOM",
			new:       "  actions: CUSTOM",
			wantInErr: "actions",
		},
		{
			desc: "misspelt field in the AuthorizationPolicy metadata",
			doc:  authz, load: func(b []byte) error { _, err := loadAuthorizationPolicy(b); return err },
			old:       "  namespace: istio-system",
			new:       "  namespaces: istio-system",
			wantInErr: "namespaces",
		},
		{
			desc: "unknown action",
			doc:  authz, load: func(b []byte) error { _, err := loadAuthorizationPolicy(b); return err },
			old:       "  action: CUSTOM",
			new:       "  action: EXTERNAL",
			wantInErr: "EXTERNAL",
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			if !bytes.Contains(tt.doc, []byte(tt.old)) {
				t.Fatalf("the file no longer contains %q; update this test", tt.old)
			}
			err := tt.load(bytes.Replace(tt.doc, []byte(tt.old), []byte(tt.new), 1))
			if err == nil {
				t.Fatal("the broken document was accepted")
			}
			if !strings.Contains(err.Error(), tt.wantInErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantInErr)
			}
			t.Logf("rejected as expected: %v", err)
		})
	}
}

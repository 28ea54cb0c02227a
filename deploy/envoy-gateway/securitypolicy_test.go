// Package envoygateway_test checks deploy/envoy-gateway against Envoy
// Gateway's own Go types. It is a module of its own so that the main
// module does not depend on Envoy Gateway; .ci/run tests it.
package envoygateway_test

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"
	"time"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	gwapiv1b1 "sigs.k8s.io/gateway-api/apis/v1beta1"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/corsauthz/corsauthz/policy"
)

func decodeStrict(t *testing.T, doc []byte, v any) {
	t.Helper()
	js, err := sigsyaml.YAMLToJSONStrict(doc)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode: %v", err)
	}
}

func TestSecurityPolicy(t *testing.T) {
	data, err := os.ReadFile("securitypolicy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs := bytes.Split(data, []byte("\n---\n"))
	if len(docs) != 2 {
		t.Fatalf("%d documents, want a SecurityPolicy and a ReferenceGrant", len(docs))
	}
	var sp egv1a1.SecurityPolicy
	decodeStrict(t, docs[0], &sp)
	if sp.APIVersion != "gateway.envoyproxy.io/v1alpha1" || sp.Kind != "SecurityPolicy" {
		t.Fatalf("%s %s", sp.APIVersion, sp.Kind)
	}
	ea := sp.Spec.ExtAuth
	if ea == nil || ea.GRPC == nil || ea.HTTP != nil || len(ea.GRPC.BackendRefs) != 1 {
		t.Fatalf("extAuth %+v: want one gRPC backend, corsauthz", ea)
	}
	ref := ea.GRPC.BackendRefs[0].BackendObjectReference
	if ref.Name != "corsauthz" || ref.Namespace == nil || *ref.Namespace != "corsauthz" || ref.Port == nil || *ref.Port != 9001 {
		t.Errorf("backendRef %+v, want corsauthz.corsauthz:9001 (deploy/kubernetes)", ref)
	}
	if sp.Spec.CORS != nil {
		t.Error("the SecurityPolicy sets cors: corsauthz answers CORS, Envoy's CORS filter would answer preflights first")
	}
	if ea.FailOpen == nil || *ea.FailOpen {
		t.Error("extAuth must fail closed")
	}
	if ea.Timeout == nil {
		t.Fatal("extAuth has no timeout")
	}
	gatewayTimeout, err := time.ParseDuration(string(*ea.Timeout))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile("../istio/oauth2-proxy/corsauthz.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e, _, err := policy.Load("corsauthz.yaml", cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range e.Authorizers() {
		if gatewayTimeout-a.Timeout() < 250*time.Millisecond {
			t.Errorf("extAuth timeout %s leaves too little room above authorizer %s's %s", gatewayTimeout, a.Name, a.Timeout())
		}
	}

	var rg gwapiv1b1.ReferenceGrant
	decodeStrict(t, docs[1], &rg)
	if rg.Kind != "ReferenceGrant" || string(rg.Spec.From[0].Kind) != "SecurityPolicy" || string(rg.Spec.From[0].Namespace) != sp.Namespace ||
		rg.Namespace != string(*ref.Namespace) {
		t.Errorf("ReferenceGrant %+v does not let the SecurityPolicy refer to corsauthz", rg.Spec)
	}
}

// TestDecoderIsStrict: a misspelt field is refused, so the test above
// proves the file is what Envoy Gateway reads.
func TestDecoderIsStrict(t *testing.T) {
	js, _ := sigsyaml.YAMLToJSONStrict([]byte("spec:\n  extAuth:\n    grpc: {}\n    timout: 1s\n"))
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	var sp egv1a1.SecurityPolicy
	if err := dec.Decode(&sp); err == nil {
		t.Error("a misspelt field was accepted")
	}
}

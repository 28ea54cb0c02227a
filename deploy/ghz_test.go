package deploy_test

import (
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// TestGhzRequestData checks that each ghz data file is a CheckRequest Envoy
// could send: it decodes strictly, validates, and its headers agree with the
// request fields corsauthz reads.
func TestGhzRequestData(t *testing.T) {
	t.Parallel()
	policies := examplePolicies(t)
	tests := []struct {
		file       string
		method     string
		wantOrigin bool
		// preflight: an OPTIONS request with Access-Control-Request-Method.
		preflight bool
	}{
		{file: "ghz/preflight.json", method: "OPTIONS", wantOrigin: true, preflight: true},
		{file: "ghz/actual.json", method: "PUT", wantOrigin: true},
		{file: "ghz/no-origin.json", method: "GET"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			var req authv3.CheckRequest
			if err := strictProtoJSON(readFile(t, tt.file), &req); err != nil {
				t.Fatal(err)
			}
			if err := req.ValidateAll(); err != nil {
				t.Fatal(err)
			}
			http := req.GetAttributes().GetRequest().GetHttp()
			h := http.GetHeaders()
			for k := range h {
				if k != strings.ToLower(k) {
					t.Errorf("header %q: Envoy sends header names in lower case", k)
				}
			}
			if len(http.GetHeaderMap().GetHeaders()) > 0 {
				t.Error("header_map is set; the example data uses headers")
			}

			if got := http.GetMethod(); got != tt.method {
				t.Errorf("method = %q, want %q", got, tt.method)
			}
			if got := http.GetHost(); got != "api.example.com" {
				t.Errorf("host = %q, want api.example.com", got)
			}
			for name, want := range map[string]string{
				":method":    http.GetMethod(),
				":authority": http.GetHost(),
				":path":      http.GetPath(),
				":scheme":    http.GetScheme(),
			} {
				if h[name] != want {
					t.Errorf("header %s = %q, but the request field says %q", name, h[name], want)
				}
			}

			origin, hasOrigin := h["origin"]
			switch {
			case hasOrigin != tt.wantOrigin:
				t.Errorf("has origin header = %v, want %v", hasOrigin, tt.wantOrigin)
			case hasOrigin && origin != "https://app.example.com":
				t.Errorf("origin = %q, want https://app.example.com", origin)
			}
			_, hasACRM := h["access-control-request-method"]
			if hasACRM != tt.preflight {
				t.Errorf("has access-control-request-method = %v, want %v", hasACRM, tt.preflight)
			}
			if tt.preflight {
				if _, ok := h["access-control-request-headers"]; !ok {
					t.Error("a preflight for a PUT with JSON and Authorization carries access-control-request-headers")
				}
				if h["sec-fetch-mode"] != "cors" {
					t.Errorf("sec-fetch-mode = %q, want cors", h["sec-fetch-mode"])
				}
			}

			name := req.GetAttributes().GetContextExtensions()["cors_policy"]
			if name != "api" {
				t.Errorf("context_extensions.cors_policy = %q, want api", name)
			}
			if _, ok := policies[name]; !ok {
				t.Errorf("cors_policy %q names no policy in deploy/corsauthz.yaml", name)
			}
		})
	}
}

package middleware_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	th "github.com/corsauthz/corsauthz/internal/testharness"
	"github.com/corsauthz/corsauthz/middleware"
)

// TestGRPCAuthorizerResponseHeaders: in both modes, a gRPC authorizer's
// ok_response.response_headers_to_add reach the response under their
// canonical names (gRPC's are lower case), replacing the handler's header
// of the same name as OVERWRITE_IF_EXISTS_OR_ADD says; its own
// Access-Control-Allow-Origin never does (corsauthz's wins), and its
// request edits reach the handler.
func TestGRPCAuthorizerResponseHeaders(t *testing.T) {
	t.Parallel()
	ta := th.StartTestAuthorizers(t)
	addr, _ := startCorsauthzWith(t, "127.0.0.1:0", fmt.Sprintf(th.AuthorizerConfig, ta.HTTPURL, ta.GRPCAddr))
	for _, mode := range []middleware.Mode{middleware.ModeLocal, middleware.ModeRemote} {
		t.Run(string(mode), func(t *testing.T) {
			m, err := middleware.New(context.Background(), middleware.Options{Address: addr, Mode: mode, Registerer: prometheus.NewRegistry()})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			var user, token string
			h := m.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				user, token = r.Header.Get("X-User"), r.Header.Get("X-Token")
				w.Header().Set("Access-Control-Allow-Origin", "https://handler.example")
				w.Header().Set("X-Checked", "by the handler")
				fmt.Fprint(w, "ok")
			}))
			r := httptest.NewRequest(http.MethodGet, "http://rpc.example.com/v1", nil)
			r.RequestURI = "/v1"
			r.Header.Set("Origin", "https://app.example.com")
			r.Header.Set("X-Token", "ok")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if rec.Code != http.StatusOK || rec.Body.String() != "ok" {
				t.Fatalf("answered %d %q, want the handler's 200", rec.Code, rec.Body)
			}
			if got := rec.Header()["X-Checked"]; !slices.Equal(got, []string{"yes"}) || len(rec.Header()["x-checked"]) > 0 {
				t.Errorf("headers %v, want X-Checked: yes alone (the authorizer's, replacing the handler's)", rec.Header())
			}
			if got := rec.Header().Values("Access-Control-Allow-Origin"); !slices.Equal(got, []string{"https://app.example.com"}) {
				t.Errorf("Access-Control-Allow-Origin %q, want corsauthz's alone", got)
			}
			if user != "alice" || token != "" {
				t.Errorf("the handler saw X-User %q and X-Token %q, want alice and none", user, token)
			}
		})
	}
}

package middleware_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"slices"
	"testing"
)

// TestHandlerCORSHeadersReplaced: whatever the wrapped handler does with
// Access-Control-* headers (set in any case, declared or set as trailers,
// sent in a 103) the response carries corsauthz's answer only, and Vary
// keeps the handler's values with corsauthz's added; over a real socket,
// for a CORS request and a request without Origin.
func TestHandlerCORSHeadersReplaced(t *testing.T) {
	t.Parallel()
	addr, _ := startCorsauthz(t, "127.0.0.1:0")
	m := localMiddleware(t, addr)
	const app = "https://app.example.com"
	tests := []struct {
		desc    string
		handler http.HandlerFunc
		// header values wanted (nil: absent), for a CORS request and for
		// one without Origin
		want, wantNoOrigin map[string][]string
		trailers           map[string][]string // wanted trailers, both requests
		early              bool                // a 103 is sent: it must carry no Access-Control-*
	}{
		{
			desc: "canonical and non-canonical names, and one corsauthz never sends",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Access-Control-Allow-Origin", "*")
				w.Header()["access-control-allow-credentials"] = []string{"false"}
				w.Header()["ACCESS-CONTROL-ALLOW-METHODS"] = []string{"DELETE"}
				w.Header().Set("Access-Control-Foo", "bar")
				fmt.Fprint(w, "ok")
			},
			want:         map[string][]string{"Access-Control-Allow-Origin": {app}, "Access-Control-Allow-Credentials": {"true"}, "Access-Control-Allow-Methods": nil, "Access-Control-Foo": nil, "Vary": {"Origin"}},
			wantNoOrigin: map[string][]string{"Access-Control-Allow-Origin": nil, "Access-Control-Allow-Credentials": nil, "Access-Control-Allow-Methods": nil, "Access-Control-Foo": nil, "Vary": {"Origin"}},
		},
		{
			desc: "the handler's Vary is kept, corsauthz's added",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Vary", "Accept-Encoding")
				w.WriteHeader(http.StatusAccepted)
			},
			want:         map[string][]string{"Vary": {"Accept-Encoding", "Origin"}},
			wantNoOrigin: map[string][]string{"Vary": {"Accept-Encoding", "Origin"}},
		},
		{
			desc: "trailers: declared and prefixed Access-Control-* ones dropped, others kept",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Trailer", "Access-Control-Allow-Origin, X-Checksum")
				w.Header().Add("Trailer", "access-control-expose-headers")
				fmt.Fprint(w, "body")
				w.Header().Set("Access-Control-Allow-Origin", "*")
				w.Header()["access-control-expose-headers"] = []string{"Set-Cookie"}
				w.Header().Set("X-Checksum", "abc")
				w.Header().Set(http.TrailerPrefix+"Access-Control-Allow-Credentials", "true")
				w.Header().Set(http.TrailerPrefix+"X-Late", "1")
			},
			want:         map[string][]string{"Access-Control-Allow-Origin": {app}},
			wantNoOrigin: map[string][]string{"Access-Control-Allow-Origin": nil},
			trailers:     map[string][]string{"X-Checksum": {"abc"}, "X-Late": {"1"}, "Access-Control-Allow-Origin": nil, "Access-Control-Allow-Credentials": nil, "Access-Control-Expose-Headers": nil},
		},
		{
			desc: "103 Early Hints",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Link", "</app.js>; rel=preload")
				w.Header().Set("Access-Control-Allow-Origin", "*")
				w.WriteHeader(http.StatusEarlyHints)
				w.Header().Set("Access-Control-Allow-Origin", "*")
				fmt.Fprint(w, "ok")
			},
			want:         map[string][]string{"Access-Control-Allow-Origin": {app}, "Link": {"</app.js>; rel=preload"}},
			wantNoOrigin: map[string][]string{"Access-Control-Allow-Origin": nil},
			early:        true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(m.Wrap(tc.handler))
			defer srv.Close()
			for _, origin := range []string{app, ""} {
				want := tc.want
				if origin == "" {
					want = tc.wantNoOrigin
				}
				var early []textproto.MIMEHeader
				ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
					Got1xxResponse: func(_ int, h textproto.MIMEHeader) error {
						early = append(early, h)
						return nil
					},
				})
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/x", nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Host = "api.example.com"
				if origin != "" {
					req.Header.Set("Origin", origin)
				}
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				for name, values := range want {
					if got := resp.Header.Values(name); !slices.Equal(got, values) {
						t.Errorf("Origin %q: %s: %q, want %q (response %v)", origin, name, got, values, resp.Header)
					}
				}
				for name, values := range tc.trailers {
					if got := resp.Trailer.Values(name); !slices.Equal(got, values) {
						t.Errorf("Origin %q: trailer %s: %q, want %q (trailers %v)", origin, name, got, values, resp.Trailer)
					}
				}
				if tc.early && len(early) != 1 {
					t.Errorf("Origin %q: %d informational responses, want 1", origin, len(early))
				}
				for _, h := range early {
					for name := range h {
						if len(name) > 15 && textproto.CanonicalMIMEHeaderKey(name)[:15] == "Access-Control-" {
							t.Errorf("Origin %q: the 103 carries %s", origin, name)
						}
					}
				}
			}
		})
	}
}

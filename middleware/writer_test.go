package middleware_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/corsauthz/corsauthz/middleware"
)

// TestWriterFeatures: through the middleware's writer, on a real HTTP
// server, a handler's Access-Control-* header escapes neither on a 1xx
// informational response nor in trailers, and the standard features work:
// w.(http.Hijacker), http.ResponseController's deadlines and full duplex.
// (Finding 9 of issue 17: a handler's Access-Control-Allow-Origin went out
// on 103 Early Hints and in trailers; hijacking bypassed the wrapper and
// the ResponseController features failed through it.)
func TestWriterFeatures(t *testing.T) {
	t.Parallel()
	addr, _ := startCorsauthz(t, "127.0.0.1:0")
	const app = "https://app.example.com"
	tests := []struct {
		desc    string
		handler http.HandlerFunc
		check   func(t *testing.T, resp *http.Response, body string, early []textproto.MIMEHeader)
	}{
		{
			desc: "103 Early Hints",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Access-Control-Allow-Origin", "*")
				w.Header().Set("Link", "</app.css>; rel=preload; as=style")
				w.WriteHeader(http.StatusEarlyHints)
				w.Header().Set("Access-Control-Allow-Origin", "https://evil.example")
				fmt.Fprint(w, "hello")
			},
			check: func(t *testing.T, resp *http.Response, body string, early []textproto.MIMEHeader) {
				if len(early) != 1 || early[0].Get("Link") == "" {
					t.Fatalf("informational responses %v, want one 103 with its Link", early)
				}
				for name := range early[0] {
					if strings.HasPrefix(strings.ToLower(name), "access-control-") {
						t.Errorf("the 103 carries %s: %v", name, early[0])
					}
				}
				if got := resp.Header.Values("Access-Control-Allow-Origin"); len(got) != 1 || got[0] != app {
					t.Errorf("final Access-Control-Allow-Origin %q, want corsauthz's alone", got)
				}
			},
		},
		{
			desc: "trailers",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Trailer", "Access-Control-Allow-Origin, X-Checksum")
				fmt.Fprint(w, "hello")
				w.(http.Flusher).Flush()
				w.Header().Set("Access-Control-Allow-Origin", "*")
				w.Header().Set("X-Checksum", "abc")
				w.Header().Set(http.TrailerPrefix+"Access-Control-Allow-Credentials", "false")
			},
			check: func(t *testing.T, resp *http.Response, body string, _ []textproto.MIMEHeader) {
				if resp.Trailer.Get("X-Checksum") != "abc" {
					t.Errorf("trailers %v: the handler's X-Checksum is lost", resp.Trailer)
				}
				for name := range resp.Trailer {
					if strings.HasPrefix(strings.ToLower(name), "access-control-") {
						t.Errorf("the trailers carry %s: %v", name, resp.Trailer)
					}
				}
				if got := resp.Header.Values("Access-Control-Allow-Origin"); len(got) != 1 || got[0] != app {
					t.Errorf("Access-Control-Allow-Origin %q, want corsauthz's alone", got)
				}
			},
		},
		{
			desc: "w.(http.Hijacker)",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				hj, ok := w.(http.Hijacker)
				if !ok {
					http.Error(w, "not a Hijacker", http.StatusInternalServerError)
					return
				}
				conn, rw, err := hj.Hijack()
				if err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				defer conn.Close()
				fmt.Fprint(rw, "HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nhijacked")
				rw.Flush()
			},
			check: func(t *testing.T, resp *http.Response, body string, _ []textproto.MIMEHeader) {
				if resp.StatusCode != 200 || body != "hijacked" {
					t.Errorf("hijacked: %d %q, want the handler's own answer", resp.StatusCode, body)
				}
			},
		},
		{
			desc: "http.ResponseController",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				rc := http.NewResponseController(w)
				for name, err := range map[string]error{
					"SetWriteDeadline": rc.SetWriteDeadline(time.Now().Add(5 * time.Second)),
					"SetReadDeadline":  rc.SetReadDeadline(time.Now().Add(5 * time.Second)),
					"EnableFullDuplex": rc.EnableFullDuplex(),
				} {
					if err != nil {
						http.Error(w, name+": "+err.Error(), http.StatusInternalServerError)
						return
					}
				}
				w.Header().Set("Access-Control-Allow-Origin", "*")
				fmt.Fprint(w, "hello")
				if err := rc.Flush(); err != nil {
					t.Errorf("Flush: %v", err)
				}
			},
			check: func(t *testing.T, resp *http.Response, body string, _ []textproto.MIMEHeader) {
				if resp.StatusCode != 200 || body != "hello" {
					t.Errorf("%d %q, want 200 hello", resp.StatusCode, body)
				}
				if got := resp.Header.Values("Access-Control-Allow-Origin"); len(got) != 1 || got[0] != app {
					t.Errorf("Access-Control-Allow-Origin %q, want corsauthz's alone", got)
				}
			},
		},
	}
	for _, mode := range []middleware.Mode{middleware.ModeLocal, middleware.ModeRemote} {
		m, err := middleware.New(context.Background(), middleware.Options{Address: addr, Mode: mode, Registerer: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		for _, tc := range tests {
			t.Run(fmt.Sprintf("%s/%s", mode, tc.desc), func(t *testing.T) {
				srv := httptest.NewServer(m.Wrap(tc.handler))
				defer srv.Close()
				var mu sync.Mutex
				var early []textproto.MIMEHeader
				ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
					Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
						mu.Lock()
						defer mu.Unlock()
						early = append(early, h)
						return nil
					},
				})
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/x", nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Origin", app)
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				mu.Lock()
				defer mu.Unlock()
				tc.check(t, resp, string(body), early)
			})
		}
	}
}

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

// TestResponsesKeepTheirHeaders: the writer's state is reused from request
// to request, and the header values it sets are shared (the policy's, the
// request's own Origin): a response's headers stay what they were when the
// next requests are served, even in a writer that keeps its header map
// (an outer recorder, a buffering proxy), and a handler that appends to a
// CORS header after writing changes only its own response.
func TestResponsesKeepTheirHeaders(t *testing.T) {
	t.Parallel()
	const a, b = "https://a.example.com", "https://b.example.com"
	addr, _ := startCorsauthzWith(t, "127.0.0.1:0", `
policies:
  - name: api
    allowed_origins: [`+a+`, `+b+`]
    exposed_headers: [X-Request-Id]
    allow_credentials: true
default_policy: api
`)
	m := localMiddleware(t, addr)
	h := m.Wrap(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "ok")
		// After the headers are written: changes nothing sent, and must
		// change nothing but this response's own map.
		w.Header().Add("Vary", "Accept")
		w.Header().Add("Access-Control-Expose-Headers", "X-Extra")
	}))
	serve := func(origin string) (*httptest.ResponseRecorder, *http.Request) {
		r := httptest.NewRequest(http.MethodGet, "http://api.example.com/x", nil)
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec, r
	}
	type served struct {
		origin string
		rec    *httptest.ResponseRecorder
		req    *http.Request
	}
	var all []served
	for range 3 { // the same goroutine: the pool gives the same state back
		for _, origin := range []string{a, b, ""} {
			rec, req := serve(origin)
			all = append(all, served{origin, rec, req})
		}
	}
	for i, s := range all {
		got := s.rec.Header()
		var wantACAO []string
		if s.origin != "" {
			wantACAO = []string{s.origin}
		}
		if acao := got.Values("Access-Control-Allow-Origin"); !slices.Equal(acao, wantACAO) {
			t.Errorf("response %d (Origin %q): Access-Control-Allow-Origin %q, want %q", i, s.origin, acao, wantACAO)
		}
		if vary := got.Values("Vary"); !slices.Equal(vary, []string{"Origin", "Accept"}) {
			t.Errorf("response %d: Vary %q, want its own [Origin Accept]", i, vary)
		}
		if s.origin != "" {
			if expose := got.Values("Access-Control-Expose-Headers"); !slices.Equal(expose, []string{"X-Request-Id", "X-Extra"}) {
				t.Errorf("response %d: Access-Control-Expose-Headers %q, want its own [X-Request-Id X-Extra]", i, expose)
			}
		}
		if o := s.req.Header.Values("Origin"); s.origin != "" && !slices.Equal(o, []string{s.origin}) {
			t.Errorf("request %d: its Origin header became %q", i, o)
		}
	}
}

// TestLateCallsReachNoOtherResponse: every method of a writer kept past
// its handler's return (Write, WriteHeader, Flush, Header) reaches its own
// response only, while the next request is served with the state the
// first one gave back.
func TestLateCallsReachNoOtherResponse(t *testing.T) {
	t.Parallel()
	addr, _ := startCorsauthz(t, "127.0.0.1:0")
	m := localMiddleware(t, addr)
	var kept http.ResponseWriter
	var second func()
	h := m.Wrap(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if kept == nil {
			kept = w // a bug: kept past the return
			fmt.Fprint(w, "first")
			return
		}
		// While the second request is served, the first's writer is used;
		// then this handler sets its own CORS header, which must go as
		// every handler's does (the late calls must not have written this
		// response's headers early).
		second()
		w.Header().Set("Access-Control-Allow-Origin", "https://handler.example")
		fmt.Fprint(w, "second")
	}))
	serve := func() *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "http://api.example.com/x", nil)
		r.Header.Set("Origin", "https://app.example.com")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec
	}
	first := serve()
	second = func() {
		kept.Header().Set("Access-Control-Allow-Origin", "https://evil.example")
		kept.Header().Set("X-Late", "1")
		kept.WriteHeader(http.StatusTeapot)
		fmt.Fprint(kept, "-late")
		kept.(http.Flusher).Flush()
	}
	rec := serve()
	if got := rec.Body.String(); got != "second" {
		t.Errorf("second response body %q, want only its own", got)
	}
	if rec.Code != http.StatusOK || rec.Header().Get("X-Late") != "" {
		t.Errorf("second response %d %v: the first's late calls reached it", rec.Code, rec.Header())
	}
	if got := rec.Header().Values("Access-Control-Allow-Origin"); !slices.Equal(got, []string{"https://app.example.com"}) {
		t.Errorf("second response Access-Control-Allow-Origin %q, want corsauthz's", got)
	}
	if got := first.Body.String(); got != "first-late" {
		t.Errorf("first response body %q, want its own bytes and its late write (as with plain net/http)", got)
	}
}

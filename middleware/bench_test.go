package middleware_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jub0bs/cors"
	"golang.org/x/sys/unix"

	"github.com/corsauthz/corsauthz/middleware"
)

// benchConfig is one policy, as an API with a first-party app would have.
// benchJub0bsCors is the same policy in github.com/jub0bs/cors, the
// comparison.
const benchConfig = `
policies:
  - name: api
    allowed_origins: [https://app.example.com]
    allowed_methods: [GET, POST, PUT, DELETE]
    allowed_headers: [Content-Type, Authorization]
    exposed_headers: [X-Request-Id]
    allow_credentials: true
    max_age_seconds: 600
default_policy: api
`

var benchJub0bsCors = cors.Config{
	Origins:         []string{"https://app.example.com"},
	Credentialed:    true,
	Methods:         []string{"GET", "POST", "PUT", "DELETE"},
	RequestHeaders:  []string{"Content-Type", "Authorization"},
	MaxAgeInSeconds: 600,
	ResponseHeaders: []string{"X-Request-Id"},
}

// discardWriter is a ResponseWriter that keeps only the headers, so that
// a benchmark measures the handler chain, not a recorder.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

var benchUpstream = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
	w.Header()["Content-Type"] = []string{"text/plain; charset=utf-8"}
	_, _ = w.Write([]byte("ok"))
})

// processCPU is the CPU time the process has used (all its threads: the
// garbage collector's too). On a shared machine a benchmark's time per
// operation depends on the other jobs; its CPU time per operation (the
// cpu-ns/op metric) much less.
func processCPU(b *testing.B) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ts.Nano())
}

// BenchmarkMiddleware compares, per request: no middleware, corsauthz's
// middleware in local mode (decided in process) and in remote mode (one
// Decide over loopback gRPC), and jub0bs/cors configured the same way;
// without Origin also the floor (floorWriter).
//
//	go test ./middleware -run '^$' -bench Middleware -benchmem -count 6 -benchtime 300ms
//
// The figure to compare on a shared machine is cpu-ns/op.
func BenchmarkMiddleware(b *testing.B) {
	addr, _ := startCorsauthzWith(b, "127.0.0.1:0", benchConfig)
	ctx := context.Background()
	local, err := middleware.New(ctx, middleware.Options{Address: addr})
	if err != nil {
		b.Fatal(err)
	}
	defer local.Close()
	remote, err := middleware.New(ctx, middleware.Options{Address: addr, Mode: middleware.ModeRemote})
	if err != nil {
		b.Fatal(err)
	}
	defer remote.Close()
	jub0bs, err := cors.NewMiddleware(benchJub0bsCors)
	if err != nil {
		b.Fatal(err)
	}

	floor := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := &floorWriter{w: w}
		benchUpstream.ServeHTTP(f, r)
		f.finish()
	})
	handlers := []struct {
		name string
		h    http.Handler
		// noOriginOnly: no CORS implementation (floorWriter), measured
		// only where it answers as corsauthz must.
		noOriginOnly bool
	}{
		{"none", benchUpstream, false},
		{"floor", floor, true},
		{"corsauthz-local", local.Wrap(benchUpstream), false},
		{"jub0bs-cors", jub0bs.Wrap(benchUpstream), false},
		{"corsauthz-remote", remote.Wrap(benchUpstream), false},
	}
	requests := []struct {
		name   string
		header http.Header
		method string
		status int
	}{
		{"actual", http.Header{"Origin": {"https://app.example.com"}}, "GET", 200},
		{"preflight", http.Header{
			"Origin":                         {"https://app.example.com"},
			"Access-Control-Request-Method":  {"PUT"},
			"Access-Control-Request-Headers": {"content-type"},
		}, "OPTIONS", 204},
		{"no-origin", http.Header{}, "GET", 200},
	}
	for _, rq := range requests {
		for _, hd := range handlers {
			if hd.noOriginOnly && len(rq.header) > 0 {
				continue
			}
			b.Run(rq.name+"/"+hd.name, func(b *testing.B) {
				r := httptest.NewRequest(rq.method, "http://api.example.com/v1/orders", nil)
				r.RequestURI = "/v1/orders" // origin-form, as net/http's server reads a request line
				r.Header = rq.header
				w := &discardWriter{h: http.Header{}}
				if len(rq.header) == 0 {
					// Without Origin, every middleware but jub0bs/cors
					// removes the Access-Control-* headers already there.
					w.h["Access-Control-Allow-Origin"] = []string{"*"}
				}
				hd.h.ServeHTTP(w, r)
				if want := rq.status; hd.name != "none" && w.code != want && !(want == 200 && w.code == 0) {
					b.Fatalf("%s answered %d, want %d", hd.name, w.code, want)
				}
				if len(rq.header) == 0 && hd.name != "none" && hd.name != "jub0bs-cors" && len(w.h["Access-Control-Allow-Origin"]) > 0 {
					b.Fatalf("%s left the handler's Access-Control-Allow-Origin", hd.name)
				}
				b.ReportAllocs()
				cpu := processCPU(b)
				for b.Loop() {
					clear(w.h)
					w.code = 0
					hd.h.ServeHTTP(w, r)
				}
				b.ReportMetric(float64(processCPU(b)-cpu)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// floorWriter is the least a middleware can do for a request without
// Origin and still answer as corsauthz's must: remove the handler's own
// Access-Control-* headers (one walk of the header map) and add Vary:
// Origin, with a writer of its own per request. It decides nothing, keeps
// no late-write guard and is no CORS implementation: BenchmarkMiddleware
// measures it ("floor") on requests without Origin only, beside
// jub0bs/cors, which adds Vary and removes nothing.
type floorWriter struct {
	w       http.ResponseWriter
	written bool
}

var floorVary = []string{"Origin"}

func (f *floorWriter) Header() http.Header { return f.w.Header() }

func (f *floorWriter) finish() {
	if f.written {
		return
	}
	f.written = true
	h := f.w.Header()
	for name := range h {
		if len(name) > len("Access-Control-") && strings.EqualFold(name[:len("Access-Control-")], "Access-Control-") {
			delete(h, name)
		}
	}
	if old := h["Vary"]; len(old) > 0 {
		h["Vary"] = append(old, "Origin")
	} else {
		h["Vary"] = floorVary
	}
}

func (f *floorWriter) Write(b []byte) (int, error) { f.finish(); return f.w.Write(b) }
func (f *floorWriter) WriteHeader(code int)        { f.finish(); f.w.WriteHeader(code) }

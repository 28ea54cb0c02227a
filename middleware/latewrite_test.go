//go:build !race

// The race detector reports the late write itself (the handler's bug, in
// net/http's own response), so this test runs without it.

package middleware_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/corsauthz/corsauthz/middleware"
)

// TestLateWriteStaysInItsResponse: a handler that writes after it returned
// (a goroutine it left behind, a common bug) never writes into another
// request's response: nothing of the middleware is shared between
// requests (it pooled its writer once, and 4 of 15 responses got another's
// bytes).
func TestLateWriteStaysInItsResponse(t *testing.T) {
	t.Parallel()
	addr, _ := startCorsauthz(t, "127.0.0.1:0")
	for _, mode := range []middleware.Mode{middleware.ModeLocal, middleware.ModeRemote} {
		m, err := middleware.New(context.Background(), middleware.Options{Address: addr, Mode: mode, Registerer: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		var late sync.WaitGroup
		srv := httptest.NewServer(m.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id := r.URL.Query().Get("id")
			late.Go(func() {
				time.Sleep(5 * time.Millisecond)
				_, _ = fmt.Fprint(w, "late-"+id) // after the handler returned: a bug
			})
			fmt.Fprint(w, "body-"+id)
		})))
		var wg sync.WaitGroup
		for i := range 15 {
			wg.Go(func() {
				for j := range 3 {
					id := fmt.Sprintf("%d.%d", i, j)
					req, _ := http.NewRequest("GET", srv.URL+"/x?id="+id, nil)
					req.Header.Set("Origin", "https://app.example.com")
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if string(body) != "body-"+id {
						t.Errorf("%s mode: response %s carries %q, want only its own body", mode, id, body)
					}
				}
			})
		}
		wg.Wait()
		late.Wait()
		srv.Close()
	}
}

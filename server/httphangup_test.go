package server_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	th "github.com/corsauthz/corsauthz/internal/testharness"
	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/server"
)

// TestHTTPHangupCancelsAuthorizerCall: a gateway that hangs up while the
// HTTP listener asks an authorizer cancels that call, as a net/http
// request's context would, instead of leaving it to the authorizer's
// timeout (10 s here), plain and over TLS (whose clean close sends a
// close_notify record before the FIN), and also when it had sent its
// next request already; a gateway that keeps its connection open does
// not, even with its next request sent early.
func TestHTTPHangupCancelsAuthorizerCall(t *testing.T) {
	t.Parallel()
	const check = "GET /check HTTP/1.1\r\nHost: corsauthz\r\nX-Forwarded-Method: GET\r\nX-Forwarded-Host: web.example.com\r\nX-Forwarded-Uri: /v1\r\nOrigin: https://app.example.com\r\n\r\n"
	for _, transport := range listenerTransports(t) {
		t.Run(transport.desc, func(t *testing.T) {
			t.Parallel()
			asked := make(chan time.Time, 4)
			cancelled := make(chan time.Time, 4)
			hanging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				asked <- time.Now()
				select {
				case <-r.Context().Done():
					cancelled <- time.Now()
				case <-time.After(20 * time.Second):
				}
			}))
			t.Cleanup(hanging.Close)
			cfg := fmt.Sprintf(`
authorizers:
  - name: hanging
    http: {url: %s/auth, timeout: 10s}
policies:
  - name: web
    authorizer: hanging
    match: {hosts: [web.example.com]}
    allowed_origins: [https://app.example.com]
`, hanging.URL)
			ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, cfg)), server.Options{HTTPAddr: "127.0.0.1:0", TLS: transport.tls})
			// drain waits out the calls a case left behind (the request a
			// gateway sent early is asked about once its connection is
			// gone, and cancelled in turn).
			drain := func(desc string) {
				for {
					select {
					case <-asked:
						select {
						case <-cancelled:
						case <-time.After(3 * time.Second):
							t.Errorf("%s: a call for a closed connection still waits 3 s later", desc)
						}
					case <-time.After(500 * time.Millisecond):
						return
					}
				}
			}
			for _, tc := range []struct {
				desc   string
				then   string // sent after the check
				hangUp bool
			}{
				{desc: "the gateway hangs up", hangUp: true},
				{desc: "the gateway hangs up after sending its next request", then: check, hangUp: true},
				{desc: "the gateway waits"},
				{desc: "the gateway sends its next request early and waits", then: check},
			} {
				c := dialHTTP(t, ts.Srv.HTTPAddr().String(), transport.client)
				if _, err := io.WriteString(c, check+tc.then); err != nil {
					t.Fatal(err)
				}
				var t0 time.Time
				select {
				case t0 = <-asked:
				case <-time.After(5 * time.Second):
					t.Fatalf("%s: the authorizer was not asked", tc.desc)
				}
				if tc.hangUp {
					c.Close()
				}
				select {
				case t1 := <-cancelled:
					if !tc.hangUp {
						t.Errorf("%s: the authorizer call was cancelled after %s", tc.desc, t1.Sub(t0))
					} else if d := t1.Sub(t0); d > 3*time.Second {
						t.Errorf("%s: the authorizer call was cancelled %s after it was made, want well before its 10 s timeout", tc.desc, d)
					}
				case <-time.After(2 * time.Second):
					if tc.hangUp {
						t.Errorf("%s: the authorizer call still waits 2 s later", tc.desc)
					}
				}
				if !tc.hangUp {
					// Now it hangs up: the call ends too, before the next case.
					c.Close()
					select {
					case <-cancelled:
					case <-time.After(3 * time.Second):
						t.Errorf("%s: the authorizer call still waits 3 s after the gateway hung up", tc.desc)
					}
				}
				drain(tc.desc)
			}
		})
	}
}

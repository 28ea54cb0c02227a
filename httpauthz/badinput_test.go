package httpauthz_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corsauthz/corsauthz/internal/limits"

	"github.com/corsauthz/corsauthz/httpauthz"
)

// TestTransportLimits sends what net/http itself refuses, or what only
// the listener's settings bound, over real connections: each is answered
// at once with its status and a one-line body, never held.
func TestTransportLimits(t *testing.T) {
	t.Parallel()
	ts, _ := startListener(t, httpauthz.Options{})
	addr := ts.Listener.Addr().String()
	for _, tt := range []struct {
		desc   string
		raw    string
		status int
		body   string
	}{
		{
			desc:   "headers past MaxHeaderBytes: 431",
			raw:    request("GET", "/", "Host: api.example.com", "X-Big: "+strings.Repeat("b", limits.HTTPHeaderBytes+8192)),
			status: 431, body: "431 Request Header Fields Too Large",
		},
		{
			desc:   "HTTP/1.1 without Host: 400",
			raw:    "GET / HTTP/1.1\r\nOrigin: https://app.example.com\r\n\r\n",
			status: 400, body: "missing required Host header",
		},
		{
			desc:   "HTTP/1.0 without any host: 400",
			raw:    "GET / HTTP/1.0\r\nOrigin: https://app.example.com\r\n\r\n",
			status: 400, body: "the request names no host",
		},
		{
			desc:   "a header line that is not one: 400",
			raw:    "GET / HTTP/1.1\r\nHost: api.example.com\r\nno colon here\r\n\r\n",
			status: 400, body: "400 Bad Request",
		},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			got := exchange(t, addr, tt.raw)
			if elapsed := time.Since(start); elapsed > 2*time.Second {
				t.Errorf("answered after %v", elapsed)
			}
			if got.status != tt.status || !strings.Contains(got.body, tt.body) || strings.Count(strings.TrimSuffix(got.body, "\n"), "\n") != 0 {
				t.Errorf("answer = %d %q, want %d with one line saying %q", got.status, got.body, tt.status, tt.body)
			}
		})
	}
}

// TestBodyIgnored sends requests announcing bodies far larger than what
// follows: the answer comes at once, without the body being waited for,
// and the connection is closed after it.
func TestBodyIgnored(t *testing.T) {
	t.Parallel()
	ts, _ := startListener(t, httpauthz.Options{})
	addr := ts.Listener.Addr().String()
	for _, tt := range []struct{ desc, framing string }{
		{"Content-Length of 1 GiB", "Content-Length: 1073741824"},
		{"chunked, never ending", "Transfer-Encoding: chunked"},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			raw := "POST /v1/x HTTP/1.1\r\nHost: api.example.com\r\nOrigin: https://app.example.com\r\n" + tt.framing + "\r\n\r\n"
			if tt.framing == "Transfer-Encoding: chunked" {
				raw += "1000\r\n" + strings.Repeat("x", 100)
			} else {
				raw += strings.Repeat("x", 100)
			}
			resp, _, after, took := closingExchange(t, addr, raw)
			if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
				t.Errorf("answer = %d %v, want the decision", resp.StatusCode, resp.Header)
			}
			if !resp.Close {
				t.Errorf("the connection stays open after an unread body")
			}
			if !errors.Is(after, io.EOF) {
				t.Errorf("after the answer: %v, want the connection closed", after)
			}
			if took > 2*time.Second {
				t.Errorf("answered after %v", took)
			}
		})
	}
}

// TestSlowClient holds a request's headers half sent: the listener closes
// the connection after ReadHeaderTimeout instead of waiting for them.
func TestSlowClient(t *testing.T) {
	t.Parallel()
	ts, _ := startListener(t, httpauthz.Options{})
	conn, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: api.example.com\r\nOrig"); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(3 * httpauthz.ReadHeaderTimeout))
	_, err = io.ReadAll(conn)
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("read: %v (the connection was held for %v)", err, elapsed)
	}
	if elapsed < httpauthz.ReadHeaderTimeout-100*time.Millisecond || elapsed > 2*httpauthz.ReadHeaderTimeout {
		t.Errorf("connection closed after %v, want about %v", elapsed, httpauthz.ReadHeaderTimeout)
	}
}

// TestKeepAlive sends several checks on one connection, as NGINX does to
// an upstream with keepalive: each gets its own answer.
func TestKeepAlive(t *testing.T) {
	t.Parallel()
	ts, _ := startListener(t, httpauthz.Options{})
	conn, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	for i, origin := range []string{"https://app.example.com", "https://evil.example.net", "https://app.example.com"} {
		raw := "GET /check HTTP/1.1\r\nHost: corsauthz\r\nX-Original-Host: api.example.com\r\nX-Original-URI: /v1/x\r\nOrigin: " + origin + "\r\n\r\n"
		if _, err := io.WriteString(conn, raw); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		resp.Body.Close()
		want := origin
		if origin == "https://evil.example.net" {
			want = ""
		}
		if got := resp.Header.Get("Access-Control-Allow-Origin"); resp.StatusCode != 200 || got != want {
			t.Errorf("answer %d = %d, ACAO %q, want 200, %q", i, resp.StatusCode, got, want)
		}
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	var notReady atomic.Pointer[error]
	ts, _ := startListener(t, httpauthz.Options{Ready: func() error {
		if err := notReady.Load(); err != nil {
			return *err
		}
		return nil
	}})
	addr := ts.Listener.Addr().String()
	got := exchange(t, addr, request("GET", httpauthz.HealthPath, "Host: corsauthz"))
	if got.status != 200 || got.body != "ok\n" {
		t.Errorf("health = %d %q, want 200 ok", got.status, got.body)
	}
	// A check of a request for that path is a check, not a probe.
	got = exchange(t, addr, request("GET", "/check", "Host: corsauthz", "X-Original-Host: api.example.com",
		"X-Original-URI: "+httpauthz.HealthPath, "Origin: https://app.example.com"))
	if got.status != 200 || !strings.Contains(strings.Join(got.headers, "\n"), "Access-Control-Allow-Origin: https://app.example.com") {
		t.Errorf("check of %s = %d %v, want the decision", httpauthz.HealthPath, got.status, got.headers)
	}
	shuttingDown := errors.New("shutting down")
	notReady.Store(&shuttingDown)
	got = exchange(t, addr, request("GET", httpauthz.HealthPath, "Host: corsauthz"))
	if got.status != 503 || got.body != "not ready: shutting down\n" {
		t.Errorf("health while not ready = %d %q, want 503 not ready: shutting down", got.status, got.body)
	}
}

// TestRefusedIsReported checks that the decision core hears of every
// request the handler refuses (it logs and counts them).
func TestRefusedIsReported(t *testing.T) {
	t.Parallel()
	ts, logs := startListener(t, httpauthz.Options{})
	exchange(t, ts.Listener.Addr().String(), request("GET", "/", "Host: api.example.com", "Origin: a", "Origin: b"))
	refused := logs.WithMsg(t, "request refused: unreadable request")
	if len(refused) != 1 || refused[0]["status"] != float64(400) || refused[0]["front_end"] != "http" {
		t.Errorf("refusal lines = %v, want one with status 400 from the http front end", refused)
	}
}

package server_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	th "github.com/corsauthz/corsauthz/internal/testharness"
	"github.com/corsauthz/corsauthz/internal/testpki"

	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/server"
)

// keepAliveConn is a connection to the HTTP listener that asks one
// request and stays open, as a gateway's keep-alive connection does.
type keepAliveConn struct {
	net.Conn
	r *bufio.Reader
}

// askOn sends a check on c and reads the answer.
func (c *keepAliveConn) ask(t *testing.T) (*http.Response, string, error) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /check HTTP/1.1\r\nHost: corsauthz\r\nX-Original-Method: GET\r\nX-Original-Host: api.example.com\r\nX-Original-URI: /v1\r\nOrigin: "+th.App+"\r\n\r\n"); err != nil {
		return nil, "", err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return nil, "", err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body), err
}

// listenerTransport is how a test reaches the HTTP listener: plain, or
// over TLS with a test PKI.
type listenerTransport struct {
	desc   string
	tls    *server.TLSOptions // the listener's
	client *tls.Config        // the gateway's; nil for plain
}

func listenerTransports(t *testing.T) []listenerTransport {
	pki := testpki.New(t, "corsauthz-test")
	return []listenerTransport{
		{desc: "plain"},
		{desc: "TLS", tls: &server.TLSOptions{CertFile: pki.ServerCertFile, KeyFile: pki.ServerKeyFile},
			client: &tls.Config{RootCAs: pki.Pool(), ServerName: "127.0.0.1"}},
	}
}

func dialHTTP(t *testing.T, addr string, tlsConfig *tls.Config) *keepAliveConn {
	t.Helper()
	var c net.Conn
	var err error
	if tlsConfig != nil {
		c, err = tls.Dial("tcp", addr, tlsConfig)
	} else {
		c, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &keepAliveConn{Conn: c, r: bufio.NewReader(c)}
}

// TestHTTPConnectionCap: with --http-max-connections 3, three keep-alive
// connections are served; the next ones are answered 503 naming the flag
// (after their request was read, then closed), counted and logged; the
// idle connections are closed after --http-idle-timeout, and then a new
// connection is served. Plain and over TLS (the refusal speaks TLS too).
// (Before: no cap; each idle connection held about 18 KiB for 2 min.)
func TestHTTPConnectionCap(t *testing.T) {
	t.Parallel()
	for _, tc := range listenerTransports(t) {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			const limit, idle = 3, 500 * time.Millisecond
			var logs th.LogBuffer
			ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, th.Config)), server.Options{
				HTTPAddr: "127.0.0.1:0", Logger: logs.Logger(slog.LevelInfo), TLS: tc.tls,
				HTTPMaxConnections: limit, HTTPIdleTimeout: idle,
			})
			addr := ts.Srv.HTTPAddr().String()
			var open []*keepAliveConn
			for range limit {
				c := dialHTTP(t, addr, tc.client)
				resp, _, err := c.ask(t)
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("a connection within the cap: %v %v", resp, err)
				}
				open = append(open, c)
			}
			_, metrics := ts.Get(t, "/metrics")
			if got := th.Metric(metrics, "corsauthz_http_connections"); got != limit {
				t.Errorf("corsauthz_http_connections = %v, want %d", got, limit)
			}
			const extra = 5
			for range extra {
				c := dialHTTP(t, addr, tc.client)
				t0 := time.Now()
				resp, body, err := c.ask(t)
				if err != nil {
					t.Fatalf("a connection past the cap: %v, want a 503", err)
				}
				if resp.StatusCode != 503 || !strings.Contains(body, "--http-max-connections") || !resp.Close {
					t.Errorf("past the cap: %d %q (close %v), want 503 naming --http-max-connections, closing", resp.StatusCode, body, resp.Close)
				}
				if d := time.Since(t0); d > 2*time.Second {
					t.Errorf("the 503 took %s", d)
				}
				if _, err := c.r.ReadByte(); err != io.EOF {
					t.Errorf("after the 503 the connection reads %v, want EOF", err)
				}
			}
			_, metrics = ts.Get(t, "/metrics")
			if got := th.Metric(metrics, "corsauthz_http_connections_refused_total"); got != extra {
				t.Errorf("corsauthz_http_connections_refused_total = %v, want %d", got, extra)
			}
			if n := len(logs.WithMsg(t, "HTTP listener: connection refused: too many connections open; answering 503")); n != extra {
				t.Errorf("%d refusal lines, want %d", n, extra)
			}
			// Idle past the timeout: closed by the listener.
			for i, c := range open {
				_ = c.SetReadDeadline(time.Now().Add(idle + 5*time.Second))
				if _, err := c.r.ReadByte(); err != io.EOF {
					t.Errorf("idle connection %d: read %v, want EOF (closed after %s idle)", i, err, idle)
				}
			}
			th.WaitFor(t, "the idle connections still counted", func() bool {
				_, metrics := ts.Get(t, "/metrics")
				return th.Metric(metrics, "corsauthz_http_connections") == 0
			})
			c := dialHTTP(t, addr, tc.client)
			if resp, _, err := c.ask(t); err != nil || resp.StatusCode != 200 {
				t.Errorf("a connection after the idle ones closed: %v %v", resp, err)
			}
		})
	}
}

package httpauthz_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/corsauthz/corsauthz/httpauthz"
)

// TestServersAgree sends the protocol table to the listener's server
// (Handler.Server) and to the same Handler in net/http (NewServer): every
// answer is the same, status, CORS headers and body, so that both read
// and write the protocol alike.
func TestServersAgree(t *testing.T) {
	t.Parallel()
	type pair struct{ wire, std string }
	servers := map[string]pair{}
	for _, tt := range protocolCases {
		if _, ok := servers[tt.prefix]; ok {
			continue
		}
		h, err := httpauthz.New(newCore(t, loadEngine(t), nil), httpauthz.Options{PathPrefix: tt.prefix})
		if err != nil {
			t.Fatal(err)
		}
		std := httptest.NewUnstartedServer(h)
		std.Config = httpauthz.NewServer(h, nil, nil)
		std.Start()
		t.Cleanup(std.Close)
		servers[tt.prefix] = pair{serve(t, h).Listener.Addr().String(), std.Listener.Addr().String()}
	}
	for _, tt := range protocolCases {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			raw := request(tt.method, tt.target, tt.headers...)
			wire, std := exchange(t, servers[tt.prefix].wire, raw), exchange(t, servers[tt.prefix].std, raw)
			if wire.status != std.status || wire.body != std.body || strings.Join(wire.headers, "\n") != strings.Join(std.headers, "\n") {
				t.Errorf("Server answers %d %q\n%s\nnet/http answers %d %q\n%s", wire.status, wire.body, strings.Join(wire.headers, "\n"),
					std.status, std.body, strings.Join(std.headers, "\n"))
			}
		})
	}
}

// TestFraming sends requests whose framing is ambiguous or refused (the
// ways a request is smuggled past a proxy) and requests with bodies: each
// is answered at once, refused or decided without its body being read,
// and the connection is closed after the answer, so that no byte after
// the header is ever read as another request.
func TestFraming(t *testing.T) {
	t.Parallel()
	ts, _ := startListener(t, httpauthz.Options{})
	addr := ts.Listener.Addr().String()
	const smuggled = "GET /v1/x HTTP/1.1\r\nHost: api.example.com\r\nOrigin: https://app.example.com\r\n\r\n"
	for _, tt := range []struct {
		desc    string
		headers string // after the request line and Host
		status  int
		body    string
	}{
		{"Content-Length and Transfer-Encoding", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", 200, ""},
		{"Content-Length twice", "Content-Length: 5\r\nContent-Length: 6\r\n", 400, "too many Content-Length headers"},
		{"Content-Length not a number", "Content-Length: 5x\r\n", 400, "400 Bad Request"},
		{"Content-Length negative", "Content-Length: -1\r\n", 400, "400 Bad Request"},
		{"Transfer-Encoding not chunked", "Transfer-Encoding: gzip\r\n", 501, "unsupported Transfer-Encoding"},
		{"Transfer-Encoding twice", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", 501, "unsupported Transfer-Encoding"},
		{"Host twice", "Host: other.example.com\r\n", 400, "too many Host headers"},
		{"a space before the colon", "Content-Length : 5\r\n", 400, "400 Bad Request"},
		{"Expect: 100-continue with a body", "Content-Length: 100\r\nExpect: 100-continue\r\n", 200, ""},
		{"a chunked body", "Transfer-Encoding: chunked\r\n", 200, ""},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			raw := "POST /v1/x HTTP/1.1\r\nHost: api.example.com\r\nOrigin: https://app.example.com\r\n" + tt.headers + "\r\n"
			// What a proxy reading the framing otherwise would take for
			// the body, or for the next request.
			raw += "0\r\n\r\n" + smuggled
			resp, body, after, took := closingExchange(t, addr, raw)
			if resp.StatusCode != tt.status || !strings.Contains(body, tt.body) {
				t.Errorf("answer = %d %q, want %d saying %q", resp.StatusCode, body, tt.status, tt.body)
			}
			if tt.status == 200 && resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
				t.Errorf("answer = %d %v, want the decision", resp.StatusCode, resp.Header)
			}
			if resp.StatusCode == http.StatusContinue {
				t.Errorf("100 Continue: the body was asked for")
			}
			if !resp.Close {
				t.Errorf("the connection stays open (no Connection: close)")
			}
			if !errors.Is(after, io.EOF) {
				t.Errorf("after the answer: %v, want the connection closed (nothing read as another request)", after)
			}
			if took > 2*time.Second {
				t.Errorf("answered after %v", took)
			}
		})
	}
}

// TestClientNeverReads pipelines checks on one connection and never
// reads an answer: once the answers fill the socket's buffers the
// listener's write waits, and after its write deadline
// (httpauthz.ReadTimeout from the end of the handler) the connection is
// closed, instead of being held for as long as the client likes.
func TestClientNeverReads(t *testing.T) {
	t.Parallel()
	ts, _ := startListener(t, httpauthz.Options{})
	conn, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	check := strings.Repeat("GET /check HTTP/1.1\r\nHost: corsauthz\r\nX-Original-Host: api.example.com\r\nX-Original-URI: /v1/x\r\nOrigin: https://app.example.com\r\n\r\n", 64)
	start := time.Now()
	var werr error
	for time.Since(start) < 4*httpauthz.ReadTimeout {
		// Short deadlines: a write that waits is tried again.
		_ = conn.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		_, werr = io.WriteString(conn, check)
		var netErr net.Error
		if werr != nil && !(errors.As(werr, &netErr) && netErr.Timeout()) {
			break
		}
	}
	elapsed := time.Since(start)
	var netErr net.Error
	if werr == nil || (errors.As(werr, &netErr) && netErr.Timeout()) {
		t.Fatalf("the connection is still open after %v of answers never read", elapsed)
	}
	if elapsed < httpauthz.ReadTimeout-time.Second {
		t.Errorf("connection closed after %v, want about %v after the client stopped reading", elapsed, httpauthz.ReadTimeout)
	}
	t.Logf("connection closed after %v: %v", elapsed, werr)
}

// FuzzServer sends arbitrary bytes to the listener's server, as a
// gateway's check request, over an in-memory connection: whatever the
// bytes, the server answers within a second with one of the statuses of
// docs/nginx.md (or closes the connection without an answer), every
// header on one line, a refusal's body one line of text. Seeded with the
// protocol table.
func FuzzServer(f *testing.F) {
	for _, tt := range protocolCases {
		f.Add(request(tt.method, tt.target, tt.headers...))
	}
	f.Add("GET / HTTP/1.0\r\n\r\n")
	f.Add("OPTIONS * HTTP/1.1\r\nHost: x\r\nX-Forwarded-Uri: /\r\n\r\n")
	f.Add("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc")
	f.Add("GET / HTTP/1.1\r\nHost: x\r\nFolded: a\r\n b\r\n\r\n")
	h, err := httpauthz.New(newCore(f, loadEngine(f), nil), httpauthz.Options{})
	if err != nil {
		f.Fatal(err)
	}
	l := fasthttputil.NewInmemoryListener()
	srv := h.Server(httpauthz.ServerOptions{})
	go func() { _ = srv.Serve(l) }()
	f.Cleanup(func() { _ = srv.Close() })
	f.Fuzz(func(t *testing.T, raw string) {
		conn, err := l.Dial()
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(time.Second))
		go func() { _, _ = io.WriteString(conn, raw) }()
		var head *http.Request // a HEAD's answer has no body
		if strings.HasPrefix(raw, "HEAD ") {
			head = &http.Request{Method: http.MethodHead}
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), head)
		if err != nil {
			var netErr net.Error
			if (errors.As(err, &netErr) && netErr.Timeout()) || errors.Is(err, fasthttputil.ErrTimeout) {
				return // an unfinished request: waited for, up to ReadHeaderTimeout
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return // closed without an answer
			}
			t.Fatalf("read answer: %v", err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		switch resp.StatusCode {
		case 200, 204, 403:
			if len(body) != 0 {
				t.Errorf("%d with a body %q", resp.StatusCode, body)
			}
		case 400, 431, 501, 503:
			if head != nil {
				break
			}
			if !strings.HasSuffix(string(body), "\n") || strings.Count(string(body), "\n") != 1 || len(body) > 1024 {
				t.Errorf("%d with body %q, want one short line", resp.StatusCode, body)
			}
		default:
			t.Errorf("status %d", resp.StatusCode)
		}
		for name, vs := range resp.Header {
			if len(vs) != 1 {
				t.Errorf("%s on %d lines", name, len(vs))
			}
		}
	})
}

package httpauthz_test

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corsauthz/corsauthz/decision"
	th "github.com/corsauthz/corsauthz/internal/testharness"

	"github.com/corsauthz/corsauthz/httpauthz"
	"github.com/corsauthz/corsauthz/policy"
)

// testConfig has one policy of each sort the answers must tell apart;
// "v1" is selected by path, "public" only by name.
const testConfig = `
policies:
  - name: api
    match:
      hosts: [api.example.com]
    allowed_origins: [https://app.example.com, "https://*.preview.example.com"]
    allowed_methods: [GET, POST, PUT, DELETE]
    allowed_headers: [Content-Type, Authorization]
    exposed_headers: [X-Request-Id, X-Total]
    allow_credentials: true
    max_age_seconds: 600
    allow_private_network: true
  - name: v1
    match:
      hosts: [paths.example.com]
      path_prefixes: [/v1/]
    allowed_origins: [https://v1.example.com]
  - name: strict
    match:
      hosts: [strict.example.com]
    allowed_origins: [https://app.example.com]
    reject_disallowed_origins: true
  - name: shadow
    match:
      hosts: [shadow.example.com]
    allowed_origins: [https://app.example.com]
    reject_disallowed_origins: true
    report_only: true
  - name: public
    allowed_origins: ["*"]
    allowed_methods: [GET]
`

// newCore is a decision core on engine e that logs to logs (nil: nowhere).
func newCore(tb testing.TB, e *policy.Engine, logs *th.LogBuffer) *decision.Core {
	tb.Helper()
	var logger *slog.Logger
	if logs != nil {
		logger = logs.Logger(slog.LevelDebug)
	}
	return th.NewCore(tb, policy.NewHolder(e), logger)
}

func loadEngine(tb testing.TB) *policy.Engine {
	tb.Helper()
	e, _, err := policy.Load("test.yaml", []byte(testConfig))
	if err != nil {
		tb.Fatalf("policy.Load: %v", err)
	}
	return e
}

// startListener serves a Handler with opts on a loopback port, with the
// listener's own server (Handler.Server), until the test ends.
// Its core logs to the LogBuffer returned.
func startListener(tb testing.TB, opts httpauthz.Options) (*testServer, *th.LogBuffer) {
	tb.Helper()
	logs := &th.LogBuffer{}
	h, err := httpauthz.New(newCore(tb, loadEngine(tb), logs), opts)
	if err != nil {
		tb.Fatal(err)
	}
	return serve(tb, h), logs
}

// testServer is a Handler served on a loopback port.
type testServer struct {
	Listener net.Listener
}

// serve serves h with its Server on a loopback port until the test ends.
func serve(tb testing.TB, h *httpauthz.Handler) *testServer {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := h.Server(httpauthz.ServerOptions{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	tb.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return &testServer{Listener: l}
}

// rawAnswer is what a gateway reads of an answer.
type rawAnswer struct {
	status  int
	headers []string // "Name: value", one per line as received, sorted, CORS and Vary only
	lines   map[string]int
	body    string
}

// corsHeader reports whether name is one the answer's CORS part is made of.
func corsHeader(name string) bool {
	return strings.HasPrefix(name, "Access-Control-") || name == "Vary"
}

// exchange sends raw (a whole HTTP/1.1 request, CRLF line ends) on a new
// connection and reads the answer, with a deadline.
func exchange(tb testing.TB, addr, raw string) rawAnswer {
	tb.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		tb.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		tb.Fatalf("read answer: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("read answer body: %v", err)
	}
	a := rawAnswer{status: resp.StatusCode, body: string(body), lines: map[string]int{}}
	for name, vs := range resp.Header {
		a.lines[name] = len(vs)
		if corsHeader(name) {
			for _, v := range vs {
				a.headers = append(a.headers, name+": "+v)
			}
		}
	}
	slices.Sort(a.headers)
	return a
}

// closingExchange sends raw on a new connection and reads the answer and
// then one byte more: the answer (its body read), the error of that read
// (io.EOF when the listener closed the connection after the answer,
// reading nothing of what followed as another request), and how long the
// answer and the close took.
func closingExchange(tb testing.TB, addr, raw string) (resp *http.Response, body string, after error, took time.Duration) {
	tb.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := io.WriteString(conn, raw); err != nil {
		tb.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		tb.Fatalf("read answer: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if c, err := br.ReadByte(); err == nil {
		after = fmt.Errorf("read %q", c)
	} else {
		after = err
	}
	return resp, string(b), after, time.Since(start)
}

// request builds a raw HTTP/1.1 request line and headers ("Name: value"
// each), closing the connection after it.
func request(method, target string, headers ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\n", method, target)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("Connection: close\r\n\r\n")
	return b.String()
}

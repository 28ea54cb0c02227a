package main_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corsauthz/corsauthz/deploy"
	"github.com/corsauthz/corsauthz/internal/childproc"
	"github.com/corsauthz/corsauthz/internal/docs"
	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/server"
)

// TestExample builds and runs the example against a real corsauthz on the
// built-in example configuration, asks it as a browser would, and checks
// that docs/go-and-caddy.md shows its func main as it is and the README
// lines of it.
func TestExample(t *testing.T) {
	e, _, err := policy.Load(deploy.ExampleConfigName, deploy.ExampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(policy.NewHolder(e), server.Options{GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Error(err)
		}
	})

	bin := filepath.Join(t.TempDir(), "middleware")
	if out, err := childproc.CombinedOutput(t, exec.Command("go", "build", "-o", bin, ".")); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, srv.GRPCAddr().String(), listen)
	cmd.Stdout, cmd.Stderr = t.Output(), t.Output()
	if err := childproc.Start(t, cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	do := func(method, origin string, headers ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+listen+"/v1/orders", nil)
		req.Host = "api.example.com"
		req.Header.Set("Origin", origin)
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", listen)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the example never listened on %s: %v", listen, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, _ := do("OPTIONS", "https://app.example.com", "Access-Control-Request-Method", "PUT")
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Methods") != "PUT" {
		t.Errorf("preflight: %d %v, want 204 allowing PUT", resp.StatusCode, resp.Header)
	}
	resp, body := do("GET", "https://app.example.com")
	if resp.StatusCode != http.StatusOK || body != "api GET /v1/orders\n" || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Errorf("actual request: %d %v %q", resp.StatusCode, resp.Header, body)
	}

	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	shown := docs.Example(t, "middleware")
	if body := string(src)[strings.Index(string(src), "func main()"):]; !strings.Contains(shown.Text, body) {
		t.Errorf("%s does not show examples/middleware/main.go's func main as it is; copy it again", shown)
	}
	// The README's excerpt: lines of main.go, in order.
	excerpt := docs.Example(t, "middleware-excerpt")
	rest := string(src)
	for _, line := range strings.Split(strings.TrimSpace(excerpt.Text), "\n") {
		i := strings.Index(rest, "\t"+strings.TrimSpace(line)+"\n")
		if i < 0 {
			t.Errorf("%s: %q is not a line of examples/middleware/main.go (after the excerpt's previous lines)", excerpt, line)
			break
		}
		rest = rest[i+1:]
	}
}

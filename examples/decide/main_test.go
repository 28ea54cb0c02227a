package main_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/corsauthz/corsauthz/deploy"
	"github.com/corsauthz/corsauthz/internal/childproc"
	"github.com/corsauthz/corsauthz/internal/docs"
	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/server"
)

// TestExample runs the client example against a real server on the built-in
// example configuration, and checks that docs/decision-api.md shows it and
// its output verbatim.
func TestExample(t *testing.T) {
	e, _, err := policy.Load("example.yaml", deploy.ExampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(policy.NewHolder(e), server.Options{GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	out, err := childproc.CombinedOutput(t, exec.Command("go", "run", ".", srv.GRPCAddr().String()))
	if err != nil {
		t.Fatalf("go run: %v\n%s", err, out)
	}
	want := `DECISION_KIND_PREFLIGHT_ALLOWED ACTION_RESPOND 204
Access-Control-Allow-Origin: https://app.example.com
Access-Control-Allow-Methods: PUT
Access-Control-Allow-Credentials: true
Access-Control-Max-Age: 600
Vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers
`
	if string(out) != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}

	if shown := docs.Example(t, "decide-output"); shown.Text != want {
		t.Errorf("%s shows the output\n%s\nwant:\n%s", shown, shown.Text, want)
	}

	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	body := string(src)[strings.Index(string(src), "func main()"):]
	if shown := docs.Example(t, "decide"); !strings.Contains(shown.Text, body) {
		t.Errorf("%s does not show examples/decide/main.go's func main as it is; copy it again", shown)
	}
}

package docs_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/corsauthz/corsauthz/deploy"
	"github.com/corsauthz/corsauthz/internal/cli"
	"github.com/corsauthz/corsauthz/internal/docs"
	"github.com/corsauthz/corsauthz/internal/freeport"
	"github.com/corsauthz/corsauthz/policy"
	corsauthzv1 "github.com/corsauthz/corsauthz/proto/gen/corsauthz/v1"
	"github.com/corsauthz/corsauthz/server"
)

// runByTests are the examples the tests run, and where: every example
// marker in README.md and docs/ must be one of them, and each of them must
// be marked once (docs.Example fails otherwise).
var runByTests = map[string]string{
	"explain-why":         "TestExplainExamples",
	"group-config":        "TestExplainExamples",
	"group":               "TestExplainExamples",
	"validate-bad-config": "TestValidateExample",
	"validate-bad":        "TestValidateExample",
	"healthz":             "TestHealthzExample",
	"grpcurl-check":       "TestGRPCurlExamples",
	"grpcurl-decide":      "TestGRPCurlExamples",
	"decide":              "examples/decide TestExample",
	"decide-output":       "examples/decide TestExample",
	"middleware":          "examples/middleware TestExample",
	"middleware-excerpt":  "examples/middleware TestExample",
	"caddyfile":           "integrations/caddy TestExampleCaddyfile",
}

// TestConsoleBlocksAreMarked: every block showing a command and its
// output (console) is an example a test runs or says why it is not; every
// example marker names an example a test runs, once.
func TestConsoleBlocksAreMarked(t *testing.T) {
	t.Parallel()
	seen := map[string]docs.Block{}
	for _, b := range docs.All(t) {
		if b.Info == "console" && b.Marker == "" && b.NotRun == "" {
			t.Errorf("%s: a console block with no <!-- example: NAME --> nor <!-- not run: REASON --> before it", b)
		}
		if b.Marker == "" {
			continue
		}
		if _, ok := runByTests[b.Marker]; !ok {
			t.Errorf("%s: example %q is run by no test (add it to runByTests with the test that runs it)", b, b.Marker)
		}
		if prev, ok := seen[b.Marker]; ok {
			t.Errorf("%s: example %q is marked at %s too", b, b.Marker, prev)
		}
		seen[b.Marker] = b
	}
	for name, test := range runByTests {
		if _, ok := seen[name]; !ok {
			t.Errorf("%s runs example %q, which no block is marked as", test, name)
		}
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	md := "# t\n\n<!-- example: one -->\n```console\n$ a 'b\nc' \\\n  d\nout\n```\n\ntext\n<!-- not run: needs X -->\n\n````sh\n```\n````\n"
	blocks, err := docs.Parse("t.md", []byte(md))
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 2 || blocks[0].Marker != "one" || blocks[0].Info != "console" || blocks[0].Line != 4 ||
		blocks[1].NotRun != "needs X" || blocks[1].Info != "sh" || blocks[1].Text != "```\n" {
		t.Fatalf("Parse = %+v", blocks)
	}
	cmd, out, err := blocks[0].Command()
	if err != nil || cmd != "a 'b\nc'    d" || out != "out\n" {
		t.Errorf("Command() = %q, %q, %v", cmd, out, err)
	}
	words, err := docs.Fields(cmd)
	if err != nil || !slices.Equal(words, []string{"a", "b\nc", "d"}) {
		t.Errorf("Fields(%q) = %q, %v", cmd, words, err)
	}
	for _, bad := range []string{"<!-- example: x -->\ntext\n", "```sh\nnever closed\n", "<!-- not run: y -->\n"} {
		if _, err := docs.Parse("t.md", []byte(bad)); err == nil {
			t.Errorf("Parse(%q): no error", bad)
		}
	}
}

// run runs the corsauthz command line in process.
func run(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = cli.Main(context.Background(), args, cli.IO{Stdout: &out, Stderr: &errOut, Env: func(string) (string, bool) { return "", false }})
	return code, out.String(), errOut.String()
}

// corsauthzArgs returns the arguments of a corsauthz command shown as
// "corsauthz ..." or "go run ./cmd/corsauthz ...".
func corsauthzArgs(t *testing.T, b docs.Block) (args []string, output string) {
	t.Helper()
	cmd, output, err := b.Command()
	if err != nil {
		t.Fatal(err)
	}
	words, err := docs.Fields(cmd)
	if err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	switch {
	case len(words) > 0 && words[0] == "corsauthz":
		return words[1:], output
	case len(words) > 3 && slices.Equal(words[:3], []string{"go", "run", "./cmd/corsauthz"}):
		return words[3:], output
	}
	t.Fatalf("%s: %q is not a corsauthz command", b, cmd)
	return nil, ""
}

// writeConfig writes a configuration block to dir/name.
func writeConfig(t *testing.T, dir, name string, b docs.Block) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(b.Text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// withFile replaces the argument name with its path in dir.
func withFile(args []string, dir, name string) []string {
	out := slices.Clone(args)
	for i, a := range out {
		if a == name {
			out[i] = filepath.Join(dir, name)
		}
	}
	return out
}

// TestExplainExamples: the explain commands shown print what is shown.
func TestExplainExamples(t *testing.T) {
	t.Parallel()
	groups := docs.Example(t, "group-config")
	want, err := os.ReadFile("../cli/testdata/groups.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if groups.Text != string(want) {
		t.Errorf("%s differs from internal/cli/testdata/groups.yaml, which the explain tests use:\n%s", groups, groups.Text)
	}
	dir := t.TempDir()
	writeConfig(t, dir, "groups.yaml", groups)
	for _, name := range []string{"explain-why", "group"} {
		t.Run(name, func(t *testing.T) {
			b := docs.Example(t, name)
			args, output := corsauthzArgs(t, b)
			code, stdout, stderr := run(withFile(args, dir, "groups.yaml")...)
			if code != 0 || stdout != output {
				t.Errorf("%s: exit %d, printed:\n%s\nstderr:\n%s\nthe docs show:\n%s", b, code, stdout, stderr, output)
			}
		})
	}
}

// TestValidateExample: validate on the bad configuration shown prints
// every problem shown, and exits 1.
func TestValidateExample(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeConfig(t, dir, "bad.yaml", docs.Example(t, "validate-bad-config"))
	b := docs.Example(t, "validate-bad")
	args, output := corsauthzArgs(t, b)
	code, stdout, stderr := run(withFile(args, dir, "bad.yaml")...)
	stderr = strings.ReplaceAll(stderr, filepath.Join(dir, "bad.yaml"), "bad.yaml")
	if code != 1 || stdout != "" || stderr != output {
		t.Errorf("%s: exit %d, stdout %q, stderr:\n%s\nthe docs show:\n%s", b, code, stdout, stderr, output)
	}
}

// TestHealthzExample: serve, as the README starts it (on free ports
// instead of the defaults), answers the health check shown.
func TestHealthzExample(t *testing.T) {
	t.Parallel()
	b := docs.Example(t, "healthz")
	cmd, output, err := b.Command()
	if err != nil {
		t.Fatal(err)
	}
	words, err := docs.Fields(cmd)
	if err != nil || len(words) != 3 || words[0] != "curl" || words[1] != "-s" {
		t.Fatalf("%s: %q is not curl -s URL", b, cmd)
	}
	u, err := url.Parse(words[2])
	if err != nil || u.Host != "127.0.0.1:9002" {
		t.Fatalf("%s: %q is not the default admin address", b, words[2])
	}
	admin := freeport.Addr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		var out, errOut bytes.Buffer
		done <- cli.Main(ctx, []string{"serve", "--grpc-addr", freeport.Addr(t), "--admin-addr", admin, "--http-addr", freeport.Addr(t)},
			cli.IO{Stdout: &out, Stderr: &errOut, Env: func(string) (string, bool) { return "", false }})
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exited %d", code)
		}
	}()
	u.Host = admin
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(u.String())
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != output {
				t.Errorf("%s: %s answered %q, the docs show %q", b, u.Path, body, output)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve not answering on %s: %v", admin, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestGRPCurlExamples: the grpcurl requests shown, sent to a real server
// on the built-in example with a Go client, are answered what is shown
// (compared as protobuf messages, as grpcurl prints them in JSON).
func TestGRPCurlExamples(t *testing.T) {
	t.Parallel()
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
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Error(err)
		}
	}()
	conn, err := grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	for _, tt := range []struct {
		name, method string
		req, want    proto.Message
		call         func(context.Context, proto.Message) (proto.Message, error)
	}{
		{
			name: "grpcurl-check", method: "envoy.service.auth.v3.Authorization/Check",
			req: &authv3.CheckRequest{}, want: &authv3.CheckResponse{},
			call: func(ctx context.Context, m proto.Message) (proto.Message, error) {
				return authv3.NewAuthorizationClient(conn).Check(ctx, m.(*authv3.CheckRequest))
			},
		},
		{
			name: "grpcurl-decide", method: "corsauthz.v1.DecisionService/Decide",
			req: &corsauthzv1.DecideRequest{}, want: &corsauthzv1.DecideResponse{},
			call: func(ctx context.Context, m proto.Message) (proto.Message, error) {
				return corsauthzv1.NewDecisionServiceClient(conn).Decide(ctx, m.(*corsauthzv1.DecideRequest))
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := docs.Example(t, tt.name)
			cmd, output, err := b.Command()
			if err != nil {
				t.Fatal(err)
			}
			words, err := docs.Fields(cmd)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"grpcurl", "-plaintext", "-d", "", "127.0.0.1:9001", tt.method}
			if len(words) != len(want) || !slices.Equal(words[:3], want[:3]) || !slices.Equal(words[4:], want[4:]) {
				t.Fatalf("%s: %q, want grpcurl -plaintext -d JSON 127.0.0.1:9001 %s", b, words, tt.method)
			}
			if err := protojson.Unmarshal([]byte(words[3]), tt.req); err != nil {
				t.Fatalf("%s: the request: %v", b, err)
			}
			if err := protojson.Unmarshal([]byte(output), tt.want); err != nil {
				t.Fatalf("%s: the answer shown: %v", b, err)
			}
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			got, err := tt.call(cctx, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tt.want) {
				t.Errorf("%s: the answer is\n%s\nthe docs show\n%s", b, protojson.Format(got), output)
			}
		})
	}
}

// linkRE finds Markdown links [text](target).
var linkRE = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestLinks: every relative link of README.md and docs/ names a file or
// directory that exists and, with #anchor, a heading of that file (as
// GitHub writes heading anchors).
func TestLinks(t *testing.T) {
	t.Parallel()
	root, err := docs.Root(".")
	if err != nil {
		t.Fatal(err)
	}
	files, err := docs.Files(root)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]map[string]bool{}
	headingsOf := func(path string) map[string]bool {
		if a, ok := anchors[path]; ok {
			return a
		}
		a := map[string]bool{}
		data, _ := os.ReadFile(path)
		fence := false
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "```") {
				fence = !fence
			}
			if !fence && strings.HasPrefix(line, "#") {
				a[docs.Anchor(strings.TrimLeft(line, "# "))] = true
			}
		}
		anchors[path] = a
		return a
	}
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		for _, m := range linkRE.FindAllStringSubmatch(text, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(target, "#")
			full := filepath.Join(root, f)
			if path != "" {
				full = filepath.Join(filepath.Dir(full), path)
				if _, err := os.Stat(full); err != nil {
					t.Errorf("%s: link %q: %v", f, target, err)
					continue
				}
			}
			if anchor != "" && !headingsOf(full)[anchor] {
				t.Errorf("%s: link %q: no heading with that anchor", f, target)
			}
		}
	}
}

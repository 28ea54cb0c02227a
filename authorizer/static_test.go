package authorizer_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/metadata"

	"github.com/corsauthz/corsauthz/authorizer"
	"github.com/corsauthz/corsauthz/policy"
)

// TestStaticHeaders: an authorizer's static headers reach a real HTTP
// authorizer as request headers and a real gRPC one as metadata, their
// values read from the environment or a file where the call is made; a
// value that cannot be had fails the call, which never goes out without
// it, and no error carries a value.
func TestStaticHeaders(t *testing.T) { // not parallel: t.Setenv
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("CORSAUTHZ_TEST_KEY", "env-secret-1")
	t.Setenv("CORSAUTHZ_TEST_EMPTY", "")
	t.Setenv("CORSAUTHZ_TEST_CRLF", "a\r\nX-Injected: 1")
	keyFile := file("key", "file-secret-2\n")
	emptyFile := file("empty", "\n")
	fromEnv := func(name, env string) policy.StaticHeader {
		return policy.StaticHeader{Name: name, ValueFrom: policy.ValueSource{Env: env}}
	}
	fromFile := func(name, path string) policy.StaticHeader {
		return policy.StaticHeader{Name: name, ValueFrom: policy.ValueSource{File: path}}
	}
	tests := []struct {
		desc    string
		headers []policy.StaticHeader
		want    map[string]string // sent; nil: the call fails and nothing is sent
		err     string
	}{
		{desc: "env and file", headers: []policy.StaticHeader{fromEnv("x-api-key", "CORSAUTHZ_TEST_KEY"), fromFile("x-other", keyFile)},
			want: map[string]string{"x-api-key": "env-secret-1", "x-other": "file-secret-2"}},
		{desc: "variable not set", headers: []policy.StaticHeader{fromEnv("x-api-key", "CORSAUTHZ_TEST_UNSET")}, err: "environment variable CORSAUTHZ_TEST_UNSET is not set"},
		{desc: "variable empty", headers: []policy.StaticHeader{fromEnv("x-api-key", "CORSAUTHZ_TEST_EMPTY")}, err: "environment variable CORSAUTHZ_TEST_EMPTY is empty"},
		{desc: "variable with CR LF", headers: []policy.StaticHeader{fromEnv("x-api-key", "CORSAUTHZ_TEST_CRLF")}, err: "holds a control character"},
		{desc: "file missing", headers: []policy.StaticHeader{fromEnv("x-api-key", "CORSAUTHZ_TEST_KEY"), fromFile("x-other", filepath.Join(dir, "missing"))}, err: "no such file or directory"},
		{desc: "file empty but for a newline", headers: []policy.StaticHeader{fromFile("x-other", emptyFile)}, err: "is empty"},
		{desc: "a directory", headers: []policy.StaticHeader{fromFile("x-other", dir)}, err: "is not a regular file"},
	}
	for _, kind := range []string{"http", "grpc"} {
		for _, tc := range tests {
			t.Run(kind+"/"+tc.desc, func(t *testing.T) {
				var mu sync.Mutex // the handler runs on the server's goroutine
				got := map[string]string{}
				calls := 0
				var cfg policy.Authorizer
				if kind == "http" {
					s, _ := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
						mu.Lock()
						defer mu.Unlock()
						calls++
						for _, h := range tc.headers {
							got[h.Name] = r.Header.Get(h.Name)
						}
					})
					cfg = httpAuthorizer(s.URL, 2*time.Second)
				} else {
					addr, _ := startGRPC(t, func(ctx context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
						mu.Lock()
						defer mu.Unlock()
						calls++
						md, _ := metadata.FromIncomingContext(ctx)
						for _, h := range tc.headers {
							got[h.Name] = strings.Join(md.Get(h.Name), ",")
						}
						return &authv3.CheckResponse{}, nil
					})
					cfg = grpcAuthorizer(addr, 2*time.Second)
				}
				cfg.StaticHeaders = tc.headers
				c := newClient(t, cfg)
				a := c.Ask(context.Background(), &authorizer.Request{Check: checkRequest("GET", "creds.example.com", "/v1/x", nil)})
				mu.Lock()
				defer mu.Unlock()
				if tc.want == nil {
					if a.Result != authorizer.Error || calls != 0 || !strings.Contains(a.Err.Error(), tc.err) {
						t.Fatalf("result %v, %d calls, error %v; want an Error saying %q, no call", a.Result, calls, a.Err, tc.err)
					}
					if strings.Contains(a.Err.Error(), "X-Injected") {
						t.Errorf("the error carries the value: %v", a.Err)
					}
					return
				}
				if a.Result != authorizer.Allow || calls != 1 {
					t.Fatalf("result %v (%v), %d calls", a.Result, a.Err, calls)
				}
				for k, v := range tc.want {
					if got[k] != v {
						t.Errorf("%s = %q, want %q", k, got[k], v)
					}
				}
			})
		}
	}
}

// TestStaticHeaderFileRotation: a file replaced as Kubernetes replaces a
// mounted Secret (a symlink swapped) is read again within a second, with
// no reload.
func TestStaticHeaderFileRotation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for i, v := range []string{"v1", "v2"} {
		if err := os.WriteFile(filepath.Join(dir, "data"+string(rune('1'+i))), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(dir, "key")
	if err := os.Symlink(filepath.Join(dir, "data1"), link); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	last := func() string { mu.Lock(); defer mu.Unlock(); return seen[len(seen)-1] }
	s, _ := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, r.Header.Get("X-Key"))
	})
	cfg := httpAuthorizer(s.URL, 2*time.Second)
	cfg.StaticHeaders = []policy.StaticHeader{{Name: "x-key", ValueFrom: policy.ValueSource{File: link}}}
	c := newClient(t, cfg)
	ask := func() {
		t.Helper()
		if a := c.Ask(context.Background(), &authorizer.Request{Method: "GET", Host: "h", Path: "/"}); a.Result != authorizer.Allow {
			t.Fatalf("result %v (%v)", a.Result, a.Err)
		}
	}
	ask()
	tmp := filepath.Join(dir, "key.tmp")
	if err := os.Symlink(filepath.Join(dir, "data2"), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for last() != "v2" && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		ask()
	}
	mu.Lock()
	defer mu.Unlock()
	if seen[0] != "v1" || seen[len(seen)-1] != "v2" {
		t.Errorf("values sent: %v; want v1 then v2", seen)
	}
	t.Logf("calls before the new value was sent: %d", len(seen)-1)
}

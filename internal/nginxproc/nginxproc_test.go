package nginxproc_test

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/corsauthz/corsauthz/internal/childproc"
	"github.com/corsauthz/corsauthz/internal/freeport"
	"github.com/corsauthz/corsauthz/internal/nginxproc"
)

func needNginx(t *testing.T) string {
	t.Helper()
	bin := nginxproc.Path()
	if bin == "" {
		if os.Getenv(nginxproc.Env) == "require" {
			t.Fatalf("no nginx found; %s=require makes this a failure", nginxproc.Env)
		}
		t.Skipf("no nginx found (apt-get install nginx-light); set %s=require to make this a failure", nginxproc.Env)
	}
	return bin
}

// TestStartStop runs NGINX in its own directory, asks it once, stops it,
// and checks that it left nothing behind listening and wrote only there.
func TestStartStop(t *testing.T) {
	t.Parallel()
	dir, err := nginxproc.NewDir(needNginx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Remove()
	addr := freeport.Addr(t)
	conf, err := dir.WriteFile("nginx.conf", "worker_processes 1;\n"+dir.MainLines()+
		"events {}\nhttp {\n"+dir.HTTPLines()+"server { listen "+addr+"; location / { return 200 \"hello\\n\"; } }\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := dir.Test(t.Context(), conf); err != nil || !strings.Contains(out, "test is successful") {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	p, err := dir.Start(conf, addr)
	if err != nil {
		t.Fatal(err)
	}
	childproc.Watch(t, p.Pid())
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		p.Stop()
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello\n" {
		t.Errorf("nginx answered %q", body)
	}
	if err := p.Stop(); err != nil {
		t.Error(err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after Stop", addr)
	}
	for _, name := range []string{"nginx.pid", "error.log", "access.log", "proxy_temp"} {
		if _, err := os.Stat(dir.Path + "/" + name); name != "nginx.pid" && err != nil {
			t.Errorf("%s was not written in the directory: %v", name, err)
		}
	}
}

// TestBadConfig checks that an invalid configuration is reported by Test
// and by Start, with NGINX's message.
func TestBadConfig(t *testing.T) {
	t.Parallel()
	dir, err := nginxproc.NewDir(needNginx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Remove()
	conf, err := dir.WriteFile("nginx.conf", dir.MainLines()+"events {}\nhttp { no_such_directive on; }\n")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dir.Test(t.Context(), conf); err == nil || !strings.Contains(err.Error(), "no_such_directive") {
		t.Errorf("Test: %v, want NGINX's message", err)
	}
	if p, err := dir.Start(conf, freeport.Addr(t)); err == nil {
		p.Stop()
		t.Error("Start accepted an invalid configuration")
	}
}

// TestWriteFile checks where WriteFile writes, and that it refuses a name
// that would leave the directory.
func TestWriteFile(t *testing.T) {
	t.Parallel()
	dir, err := nginxproc.NewDir("/nonexistent/nginx")
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Remove()
	for _, tt := range []struct {
		desc, name string
		want       string // the path written, relative to the directory; "" for an error
	}{
		{desc: "a file at the top", name: "nginx.conf", want: "nginx.conf"},
		{desc: "a file in directories made for it", name: "etc/nginx/conf.d/a.conf", want: "etc/nginx/conf.d/a.conf"},
		{desc: "a parent reference", name: "../escape.conf"},
		{desc: "a parent reference inside", name: "snippets/../../escape.conf"},
		{desc: "an absolute path", name: "/tmp/escape.conf"},
		{desc: "empty", name: ""},
	} {
		p, err := dir.WriteFile(tt.name, "x")
		if tt.want == "" {
			if err == nil {
				t.Errorf("%s: WriteFile(%q) wrote %s, want an error", tt.desc, tt.name, p)
			}
			continue
		}
		if err != nil || p != filepath.Join(dir.Path, tt.want) {
			t.Errorf("%s: WriteFile(%q) = %q, %v; want %q", tt.desc, tt.name, p, err, tt.want)
			continue
		}
		if data, err := os.ReadFile(p); err != nil || string(data) != "x" {
			t.Errorf("%s: read back %q, %v", tt.desc, data, err)
		}
	}
}

// TestInstallSnippets copies the repository's snippets, and refuses a
// directory without any.
func TestInstallSnippets(t *testing.T) {
	t.Parallel()
	dir, err := nginxproc.NewDir("/nonexistent/nginx")
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Remove()
	src := filepath.Join("..", "..", filepath.FromSlash(nginxproc.SnippetsDir))
	names, err := dir.InstallSnippets(src)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(names, "corsauthz-location.conf") || !slices.Contains(names, "corsauthz-authorizer-location.conf") {
		t.Errorf("installed %v, want the shipped snippets", names)
	}
	for _, name := range names {
		want, _ := os.ReadFile(filepath.Join(src, name))
		got, err := os.ReadFile(filepath.Join(dir.Path, "snippets", name))
		if err != nil || string(got) != string(want) {
			t.Errorf("snippets/%s differs from %s (%v)", name, src, err)
		}
	}
	if names, err := dir.InstallSnippets(t.TempDir()); err == nil {
		t.Errorf("InstallSnippets of an empty directory: %v, want an error", names)
	}
}

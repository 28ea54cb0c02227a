package nginxproc_test

import (
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/corsauthz/corsauthz/internal/childproc"
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

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
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
	addr := freeAddr(t)
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
	if p, err := dir.Start(conf, freeAddr(t)); err == nil {
		p.Stop()
		t.Error("Start accepted an invalid configuration")
	}
}

// Package nginxproc runs the NGINX binary of the machine (Debian's
// nginx-light) for tests and load runs: in a temporary prefix of its own,
// in the foreground, on the ports its configuration names, never touching
// /etc/nginx, /var/lib/nginx or /run. Callers write the configuration;
// this package gives the lines that keep NGINX inside its directory, and
// starts, checks and stops it.
package nginxproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/corsauthz/corsauthz/internal/childproc"
)

// Env is the environment variable that makes a missing NGINX a failure
// instead of a skip: CI sets CORSAUTHZ_E2E_NGINX=require after installing
// nginx-light.
const Env = "CORSAUTHZ_E2E_NGINX"

// Candidates are where NGINX is looked for, in order, after PATH.
var Candidates = []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"}

// Path returns the NGINX binary, or "" when there is none.
func Path() string {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	for _, p := range Candidates {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// Dir is a temporary NGINX prefix. Its zero value is not usable: use
// NewDir.
type Dir struct {
	Path string // the directory: configuration, pid file, logs and temp files
	bin  string
}

// NewDir makes a temporary prefix for the NGINX at bin. Remove it with
// Remove once NGINX has stopped.
func NewDir(bin string) (*Dir, error) {
	dir, err := os.MkdirTemp("", "corsauthz-nginx-")
	if err != nil {
		return nil, err
	}
	// NGINX's workers run as an unprivileged user when the master is root:
	// they must reach the temp paths.
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &Dir{Path: dir, bin: bin}, nil
}

// Remove deletes the directory.
func (d *Dir) Remove() error { return os.RemoveAll(d.Path) }

// MainLines are the main-context directives that keep NGINX's pid file
// and error log in the directory.
func (d *Dir) MainLines() string {
	return fmt.Sprintf("pid %s;\nerror_log %s info;\n",
		filepath.Join(d.Path, "nginx.pid"), d.ErrorLog())
}

// HTTPLines are the http-context directives that keep NGINX's access log
// and temp files in the directory.
func (d *Dir) HTTPLines() string {
	var b strings.Builder
	fmt.Fprintf(&b, "access_log %s;\n", filepath.Join(d.Path, "access.log"))
	for _, t := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(&b, "%s_temp_path %s;\n", t, filepath.Join(d.Path, t+"_temp"))
	}
	return b.String()
}

// ErrorLog is the path of the error log.
func (d *Dir) ErrorLog() string { return filepath.Join(d.Path, "error.log") }

// WriteFile writes a configuration file (or one it includes) into the
// directory and returns its path. name is slash-separated and relative;
// the directories it names are made (readable by NGINX's workers).
func (d *Dir) WriteFile(name, content string) (string, error) {
	if !filepath.IsLocal(filepath.FromSlash(name)) {
		return "", fmt.Errorf("nginxproc: %q is not a relative path inside the directory", name)
	}
	p := filepath.Join(d.Path, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", err
	}
	return p, os.WriteFile(p, []byte(content), 0o644)
}

// SnippetsDir is where the shipped NGINX snippets are, relative to the
// repository's root.
const SnippetsDir = "deploy/nginx/snippets"

// InstallSnippets copies every .conf file of src (the repository's
// SnippetsDir) into the directory's snippets/, as Debian's
// /etc/nginx/snippets/: the shipped files include each other as
// "snippets/corsauthz-….conf", which NGINX reads relative to the
// directory of the main configuration file, so that file must be written
// at the top of the directory. It returns the names copied, and an error
// when there are none.
func (d *Dir) InstallSnippets(src string) ([]string, error) {
	paths, err := filepath.Glob(filepath.Join(src, "*.conf"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("nginxproc: no .conf file in %s", src)
	}
	names := make([]string, 0, len(paths))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		name := filepath.Base(p)
		if _, err := d.WriteFile("snippets/"+name, string(data)); err != nil {
			return nil, err
		}
		names = append(names, name)
	}
	return names, nil
}

func (d *Dir) args(conf string, extra ...string) []string {
	return append([]string{"-p", d.Path + "/", "-c", conf, "-e", d.ErrorLog()}, extra...)
}

// Test runs `nginx -t` on conf and returns its output, with an error when
// NGINX finds the configuration invalid.
func (d *Dir) Test(ctx context.Context, conf string) (string, error) {
	cmd := exec.CommandContext(ctx, d.bin, d.args(conf, "-t")...)
	childproc.Prepare(cmd)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("nginx -t: %w\n%s", err, out)
	}
	return string(out), nil
}

// Process is a running NGINX.
type Process struct {
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
	output *bytes.Buffer
}

// Start runs NGINX in the foreground on conf and waits until every
// address in wait accepts connections (at most 10 s).
func (d *Dir) Start(conf string, wait ...string) (*Process, error) {
	cmd := exec.Command(d.bin, d.args(conf, "-g", "daemon off;")...)
	// A group of its own, so that a master that must be killed takes its
	// workers with it, and killed if this process dies (a test calls
	// childproc.Watch with Pid for the workers, which outlive a killed
	// master).
	childproc.Prepare(cmd)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{cmd: cmd, done: make(chan struct{}), output: &out}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for _, addr := range wait {
		for {
			select {
			case <-p.done:
				log, _ := os.ReadFile(d.ErrorLog())
				return nil, fmt.Errorf("nginx exited: %v\n%s%s", p.err, out.String(), tail(log))
			default:
			}
			c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				p.Stop()
				return nil, fmt.Errorf("nginx: %s never accepted connections: %v", addr, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return p, nil
}

// Pid is the master process's id, which leads NGINX's process group:
// give it to childproc.Watch.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Stop asks NGINX to quit (SIGQUIT: finish the requests in flight), kills
// it after 5 s, and waits for it.
func (p *Process) Stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return errors.New("nginx did not quit within 5s of SIGQUIT: killed")
	}
	return nil
}

func tail(b []byte) string {
	const n = 4 << 10
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

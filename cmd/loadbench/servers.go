package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/corsauthz/corsauthz/internal/freeport"
)

// process is a server under test, started by loadbench.
type process struct {
	name string
	addr string
	cmd  *exec.Cmd
	done chan error // Wait's result
	log  string     // file with its stdout and stderr
}

// freePort returns a loopback address with a port free at the time of the
// call, below the kernel's ephemeral range (internal/freeport): a port
// found with 127.0.0.1:0 could be taken by any outgoing connection before
// the server binds it.
func freePort() (string, error) { return freeport.Find() }

// start runs bin with args and env added to the environment, its output
// going to logFile.
func start(name, addr, logFile string, env []string, bin string, args ...string) (*process, error) {
	out, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, addr: addr, cmd: cmd, done: make(chan error, 1), log: logFile}
	go func() {
		p.done <- cmd.Wait()
		out.Close()
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// waitReady calls Check with req until it is answered (at most timeout)
// and returns the answer.
func (p *process) waitReady(ctx context.Context, req *authv3.CheckRequest, timeout time.Duration) (*authv3.CheckResponse, error) {
	conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	deadline := time.Now().Add(timeout)
	for {
		select {
		case err := <-p.done:
			p.done <- err
			return nil, fmt.Errorf("%s exited before answering (%v); see %s", p.name, err, p.log)
		default:
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := client.Check(cctx, req, grpc.WaitForReady(true))
		cancel()
		if err == nil {
			return resp, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s did not answer within %v: %w; see %s", p.name, timeout, err, p.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// check calls Check once.
func (p *process) check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return authv3.NewAuthorizationClient(conn).Check(cctx, req)
}

// stop sends SIGTERM and waits for the process to exit (SIGKILL after 20s).
func (p *process) stop() error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		err := <-p.done
		p.done <- err
		return fmt.Errorf("%s did not stop within 20s of SIGTERM; killed", p.name)
	}
}

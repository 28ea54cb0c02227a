// Package childproc makes the processes a test starts die with it.
//
// A test that starts a program (NGINX, Caddy, oauth2-proxy, the built
// corsauthz, go build) must not leave it running: not when the test
// fails, not when the test binary panics on its -timeout (cleanups do not
// run then), not when go test kills the binary. Three things cover that:
//
//   - Prepare puts the child in a process group of its own, so that one
//     kill reaches the programs it started in turn (NGINX's workers, the
//     compiler under go build), and on Linux asks the kernel to SIGKILL
//     the child when the thread that started it dies (Pdeathsig: the Go
//     runtime does not end its threads, so in practice when the test
//     binary dies);
//   - Watch, for a started child, kills its group when the test ends and,
//     on a timer, shortly before the test binary's deadline, when Go would
//     panic without running any cleanup;
//   - KillGroup kills a group now.
//
// Pdeathsig reaches only the direct child: a grandchild that outlives its
// parent (an NGINX worker whose master was killed) is reached by the group
// kills of Watch.
package childproc

import (
	"errors"
	"os/exec"
	"syscall"
	"time"
)

// Prepare sets cmd, before Start, to run in a process group of its own and
// to be killed when the process that starts it dies.
func Prepare(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	setParentDeathSignal(cmd.SysProcAttr) // Linux only
}

// KillGroup sends SIGKILL to the process group led by pid (a child
// started after Prepare). A group that is gone already is not an error.
func KillGroup(pid int) error {
	if pid <= 0 {
		return errors.New("childproc: no process")
	}
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

// DeadlineMargin is how long before the test binary's deadline Watch kills
// a child's group: enough for the kill to land before Go's timeout panic.
const DeadlineMargin = 2 * time.Second

// TB is the part of *testing.T that Watch uses.
type TB interface {
	Cleanup(func())
	Deadline() (time.Time, bool)
}

// Watch kills the process group led by pid (a child started after
// Prepare) when the test ends, and shortly before the test binary's
// deadline if it is still running then. Register it before the cleanup
// that stops the child gracefully: cleanups run last-registered first, so
// the graceful stop comes first and Watch kills what it left.
func Watch(tb TB, pid int) {
	var timer *time.Timer
	if deadline, ok := tb.Deadline(); ok {
		timer = time.AfterFunc(time.Until(deadline)-DeadlineMargin, func() { _ = KillGroup(pid) })
	}
	tb.Cleanup(func() {
		if timer != nil {
			timer.Stop()
		}
		_ = KillGroup(pid)
	})
}

// Start is Prepare, cmd.Start and Watch: for a test's child that must not
// outlive the test.
func Start(tb TB, cmd *exec.Cmd) error {
	Prepare(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	Watch(tb, cmd.Process.Pid)
	return nil
}

// CombinedOutput is cmd.CombinedOutput for a test's child: run under
// Start's guard, so that a test that times out during a long command
// (go build) does not leave it running.
func CombinedOutput(tb TB, cmd *exec.Cmd) ([]byte, error) {
	if cmd.Stdout != nil || cmd.Stderr != nil {
		return nil, errors.New("childproc: Stdout or Stderr already set")
	}
	var b lockedBuffer
	cmd.Stdout, cmd.Stderr = &b, &b
	if err := Start(tb, cmd); err != nil {
		return nil, err
	}
	err := cmd.Wait()
	return b.bytes(), err
}

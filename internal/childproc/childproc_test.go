package childproc_test

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corsauthz/corsauthz/internal/childproc"
)

// fakeTB is a test with a deadline of its own and cleanups run on demand.
type fakeTB struct {
	deadline time.Time
	cleanups []func()
}

func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) Deadline() (time.Time, bool) {
	return f.deadline, !f.deadline.IsZero()
}
func (f *fakeTB) end() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

// startShell starts sh with a sleeping grandchild and returns the
// command and the grandchild's pid.
func startShell(t *testing.T, tb childproc.TB) (*exec.Cmd, int) {
	t.Helper()
	cmd := exec.Command("sh", "-c", "sleep 60 & echo $!; wait")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := childproc.Start(tb, cmd); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("grandchild pid %q: %v", line, err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL); _ = cmd.Process.Kill() })
	return cmd, pid
}

// waitGone waits until no process has pid (a reaped or never-reaped
// grandchild is reparented, and init reaps it).
func waitGone(t *testing.T, pid int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := syscall.Kill(pid, 0)
		if errors.Is(err, syscall.ESRCH) || zombie(pid) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d still running %s later", pid, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// zombie reports whether pid has exited and waits for its parent to reap it.
func zombie(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	i := strings.LastIndexByte(string(stat), ')')
	return i > 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

func TestWatch(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	for _, tt := range []struct {
		desc     string
		deadline time.Duration // from now; 0: none
		end      bool          // run the cleanups
	}{
		{desc: "the test's end kills the group", end: true},
		{desc: "the test binary's deadline kills the group", deadline: childproc.DeadlineMargin + 300*time.Millisecond},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			tb := &fakeTB{}
			if tt.deadline > 0 {
				tb.deadline = time.Now().Add(tt.deadline)
			}
			cmd, grandchild := startShell(t, tb)
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			select {
			case err := <-exited:
				t.Fatalf("sh exited before anything killed it: %v", err)
			case <-time.After(100 * time.Millisecond):
			}
			if tt.end {
				tb.end()
			}
			select {
			case err := <-exited:
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
					t.Errorf("sh ended with %v, want killed by SIGKILL", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("sh still running 5s later")
			}
			waitGone(t, grandchild, 5*time.Second)
			tb.end() // stops the timer, kills nothing more
		})
	}
}

// TestChildDiesWithParent: a child started after Prepare is killed when
// the process that started it dies without running any cleanup, as a test
// binary does on its timeout panic.
func TestChildDiesWithParent(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Pdeathsig is Linux's")
	}
	if os.Getenv("CHILDPROC_PARENT") == "1" {
		cmd := exec.Command("sleep", "60")
		childproc.Prepare(cmd)
		if err := cmd.Start(); err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString(strconv.Itoa(cmd.Process.Pid) + "\n")
		os.Exit(0) // no cleanup, no wait
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	parent := exec.Command(exe, "-test.run=^TestChildDiesWithParent$")
	parent.Env = append(os.Environ(), "CHILDPROC_PARENT=1")
	out, err := childproc.CombinedOutput(t, parent)
	if err != nil {
		t.Fatalf("parent: %v\n%s", err, out)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("parent printed %q", out)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	waitGone(t, pid, 5*time.Second)
}

func TestCombinedOutput(t *testing.T) {
	out, err := childproc.CombinedOutput(t, exec.Command("sh", "-c", "echo out; echo err >&2; exit 3"))
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("err = %v, want exit status 3", err)
	}
	if got := string(out); got != "out\nerr\n" {
		t.Errorf("output %q", got)
	}
	cmd := exec.Command("true")
	cmd.Stdout = os.Stdout
	if _, err := childproc.CombinedOutput(t, cmd); err == nil {
		t.Error("Stdout set: no error")
	}
}

package configwatch_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corsauthz/corsauthz/internal/configwatch"
)

// TestStableBeforeHandover: a file written in place, in parts with pauses
// shorter than the debounce period, is handed over only complete, even to
// a watch that looks at it every few milliseconds (before, the look
// handed over whatever it read). The debounce period is long, so that no
// load on the machine stretches the writer's pauses past it.
func TestStableBeforeHandover(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, path, "version 0 complete\n")
	w := watch(t, path, configwatch.Options{
		Interval:    5 * time.Millisecond,
		Debounce:    400 * time.Millisecond,
		InitialHash: configwatch.Hash([]byte("version 0 complete\n")),
	})
	w.ready(t)
	for v := 1; v <= 3; v++ {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, part := range []string{"version ", strings.Repeat(strconv.Itoa(v), 1000), " complete\n"} {
			if _, err := f.WriteString(part); err != nil {
				t.Fatal(err)
			}
			time.Sleep(40 * time.Millisecond)
		}
		f.Close()
		c := w.next(t)
		if c.Err != nil || !strings.HasSuffix(string(c.Data), " complete\n") {
			t.Fatalf("write %d: handed over %q (%v), want the complete file", v, c.Data, c.Err)
		}
	}
	w.none(t, 500*time.Millisecond)
}

// TestFIFOIsAnError: a FIFO renamed over the file is an error handed over
// at once, and the watch goes on (before, reading it blocked the watch
// for ever).
func TestFIFOIsAnError(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	writeFile(t, path, "a\n")
	w := watch(t, path, configwatch.Options{Interval: 10 * time.Millisecond, InitialHash: configwatch.Hash([]byte("a\n"))})
	w.ready(t)
	fifo := filepath.Join(dir, "fifo")
	if err := mkfifo(fifo); err != nil {
		t.Skip(err)
	}
	if err := os.Rename(fifo, path); err != nil {
		t.Fatal(err)
	}
	if c := w.next(t); c.Err == nil || !strings.Contains(c.Err.Error(), "named pipe") {
		t.Fatalf("handed over %v, want the FIFO refused", c)
	}
	renameOver(t, path, "b\n")
	if c := w.next(t); c.Err != nil || string(c.Data) != "b\n" {
		t.Fatalf("after the FIFO: %v, want the new file", c)
	}
}

func mkfifo(path string) error { return syscall.Mkfifo(path, 0o600) }

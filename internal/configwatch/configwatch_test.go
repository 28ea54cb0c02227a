package configwatch_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/corsauthz/corsauthz/internal/configwatch"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// watching is a running Watch whose changes arrive on a channel.
type watching struct {
	changes chan configwatch.Change
	trigger chan os.Signal
}

// watch runs Watch on path until the test ends.
func watch(t *testing.T, path string, opts configwatch.Options) *watching {
	t.Helper()
	w := &watching{changes: make(chan configwatch.Change, 100), trigger: make(chan os.Signal, 1)}
	opts.Trigger = w.trigger
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- configwatch.Watch(ctx, path, opts, func(_ context.Context, c configwatch.Change) {
			w.changes <- c
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watch: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Watch did not return 5s after its context was cancelled")
		}
	})
	return w
}

// next waits up to 3 seconds for a change.
func (w *watching) next(t *testing.T) configwatch.Change {
	t.Helper()
	select {
	case c := <-w.changes:
		return c
	case <-time.After(3 * time.Second):
		t.Fatal("no change handed over within 3s")
		return configwatch.Change{}
	}
}

// ready waits until the watch is set up: it triggers a look and waits for
// its (forced) change, which comes after the first look.
func (w *watching) ready(t *testing.T) {
	t.Helper()
	w.trigger <- syscall.SIGHUP
	if c := w.next(t); !c.Forced {
		t.Fatalf("change before the watch was set up: %v", c)
	}
}

// none checks that no change arrives for a while.
func (w *watching) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case c := <-w.changes:
		t.Fatalf("unexpected change handed over: %v", c)
	case <-time.After(d):
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// renameOver writes content to a temporary file beside path and renames
// it over path, as editors and configuration tools do.
func renameOver(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// configMap lays out dir as the kubelet mounts a ConfigMap: name is a
// symlink to ..data/name, ..data a symlink to a timestamped directory.
type configMap struct {
	dir, name string
	version   int
}

func newConfigMap(t *testing.T, dir, name, content string) *configMap {
	t.Helper()
	cm := &configMap{dir: dir, name: name}
	cm.update(t, content)
	if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
	return cm
}

func (cm *configMap) path() string { return filepath.Join(cm.dir, cm.name) }

// update swaps in content the way the kubelet's atomic writer does: a new
// timestamped directory, a new ..data symlink renamed over the old one,
// then the old directory removed.
func (cm *configMap) update(t *testing.T, content string) {
	t.Helper()
	cm.version++
	ts := fmt.Sprintf("..2026_01_01_00_00_%02d.%d", cm.version%60, cm.version)
	if err := os.Mkdir(filepath.Join(cm.dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(cm.dir, ts, cm.name), content)
	old, _ := os.Readlink(filepath.Join(cm.dir, "..data"))
	tmpLink := filepath.Join(cm.dir, "..data_tmp")
	if err := os.Symlink(ts, tmpLink); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmpLink, filepath.Join(cm.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(cm.dir, old)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWatchSeesChanges(t *testing.T) {
	t.Parallel()
	eventsOnly := configwatch.Options{Interval: -1} // no periodic check: events must do it
	for _, tc := range []struct {
		desc string
		opts configwatch.Options
		// setup returns the path to watch; change rewrites it with content.
		setup  func(t *testing.T, dir, content string) (path string, change func(t *testing.T, content string))
		cause  string
		forced bool
	}{
		{
			desc: "written in place",
			opts: eventsOnly,
			setup: func(t *testing.T, dir, content string) (string, func(*testing.T, string)) {
				path := filepath.Join(dir, "config.yaml")
				writeFile(t, path, content)
				return path, func(t *testing.T, c string) { writeFile(t, path, c) }
			},
			cause: "event",
		},
		{
			desc: "temporary file renamed over it",
			opts: eventsOnly,
			setup: func(t *testing.T, dir, content string) (string, func(*testing.T, string)) {
				path := filepath.Join(dir, "config.yaml")
				writeFile(t, path, content)
				return path, func(t *testing.T, c string) { renameOver(t, path, c) }
			},
			cause: "event",
		},
		{
			desc: "Kubernetes ConfigMap: ..data symlink swapped",
			opts: eventsOnly,
			setup: func(t *testing.T, dir, content string) (string, func(*testing.T, string)) {
				cm := newConfigMap(t, dir, "config.yaml", content)
				return cm.path(), func(t *testing.T, c string) { cm.update(t, c) }
			},
			cause: "event",
		},
		{
			desc: "symlink to a file in another directory, edited there",
			opts: eventsOnly,
			setup: func(t *testing.T, dir, content string) (string, func(*testing.T, string)) {
				real := filepath.Join(dir, "real", "policies.yaml")
				os.Mkdir(filepath.Dir(real), 0o755)
				writeFile(t, real, content)
				path := filepath.Join(dir, "config.yaml")
				if err := os.Symlink(real, path); err != nil {
					t.Fatal(err)
				}
				return path, func(t *testing.T, c string) { renameOver(t, real, c) }
			},
			cause: "event",
		},
		{
			desc: "periodic check without events",
			opts: configwatch.Options{Interval: 20 * time.Millisecond, NoEvents: true},
			setup: func(t *testing.T, dir, content string) (string, func(*testing.T, string)) {
				path := filepath.Join(dir, "config.yaml")
				writeFile(t, path, content)
				return path, func(t *testing.T, c string) { renameOver(t, path, c) }
			},
			cause: "interval",
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			v1, v2 := "version: 1\n", "version: 2\n"
			path, change := tc.setup(t, t.TempDir(), v1)
			opts := tc.opts
			opts.InitialHash = configwatch.Hash([]byte(v1))
			w := watch(t, path, opts)
			w.ready(t) // the first look found what is in force: no change before the forced one

			change(t, v2)
			c := w.next(t)
			if string(c.Data) != v2 || c.Hash != configwatch.Hash([]byte(v2)) || c.Err != nil || c.Cause != tc.cause || c.Forced {
				t.Errorf("change = %+v, want %q from an %s", c, v2, tc.cause)
			}

			change(t, v2) // same content again: not a change
			w.none(t, 300*time.Millisecond)

			change(t, v1)
			if c := w.next(t); string(c.Data) != v1 {
				t.Errorf("change back = %q, want %q", c.Data, v1)
			}
		})
	}
}

func TestWatchTrigger(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, path, "a\n")
	w := watch(t, path, configwatch.Options{Interval: -1, InitialHash: configwatch.Hash([]byte("a\n"))})
	w.trigger <- syscall.SIGHUP
	c := w.next(t)
	if string(c.Data) != "a\n" || !c.Forced || c.Cause != "trigger" {
		t.Errorf("change on trigger = %+v, want the unchanged content, forced", c)
	}
	w.none(t, 100*time.Millisecond)
}

func TestWatchInitialLook(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		desc        string
		initialHash string
		want        bool
	}{
		{"file changed since it was loaded", configwatch.Hash([]byte("older\n")), true},
		{"file as loaded", configwatch.Hash([]byte("current\n")), false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "config.yaml")
			writeFile(t, path, "current\n")
			w := watch(t, path, configwatch.Options{Interval: -1, InitialHash: tc.initialHash})
			if !tc.want {
				w.ready(t)
				return
			}
			if c := w.next(t); string(c.Data) != "current\n" || c.Cause != "initial" {
				t.Errorf("first change = %+v, want the current content, cause initial", c)
			}
		})
	}
}

// TestWatchDebouncesBursts: a burst of writes, each within the debounce
// window of the one before, is one change, with the last content. On a
// loaded machine the writer can stall for longer than the window, which
// legitimately splits the burst: such an attempt is noticed (the largest
// gap between writes), its changes drained, and the burst written again.
func TestWatchDebouncesBursts(t *testing.T) {
	t.Parallel()
	const debounce = 500 * time.Millisecond
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, path, "0\n")
	w := watch(t, path, configwatch.Options{
		Interval:    -1,
		Debounce:    debounce,
		MaxDebounce: 10 * debounce,
		InitialHash: configwatch.Hash([]byte("0\n")),
	})
	w.ready(t)
	const writes, attempts = 30, 5
	for attempt := 1; attempt <= attempts; attempt++ {
		var maxGap time.Duration
		last := time.Now()
		for i := 1; i <= writes; i++ {
			writeFile(t, path, fmt.Sprintf("%d.%d\n", attempt, i))
			maxGap = max(maxGap, time.Since(last))
			last = time.Now()
			time.Sleep(2 * time.Millisecond)
		}
		want := fmt.Sprintf("%d.%d\n", attempt, writes)
		if maxGap >= debounce/2 {
			t.Logf("attempt %d: the writer stalled %v between writes; writing the burst again", attempt, maxGap)
			for c := w.next(t); string(c.Data) != want; c = w.next(t) {
			}
			continue
		}
		c := w.next(t)
		if string(c.Data) != want {
			t.Errorf("one change for the burst with %q (%v), want the last content %q", c.Data, c, want)
		}
		w.none(t, debounce+100*time.Millisecond)
		return
	}
	t.Fatalf("the writer stalled in each of %d bursts: no burst to check", attempts)
}

func TestWatchUnreadableFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, path, "a\n")
	w := watch(t, path, configwatch.Options{Interval: 20 * time.Millisecond, InitialHash: configwatch.Hash([]byte("a\n"))})
	w.ready(t)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	c := w.next(t)
	if !errors.Is(c.Err, fs.ErrNotExist) || c.Data != nil {
		t.Errorf("change for a removed file = %+v, want ErrNotExist", c)
	}
	w.none(t, 200*time.Millisecond) // reported once, not at every tick
	renameOver(t, path, "b\n")      // whole: a tick could read a file half written in place
	if c := w.next(t); string(c.Data) != "b\n" || c.Err != nil {
		t.Errorf("change for the file back = %+v, want %q", c, "b\n")
	}
}

func TestWatchArguments(t *testing.T) {
	t.Parallel()
	reload := func(context.Context, configwatch.Change) {}
	for _, tc := range []struct {
		desc   string
		path   string
		reload configwatch.Func
		want   string
	}{
		{"empty path", "", reload, "configwatch: empty path"},
		{"nil reload", "config.yaml", nil, "configwatch: nil reload function"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			err := configwatch.Watch(context.Background(), tc.path, configwatch.Options{}, tc.reload)
			if err == nil || err.Error() != tc.want {
				t.Errorf("Watch: %v, want %q", err, tc.want)
			}
		})
	}
}

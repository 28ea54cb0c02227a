// Package configwatch notices when a configuration file changes and hands
// its new content to a reload function. It knows nothing of what the file
// means, and nothing of gRPC.
//
// Three things make it look at the file:
//
//   - filesystem events (fsnotify) in the file's directory, so that both an
//     editor's write-to-temporary-then-rename and a Kubernetes ConfigMap
//     update are seen: a mounted ConfigMap's file is a symlink through
//     "..data", which the kubelet swaps atomically to a new timestamped
//     directory, an event on "..data" rather than on the file itself.
//     Events are debounced: a burst of them is one look.
//   - a timer, every Options.Interval, as a safety net for filesystems
//     without events (some network and overlay mounts) and for events
//     lost to an overflowing queue.
//   - Options.Trigger, such as SIGHUP from signal.Notify.
//
// Each look reads the file and compares the SHA-256 of its content with
// that of the content last handed over: only different content is handed
// to reload, and only once the file's size, modification time and content
// have stayed the same for the debounce period, so that a file written in
// place is not handed over half written (renaming a complete file over the
// configuration remains the way to update it: a writer that pauses longer
// than the debounce period mid-write can still be caught half-way). Only a
// regular file is read (package configfile): a FIFO put in its place is an
// error handed over, never a read that blocks the watch. Only changed
// content is handed so an unchanged file is never a reload, and an invalid file
// is reported once rather than at every tick. A trigger hands the content
// over even when it is unchanged, so that an operator's SIGHUP always gets
// an answer in the log.
package configwatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/corsauthz/corsauthz/internal/configfile"
)

// Defaults for [Options].
const (
	DefaultInterval    = 5 * time.Second
	DefaultDebounce    = 100 * time.Millisecond
	DefaultMaxDebounce = time.Second
)

// Options tune [Watch]. The zero value is usable.
type Options struct {
	// Interval is how often the file is read even without events; 0
	// means DefaultInterval, a negative value no periodic check.
	Interval time.Duration
	// Debounce is how long the directory must be quiet after an event
	// before the file is read (0: DefaultDebounce). MaxDebounce bounds the
	// wait under a steady stream of events (0: DefaultMaxDebounce).
	Debounce, MaxDebounce time.Duration
	// NoEvents turns filesystem events off, leaving the periodic check
	// and the trigger: for filesystems whose events are unreliable.
	NoEvents bool
	// Trigger makes Watch read the file and hand it over, changed or not,
	// each time it receives (such as SIGHUP, with signal.Notify).
	Trigger <-chan os.Signal
	// InitialHash is the hex SHA-256 of the content already in force, as
	// [Hash] computes it. Watch reads the file once it is watching, and
	// hands the content over if it differs, so that a change between the
	// first load and the start of Watch is not missed.
	InitialHash string
	// Logger receives what Watch notices (nil: nothing is logged).
	Logger *slog.Logger
	// MaxBytes bounds the file read (configfile.Read; <= 0: no bound).
	// Whatever it is, only a regular file is read: a FIFO or a device in
	// its place is an error handed over, never a read that blocks.
	MaxBytes int64
}

// Func receives the file's content when it may have changed. Watch makes
// one call at a time, from its own goroutine.
type Func func(ctx context.Context, c Change)

// Change is what Watch hands to a [Func]: the file's whole content and its
// [Hash], or the error that kept it from being read.
type Change struct {
	Data   []byte
	Hash   string
	Err    error  // the file could not be read; Data and Hash are empty
	Forced bool   // a Trigger asked, whether or not the content changed
	Cause  string // "initial", "event", "interval" or "trigger", for logs
}

// Hash is the hex SHA-256 of data: the hash Watch compares, and the one
// policy.Engine.Hash reports for a loaded file.
func Hash(data []byte) string { return configfile.Hash(data) }

// Watch watches the file at path until ctx is done and calls reload, one
// call at a time, whenever its content may have changed (see the package
// documentation). It returns nil when ctx is done; it returns an error at
// once only when path is empty or reload nil. When filesystem events
// cannot be had (an inotify limit, say), it logs a warning and relies on
// the periodic check and the trigger.
func Watch(ctx context.Context, path string, opts Options, reload Func) error {
	if path == "" {
		return errors.New("configwatch: empty path")
	}
	if reload == nil {
		return errors.New("configwatch: nil reload function")
	}
	w := &watcher{
		path:     filepath.Clean(path),
		opts:     opts,
		reload:   reload,
		lastHash: opts.InitialHash,
		logger:   opts.Logger,
	}
	if w.logger == nil {
		w.logger = slog.New(slog.DiscardHandler)
	}
	if w.opts.Interval == 0 {
		w.opts.Interval = DefaultInterval
	}
	if w.opts.Debounce <= 0 {
		w.opts.Debounce = DefaultDebounce
	}
	if w.opts.MaxDebounce <= 0 {
		w.opts.MaxDebounce = DefaultMaxDebounce
	}
	w.run(ctx)
	return nil
}

type watcher struct {
	path     string
	opts     Options
	reload   Func
	logger   *slog.Logger
	lastHash string // of the content last handed over, or "error: ..." after a read error

	fs      *fsnotify.Watcher
	dirs    map[string]bool // watched directories
	targets map[string]bool // base names, per directory, that matter: "dir\x00name"
}

func (w *watcher) run(ctx context.Context) {
	var events <-chan fsnotify.Event
	var fsErrors <-chan error
	if w.opts.NoEvents {
		// Only the timer and the trigger.
	} else if fw, err := fsnotify.NewWatcher(); err != nil {
		w.logger.Warn("configuration watch: no filesystem events, relying on the periodic check",
			slog.String("config", w.path), slog.String("error", err.Error()))
	} else {
		w.fs = fw
		defer fw.Close()
		w.dirs = map[string]bool{}
		w.watchDirs()
		events, fsErrors = fw.Events, fw.Errors
	}

	var tick <-chan time.Time
	if w.opts.Interval > 0 {
		t := time.NewTicker(w.opts.Interval)
		defer t.Stop()
		tick = t.C
	}

	// The debounce timer runs only while events are pending.
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	var firstPending time.Time

	w.look(ctx, "initial", false)
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if !w.matters(ev) {
				continue
			}
			now := time.Now()
			if firstPending.IsZero() {
				firstPending = now
			}
			wait := w.opts.Debounce
			if left := firstPending.Add(w.opts.MaxDebounce).Sub(now); left < wait {
				wait = max(left, 0)
			}
			debounce.Reset(wait)
		case <-debounce.C:
			firstPending = time.Time{}
			w.look(ctx, "event", false)
		case err, ok := <-fsErrors:
			if !ok {
				fsErrors = nil
				continue
			}
			// An overflowing queue loses events: look now rather than at the next tick.
			w.logger.Warn("configuration watch: filesystem event error", slog.String("config", w.path), slog.String("error", err.Error()))
			w.look(ctx, "event", false)
		case <-tick:
			w.look(ctx, "interval", false)
		case <-w.opts.Trigger:
			w.look(ctx, "trigger", true)
		}
	}
}

// look reads the file and hands it over when it changed, or when forced;
// changed content only once it is stable (see stable).
func (w *watcher) look(ctx context.Context, cause string, forced bool) {
	if ctx.Err() != nil {
		return
	}
	w.watchDirs() // the symlink may point somewhere new
	if !forced {
		// The usual look finds the file unchanged: hashing it through a
		// small buffer then costs no copy of it (at the caps, 2.4 MiB
		// every interval, which a serving process's heap had to make
		// room for).
		if sum, err := configfile.Sum(w.path, w.opts.MaxBytes); err == nil && sum == w.lastHash {
			return
		}
	}
	fi, _ := os.Stat(w.path)
	data, err := configfile.Read(w.path, w.opts.MaxBytes)
	if err != nil && !errors.Is(err, configfile.ErrLimit) && w.lastHash != "error: "+err.Error() {
		// A new read error is looked at again after the debounce period
		// before it is handed over: resolving a ConfigMap's symlinks can
		// fail for an instant while the kubelet swaps "..data" and removes
		// the old directory, and such a blip is not a failed reload.
		if !sleepCtx(ctx, w.opts.Debounce) {
			return
		}
		fi, _ = os.Stat(w.path)
		data, err = configfile.Read(w.path, w.opts.MaxBytes)
	}
	c := Change{Forced: forced, Cause: cause}
	key := ""
	if err != nil {
		c.Err = err
		key = "error: " + err.Error()
	} else {
		c.Hash = Hash(data)
		key = c.Hash
	}
	if key == w.lastHash && !forced {
		return
	}
	if err == nil {
		if data, c.Hash, err = w.stable(ctx, fi, data, c.Hash); err != nil {
			if ctx.Err() != nil {
				return
			}
			c.Err, key = err, "error: "+err.Error()
		} else {
			c.Data, key = data, c.Hash
		}
		if key == w.lastHash && !forced {
			return // back to what was handed over, after all
		}
	}
	w.lastHash = key
	w.reload(ctx, c)
}

// stable returns the file's content once its size, modification time and
// content have stayed the same for the debounce period, so that a file
// written in place (not renamed) is never handed over half written: each
// time one changed, it waits again. fi and data are what was read first.
// A writer that pauses longer than the debounce period in the middle of a
// write can still be read half-way: writing a temporary file and renaming
// it over the configuration is the way to update it.
func (w *watcher) stable(ctx context.Context, fi os.FileInfo, data []byte, hash string) ([]byte, string, error) {
	// Modification times are compared, never their age: on some kernels
	// a write's timestamp comes from a coarse clock that lags by far more
	// than the debounce period.
	timer := time.NewTimer(w.opts.Debounce)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, "", ctx.Err()
		case <-timer.C:
		}
		fi2, err := os.Stat(w.path)
		var data2 []byte
		if err == nil {
			data2, err = configfile.Read(w.path, w.opts.MaxBytes)
		}
		if err != nil {
			// An error twice in a row is handed over; once, it may be a
			// symlink swap's blip (see look): wait and read again.
			if fi == nil || errors.Is(err, configfile.ErrLimit) {
				return nil, "", err
			}
			fi = nil
			timer.Reset(w.opts.Debounce)
			continue
		}
		hash2 := Hash(data2)
		if fi != nil && sameStamp(fi, fi2) && hash == hash2 && int64(len(data2)) == fi2.Size() {
			return data2, hash2, nil
		}
		w.logger.Debug("configuration watch: the file is changing; waiting until it is stable",
			slog.String("config", w.path), slog.Duration("debounce", w.opts.Debounce))
		fi, data, hash = fi2, data2, hash2
		timer.Reset(w.opts.Debounce)
	}
}

// sleepCtx waits d, or until ctx is done; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// sameStamp reports whether a and b have the same size and modification time.
func sameStamp(a, b os.FileInfo) bool {
	return a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// watchDirs watches the directory of the path and, when the path is a
// symlink, the directory of the file it resolves to, so that a change to
// either is an event. Directories no longer relevant are dropped, except
// the path's own.
func (w *watcher) watchDirs() {
	if w.fs == nil {
		return
	}
	want := map[string]string{filepath.Dir(w.path): filepath.Base(w.path)}
	if real, err := filepath.EvalSymlinks(w.path); err == nil && real != w.path {
		if _, ok := want[filepath.Dir(real)]; !ok {
			want[filepath.Dir(real)] = filepath.Base(real)
		}
	}
	w.targets = map[string]bool{}
	for dir, name := range want {
		w.targets[dir+"\x00"+name] = true
		if w.dirs[dir] {
			continue
		}
		if err := w.fs.Add(dir); err != nil {
			w.logger.Warn("configuration watch: cannot watch directory; relying on the periodic check",
				slog.String("dir", dir), slog.String("error", err.Error()))
			continue
		}
		w.dirs[dir] = true
	}
	for dir := range w.dirs {
		if _, ok := want[dir]; !ok {
			_ = w.fs.Remove(dir) // fails when the directory is gone already
			delete(w.dirs, dir)
		}
	}
}

// matters reports whether ev may change what the path reads: an event on
// the file's name itself, on the resolved file, or on a Kubernetes
// "..data"-style entry of the directory.
func (w *watcher) matters(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	dir, name := filepath.Dir(ev.Name), filepath.Base(ev.Name)
	if w.targets[dir+"\x00"+name] {
		return true
	}
	return dir == filepath.Dir(w.path) && strings.HasPrefix(name, "..")
}

// String describes a Change for logs.
func (c Change) String() string {
	if c.Err != nil {
		return fmt.Sprintf("%s: %v", c.Cause, c.Err)
	}
	return fmt.Sprintf("%s: %d bytes, sha256 %s", c.Cause, len(c.Data), c.Hash)
}

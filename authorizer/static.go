package authorizer

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corsauthz/corsauthz/policy"
)

// This file reads the values of an authorizer's static_headers where the
// call is made, so that no value is ever configuration text:
//
//   - an environment variable is looked up at each call (a map lookup
//     under a read lock: cheaper than any cache of it would be);
//   - a file is read when the client first needs it, and read again when
//     it changes (its size, modification time or inode), looked at most
//     once per fileRecheck: a Kubernetes Secret mounted as a volume is
//     replaced by swapping a symlink, so a rotated credential is used
//     within a second, without a reload and without a file read per call.
//
// A value that is missing, empty or not a valid header value fails the
// call (Error, 503 under on_error: deny): the authorizer is never asked
// with an empty credential. Errors name the variable or the file, never
// the value.

// fileRecheck is how often a static header's file is looked at again.
const fileRecheck = time.Second

// MaxStaticValueBytes bounds a static header's value.
const MaxStaticValueBytes = 8 << 10

type staticHeaders []staticHeader

type staticHeader struct {
	name string
	env  string
	file *fileValue
}

func newStaticHeaders(hs []policy.StaticHeader) staticHeaders {
	out := make(staticHeaders, 0, len(hs))
	for _, h := range hs {
		s := staticHeader{name: h.Name, env: h.ValueFrom.Env}
		if h.ValueFrom.File != "" {
			s.file = &fileValue{path: h.ValueFrom.File}
		}
		out = append(out, s)
	}
	return out
}

// each calls set with each header's value, or returns the first value
// that cannot be had.
func (s staticHeaders) each(set func(name, value string)) error {
	for i := range s {
		v, err := s[i].value()
		if err != nil {
			return fmt.Errorf("static header %s: %w", s[i].name, err)
		}
		set(s[i].name, v)
	}
	return nil
}

func (h *staticHeader) value() (string, error) {
	if h.file != nil {
		return h.file.value(time.Now())
	}
	v, ok := os.LookupEnv(h.env)
	if !ok {
		return "", fmt.Errorf("environment variable %s is not set", h.env)
	}
	return checkStaticValue(v, "environment variable "+h.env)
}

// checkStaticValue returns v without one trailing newline, or why it
// cannot be sent.
func checkStaticValue(v, where string) (string, error) {
	v = strings.TrimSuffix(strings.TrimSuffix(v, "\n"), "\r")
	switch {
	case v == "":
		return "", fmt.Errorf("%s is empty", where)
	case len(v) > MaxStaticValueBytes:
		return "", fmt.Errorf("%s holds more than %d bytes", where, MaxStaticValueBytes)
	case !validValue(v):
		return "", fmt.Errorf("%s holds a control character, which no header value may", where)
	}
	return v, nil
}

// fileValue is a file's value, read again when the file changes.
type fileValue struct {
	path    string
	current atomic.Pointer[fileSnapshot]
	mu      sync.Mutex // one refresh at a time; the others use current
}

type fileSnapshot struct {
	value   string
	err     error
	checked time.Time
	id      fileID
}

// fileID tells a file's versions apart.
type fileID struct {
	size  int64
	mtime time.Time
	ino   uint64
}

func (f *fileValue) value(now time.Time) (string, error) {
	s := f.current.Load()
	if s != nil && now.Sub(s.checked) < fileRecheck {
		return s.value, s.err
	}
	if !f.mu.TryLock() {
		if s != nil {
			return s.value, s.err // being refreshed by another call
		}
		f.mu.Lock() // the first read: wait for it
	}
	defer f.mu.Unlock()
	if s2 := f.current.Load(); s2 != s && s2 != nil {
		return s2.value, s2.err
	}
	next := &fileSnapshot{checked: now}
	st, err := os.Stat(f.path)
	switch {
	case err != nil:
		next.err = fmt.Errorf("cannot read %s: %w", f.path, unwrapPathError(err))
	case s != nil && s.err == nil && idOf(st) == s.id:
		next.value, next.id = s.value, s.id // unchanged
	default:
		next.id = idOf(st)
		b, err := policy.ReadSecretFile(f.path)
		if err != nil {
			next.err = err
		} else {
			next.value, next.err = checkStaticValue(string(b), "file "+f.path)
		}
	}
	f.current.Store(next)
	return next.value, next.err
}

func unwrapPathError(err error) error {
	if pe, ok := errors.AsType[*os.PathError](err); ok {
		return pe.Err
	}
	return err
}

func idOf(st os.FileInfo) fileID {
	return fileID{size: st.Size(), mtime: st.ModTime(), ino: inode(st)}
}

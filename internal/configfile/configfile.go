// Package configfile reads a configuration file within the bounds of
// docs/operations-and-limits.md ("Limits"): only a regular file, of at most
// a given size. A FIFO, a device (/dev/zero) or a directory is refused at
// once, by stat, before it is opened for reading: opening a FIFO blocks
// until a writer comes, and reading /dev/zero never ends.
package configfile

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// MaxBytesFlag is the flag that sets the size limit, for messages.
const MaxBytesFlag = "--max-config-bytes"

// NotRegularError is the refusal of a path that is not a regular file.
type NotRegularError struct {
	Path string
	Mode os.FileMode
}

func (e *NotRegularError) Error() string {
	return fmt.Sprintf("%s is %s, not a regular file: a configuration is read only from a regular file (write it to a file, or mount it as one)", e.Path, describeMode(e.Mode))
}

func describeMode(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a block device"
	}
	return "not a regular file (" + m.String() + ")"
}

// TooLargeError is the refusal of a file larger than the limit.
type TooLargeError struct {
	Path     string
	Size     int64
	AtLeast  bool // Size is what was read before stopping: the file is larger
	MaxBytes int64
}

func (e *TooLargeError) Error() string {
	more := ""
	if e.AtLeast {
		more = " or more"
	}
	return fmt.Sprintf("%s is %d bytes%s, more than the limit of %d bytes (%s)", e.Path, e.Size, more, e.MaxBytes, MaxBytesFlag)
}

// ErrLimit matches both refusals (errors.Is).
var ErrLimit = errors.New("configuration file past a limit")

func (e *NotRegularError) Is(target error) bool { return target == ErrLimit }
func (e *TooLargeError) Is(target error) bool   { return target == ErrLimit }

// Read reads the regular file at path (through symlinks, as Kubernetes
// mounts a ConfigMap), refusing anything else, or more than maxBytes
// (maxBytes <= 0: no size limit). The file is checked by stat before it
// is opened, opened without blocking, and checked again once open, so
// that a file swapped for a FIFO in between is refused too; and at most
// maxBytes+1 bytes are read, whatever stat said.
func Read(path string, maxBytes int64) ([]byte, error) {
	f, fi, r, err := open(path, maxBytes)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data := make([]byte, 0, fi.Size()+1)
	for {
		if len(data) == cap(data) {
			data = append(data, 0)[:len(data)]
		}
		n, err := r.Read(data[len(data):cap(data)])
		data = data[:len(data)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if maxBytes > 0 && int64(len(data)) > maxBytes {
		return nil, &TooLargeError{Path: path, Size: int64(len(data)), AtLeast: true, MaxBytes: maxBytes}
	}
	return data, nil
}

// Hash is the hex SHA-256 of a configuration's bytes: the hash a loaded
// engine reports (policy.Engine.Hash), the watcher compares and Sum
// computes for a file, written once so that they agree.
func Hash(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// Sum is Hash of what Read would return, or Read's error, computed
// through a small buffer: a watcher that only looks for a change needs no
// copy of the file (at the caps, 2.4 MiB every few seconds).
func Sum(path string, maxBytes int64) (string, error) {
	f, _, r, err := open(path, maxBytes)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return "", err
	}
	if maxBytes > 0 && n > maxBytes {
		return "", &TooLargeError{Path: path, Size: n, AtLeast: true, MaxBytes: maxBytes}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// open opens the regular file at path for Read and Sum: the file, what
// stat said of it once open, and the reader of at most maxBytes+1 bytes.
func open(path string, maxBytes int64) (*os.File, os.FileInfo, io.Reader, error) {
	fi, err := os.Stat(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			pe.Op = "open" // what the caller asked for, as os.ReadFile says it
		}
		return nil, nil, nil, err
	}
	if err := check(path, fi, maxBytes); err != nil {
		return nil, nil, nil, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, nil, err
	}
	if fi, err = f.Stat(); err == nil {
		err = check(path, fi, maxBytes)
	}
	if err != nil {
		f.Close()
		return nil, nil, nil, err
	}
	r := io.Reader(f)
	if maxBytes > 0 {
		r = io.LimitReader(f, maxBytes+1)
	}
	return f, fi, r, nil
}

func check(path string, fi os.FileInfo, maxBytes int64) error {
	if !fi.Mode().IsRegular() {
		return &NotRegularError{Path: path, Mode: fi.Mode()}
	}
	if maxBytes > 0 && fi.Size() > maxBytes {
		return &TooLargeError{Path: path, Size: fi.Size(), MaxBytes: maxBytes}
	}
	return nil
}

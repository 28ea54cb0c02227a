package configfile_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/corsauthz/corsauthz/internal/configfile"
)

func TestRead(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	regular := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(regular, []byte("policies: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink(regular, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		desc     string
		path     string
		maxBytes int64
		want     string // content, or an error containing it
		limit    bool   // the error is a limit's (ErrLimit)
	}{
		{desc: "regular file", path: regular, maxBytes: 100, want: "policies: []\n"},
		{desc: "exactly the limit", path: regular, maxBytes: 13, want: "policies: []\n"},
		{desc: "one byte past the limit", path: regular, maxBytes: 12, want: "is 13 bytes, more than the limit of 12 bytes (--max-config-bytes)", limit: true},
		{desc: "no limit", path: regular, maxBytes: 0, want: "policies: []\n"},
		{desc: "symlink to a regular file", path: link, maxBytes: 100, want: "policies: []\n"},
		{desc: "FIFO", path: fifo, maxBytes: 100, want: "is a named pipe (FIFO), not a regular file", limit: true},
		{desc: "/dev/zero", path: "/dev/zero", maxBytes: 0, want: "is a character device", limit: true},
		{desc: "directory", path: dir, maxBytes: 100, want: "is a directory", limit: true},
		{desc: "missing", path: filepath.Join(dir, "nope"), maxBytes: 100, want: "open " + filepath.Join(dir, "nope") + ": no such file or directory"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			// Sum agrees with Read: the hash of the same content, or the
			// same error.
			data, err := configfile.Read(tc.path, tc.maxBytes)
			sum, sumErr := configfile.Sum(tc.path, tc.maxBytes)
			if err == nil {
				if string(data) != tc.want {
					t.Errorf("Read = %q, want %q", data, tc.want)
				}
				if h := sha256.Sum256(data); sumErr != nil || sum != hex.EncodeToString(h[:]) {
					t.Errorf("Sum = %q, %v; want the SHA-256 of Read's %q", sum, sumErr, data)
				}
				return
			}
			if !strings.Contains(err.Error(), tc.want) || errors.Is(err, configfile.ErrLimit) != tc.limit {
				t.Errorf("Read: %v (a limit: %v), want %q (a limit: %v)", err, errors.Is(err, configfile.ErrLimit), tc.want, tc.limit)
			}
			if sumErr == nil || sumErr.Error() != err.Error() || sum != "" {
				t.Errorf("Sum = %q, %v; want Read's error %v", sum, sumErr, err)
			}
		})
	}
}

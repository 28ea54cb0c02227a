package configwatch

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// TestUnchangedLookCopiesNothing: the periodic look at an unchanged file
// hashes it through a small buffer instead of reading a copy of it, and
// a changed file is still read and handed over.
func TestUnchangedLookCopiesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	data := bytes.Repeat([]byte("# a configuration at the caps is 2.4 MiB\n"), 50_000) // 2 MiB
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var handed []Change
	w := &watcher{path: path, opts: Options{MaxBytes: 4 << 20, Debounce: 1}, lastHash: Hash(data),
		reload: func(_ context.Context, c Change) { handed = append(handed, c) }}

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 10 {
		w.look(t.Context(), "interval", false)
	}
	runtime.ReadMemStats(&after)
	if perLook := (after.TotalAlloc - before.TotalAlloc) / 10; perLook > 256<<10 || len(handed) != 0 {
		t.Errorf("10 looks at an unchanged 2 MiB file: %d bytes allocated per look (want under 256 KiB), %d changes handed over (want none)", perLook, len(handed))
	}

	changed := append(data, "# changed\n"...)
	if err := os.WriteFile(path, changed, 0o600); err != nil {
		t.Fatal(err)
	}
	w.look(t.Context(), "interval", false)
	if len(handed) != 1 || !bytes.Equal(handed[0].Data, changed) || handed[0].Hash != Hash(changed) {
		t.Fatalf("after a change: %d changes handed over, want 1 with the new content", len(handed))
	}
}

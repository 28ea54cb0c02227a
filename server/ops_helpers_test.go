package server_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// logBuffer collects JSON log lines written from any goroutine.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// logger returns a JSON logger at level writing to b.
func (b *logBuffer) logger(level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: level}))
}

// records returns the lines logged so far, decoded.
func (b *logBuffer) records(tb testing.TB) []map[string]any {
	tb.Helper()
	b.mu.Lock()
	data := append([]byte(nil), b.buf.Bytes()...)
	b.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			tb.Fatalf("log line %q: %v", sc.Text(), err)
		}
		out = append(out, rec)
	}
	return out
}

// withMsg returns the records whose msg is msg.
func (b *logBuffer) withMsg(tb testing.TB, msg string) []map[string]any {
	tb.Helper()
	var out []map[string]any
	for _, rec := range b.records(tb) {
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// metric returns the value of the sample named exactly series (name and
// labels as /metrics writes them) in the /metrics text body, or -1 when it
// is absent.
func metric(body, series string) float64 {
	for line := range strings.Lines(body) {
		rest, ok := strings.CutPrefix(line, series+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			return -1
		}
		return v
	}
	return -1
}

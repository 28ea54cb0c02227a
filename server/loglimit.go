package server

import (
	"context"
	"log/slog"

	"github.com/corsauthz/corsauthz/internal/limits"
)

// DefaultDecisionLogRate is how many decision log lines a second each
// level (info: rejections; debug: every decision; warn and error: refused
// requests) may write by default, with a burst of as many.
const DefaultDecisionLogRate = limits.DefaultLogRate

// requestLog is the server's limits.RequestLog: every log line a request
// causes goes through it, and the lines it drops are counted in
// corsauthz_decision_logs_suppressed_total.
type requestLog struct {
	*limits.RequestLog
	metrics *Metrics
}

func newRequestLog(logger *slog.Logger, metrics *Metrics, rate float64) *requestLog {
	return &requestLog{
		RequestLog: limits.NewRequestLog(logger, rate, func(level string) { metrics.logSuppressed(level, 1) }),
		metrics:    metrics,
	}
}

func (l *requestLog) enabled(ctx context.Context, level slog.Level) bool {
	return l.Enabled(ctx, level)
}

func (l *requestLog) log(ctx context.Context, level slog.Level, msg string, attrs ...slog.Attr) {
	l.Log(ctx, level, msg, attrs...)
}

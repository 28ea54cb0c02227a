package server

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultDecisionLogRate is how many decision log lines a second each
// level (info: rejections; debug: every decision) may write by default,
// with a burst of as many.
const DefaultDecisionLogRate = 100

// suppressedReportInterval is how often, at most, a line says how many
// decision lines were dropped.
const suppressedReportInterval = time.Second

// logLimiter is a token bucket for log lines: rate lines a second with a
// burst of burst. It counts the lines it refuses and hands the count out
// at once for the first line refused, then at most once per
// suppressedReportInterval, so that a flood of rejected requests writes a
// bounded number of lines, some of which say how many were left out. A
// nil *logLimiter allows everything.
type logLimiter struct {
	rate, burst float64

	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed int
	lastReport time.Time
}

// newLogLimiter returns a limiter of rate lines a second, with a burst of
// one second's worth; rate <= 0 means no limit (nil).
func newLogLimiter(rate float64) *logLimiter {
	if rate <= 0 {
		return nil
	}
	burst := max(rate, 1)
	return &logLimiter{rate: rate, burst: burst, tokens: burst}
}

// allow reports whether a line may be written at now. report is the
// number of lines refused since the last report, when it is time to say
// so (0 otherwise); the caller writes that line whether or not ok.
func (l *logLimiter) allow(now time.Time) (ok bool, report int) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	if l.tokens >= 1 {
		l.tokens--
		ok = true
	} else {
		l.suppressed++
	}
	if l.suppressed > 0 && now.Sub(l.lastReport) >= suppressedReportInterval {
		report, l.suppressed = l.suppressed, 0
		l.lastReport = now
	}
	return ok, report
}

// requestLog writes the log lines a request causes: decisions, refusals,
// malformed messages. Every line goes through a token bucket for its
// level (contract §9: every log line caused by a request is
// rate-limited), so that no flood of requests, accepted or refused, can
// fill a disk; lines beyond the rate are dropped, counted in
// corsauthz_decision_logs_suppressed_total, and at most once a second a
// warning says how many were dropped. Values from the request must be
// cut (limits.Cut) by the caller.
type requestLog struct {
	logger  *slog.Logger
	metrics *Metrics
	limits  map[slog.Level]*logLimiter
}

// requestLogLevels are the levels of request log lines, and their names
// in the suppressed-lines metric.
var requestLogLevels = map[slog.Level]string{
	slog.LevelDebug: "debug",
	slog.LevelInfo:  "info",
	slog.LevelWarn:  "warn",
	slog.LevelError: "error",
}

// newRequestLog limits each level to rate lines a second (burst: as
// many); rate <= 0 means no limit.
func newRequestLog(logger *slog.Logger, metrics *Metrics, rate float64) *requestLog {
	l := &requestLog{logger: logger, metrics: metrics, limits: map[slog.Level]*logLimiter{}}
	for level := range requestLogLevels {
		l.limits[level] = newLogLimiter(rate)
	}
	return l
}

// enabled reports whether a line at level would be written, rate aside:
// callers skip building the line when not.
func (l *requestLog) enabled(ctx context.Context, level slog.Level) bool {
	return l.logger.Enabled(ctx, level)
}

// log writes the line if the rate limit of its level allows it.
func (l *requestLog) log(ctx context.Context, level slog.Level, msg string, attrs ...slog.Attr) {
	if !l.logger.Enabled(ctx, level) {
		return
	}
	ok, dropped := l.limits[level].allow(time.Now())
	name := requestLogLevels[level]
	if dropped > 0 {
		// Not itself limited: at most one a second per level.
		l.logger.LogAttrs(ctx, slog.LevelWarn, "decision log lines suppressed by the rate limit",
			slog.Int("suppressed", dropped), slog.String("log_level", name))
	}
	if !ok {
		l.metrics.logSuppressed(name, 1)
		return
	}
	l.logger.LogAttrs(ctx, level, msg, attrs...)
}

package limits

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultLogRate is how many log lines caused by requests each level may
// write a second by default, with a burst of as many.
const DefaultLogRate = 100

// suppressedReportInterval is how often, at most, a line says how many
// decision lines were dropped.
const suppressedReportInterval = time.Second

// LogLimiter is a token bucket for log lines: rate lines a second with a
// burst of burst. It counts the lines it refuses and hands the count out
// at once for the first line refused, then at most once per
// suppressedReportInterval, so that a flood of rejected requests writes a
// bounded number of lines, some of which say how many were left out. A
// nil *LogLimiter allows everything.
type LogLimiter struct {
	rate, burst float64

	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed int
	lastReport time.Time
}

// NewLogLimiter returns a limiter of rate lines a second, with a burst of
// one second's worth; rate <= 0 means no limit (nil).
func NewLogLimiter(rate float64) *LogLimiter {
	if rate <= 0 {
		return nil
	}
	burst := max(rate, 1)
	return &LogLimiter{rate: rate, burst: burst, tokens: burst}
}

// Allow reports whether a line may be written at now. report is the
// number of lines refused since the last report, when it is time to say
// so (0 otherwise); the caller writes that line whether or not ok.
func (l *LogLimiter) Allow(now time.Time) (ok bool, report int) {
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

// RequestLog writes the log lines requests cause: decisions, refusals,
// malformed messages, refused handshakes. Every line goes through a token
// bucket for its level (docs/operations-and-limits.md: every log line caused by a request is
// rate-limited), so that no flood of requests, accepted or refused, can
// fill a disk; lines beyond the rate are dropped, counted by the
// suppressed callback, and at most once a second a warning says how many
// were dropped. Values from the request must be cut (Cut) by the caller.
// Each front end makes one; the server counts the dropped lines in
// corsauthz_decision_logs_suppressed_total.
type RequestLog struct {
	logger     *slog.Logger
	limits     map[slog.Level]*LogLimiter
	suppressed func(level string)
	summary    string // the message of the line saying how many were dropped
}

// LevelNames are the levels of request log lines, and their names in
// logs and metrics.
var LevelNames = map[slog.Level]string{
	slog.LevelDebug: "debug",
	slog.LevelInfo:  "info",
	slog.LevelWarn:  "warn",
	slog.LevelError: "error",
}

// NewRequestLog limits each level to rate lines a second (burst: as
// many); rate <= 0 means no limit. suppressed (may be nil) is told of
// each line dropped, by level name.
func NewRequestLog(logger *slog.Logger, rate float64, suppressed func(level string)) *RequestLog {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if suppressed == nil {
		suppressed = func(string) {}
	}
	l := &RequestLog{logger: logger, limits: map[slog.Level]*LogLimiter{}, suppressed: suppressed, summary: "decision log lines suppressed by the rate limit"}
	for level := range LevelNames {
		l.limits[level] = NewLogLimiter(rate)
	}
	return l
}

// WithSummary sets the message of the line that says how many lines were
// dropped (by default "decision log lines suppressed by the rate limit"),
// for a log of other lines than decisions; it returns l.
func (l *RequestLog) WithSummary(msg string) *RequestLog {
	l.summary = msg
	return l
}

// Enabled reports whether a line at level would be written, rate aside:
// callers skip building the line when not.
func (l *RequestLog) Enabled(ctx context.Context, level slog.Level) bool {
	return l.logger.Enabled(ctx, level)
}

// Log writes the line if the rate limit of its level allows it. level is
// one of LevelNames'.
func (l *RequestLog) Log(ctx context.Context, level slog.Level, msg string, attrs ...slog.Attr) {
	if !l.logger.Enabled(ctx, level) {
		return
	}
	ok, dropped := l.limits[level].Allow(time.Now())
	name := LevelNames[level]
	if dropped > 0 {
		// Not itself limited: at most one a second per level.
		l.logger.LogAttrs(ctx, slog.LevelWarn, l.summary,
			slog.Int("suppressed", dropped), slog.String("log_level", name))
	}
	if !ok {
		l.suppressed(name)
		return
	}
	l.logger.LogAttrs(ctx, level, msg, attrs...)
}

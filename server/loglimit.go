package server

import (
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

package decision

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/corsauthz/corsauthz/authorizer"
	"github.com/corsauthz/corsauthz/internal/limits"
	"github.com/corsauthz/corsauthz/policy"
)

// Metrics are the decision core's Prometheus metrics: what every front end
// decided, refused and dropped from its log, and the authorizer calls.
// Every label value comes from the configuration or from a fixed set
// (decision kinds, front ends, failure kinds), never from a request: a
// request can name an unknown policy or send any Origin, and neither may
// become a label.
//
// A nil *Metrics is valid and records nothing.
type Metrics struct {
	decisions   *prometheus.CounterVec
	checkErrors *prometheus.CounterVec
	requests    *prometheus.CounterVec
	// frontEndCounters are the children of requests, made up front: their
	// labels are a fixed set (front ends times outcomes).
	frontEndCounters map[frontEndKey]prometheus.Counter
	duration         prometheus.Histogram
	logsSuppressed   *prometheus.CounterVec
	malformed        prometheus.Counter
	authorizers      *authorizer.Metrics

	// decisionCounters caches the children of decisions so the hot path
	// does one map lookup and no allocation. It is copied on write; its
	// keys are bounded by the configured policy names times the kinds.
	decisionCounters atomic.Pointer[map[decisionKey]prometheus.Counter]
	mu               sync.Mutex // serialises writers of decisionCounters
}

type frontEndKey struct {
	frontEnd FrontEnd
	outcome  string
}

type decisionKey struct {
	policy string
	kind   policy.Kind
}

// DurationBuckets are the buckets of corsauthz_check_duration_seconds, from
// 10µs: a decision takes microseconds, so the default buckets (from 5ms)
// would put every observation in the first one.
var DurationBuckets = []float64{
	10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6,
	1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1,
}

// NewMetrics creates the metrics and registers them with reg; a nil reg
// leaves them unregistered (as in tests and benchmarks). Registering twice
// with the same registry panics, as with any Prometheus collector.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		authorizers: authorizer.NewMetrics(reg),
		decisions: f.NewCounterVec(prometheus.CounterOpts{
			Name: "corsauthz_decisions_total",
			Help: "CORS decisions made, by policy (empty when none applied) and kind (not_cors, preflight_allowed, preflight_rejected, actual_allowed, actual_disallowed). Report-only policies count what would have been decided.",
		}, []string{"policy", "kind"}),
		checkErrors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "corsauthz_check_errors_total",
			Help: "Check, Decide and HTTP authorization requests answered with an error instead of a decision, by gRPC code (for HTTP: 400 and 431 are InvalidArgument, 503 FailedPrecondition or Unavailable) (InvalidArgument: unreadable request; FailedPrecondition: cors_policy names no configured policy; Unavailable: no configuration loaded).",
		}, []string{"code"}),
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "corsauthz_front_end_requests_total",
			Help: "Requests answered, by front end (ext_authz, decision_api, http, middleware) and outcome: the decision kind, or the error code (InvalidArgument, FailedPrecondition, Unavailable, Internal) of a request that was not decided.",
		}, []string{"front_end", "outcome"}),
		duration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "corsauthz_check_duration_seconds",
			Help:    "Time spent deciding a request, authorizer call included, from the decoded request to the outcome (network and protobuf decoding excluded).",
			Buckets: DurationBuckets,
		}),
		logsSuppressed: f.NewCounterVec(prometheus.CounterOpts{
			Name: "corsauthz_decision_logs_suppressed_total",
			Help: "Log lines caused by requests dropped by the rate limit, by the level they would have had (info: rejections, debug: every decision, warn and error: refused requests).",
		}, []string{"level"}),
		malformed: f.NewCounter(prometheus.CounterOpts{
			Name: "corsauthz_malformed_messages_total",
			Help: "gRPC request messages that do not parse as the method's message (refused with Internal, as by the standard codec).",
		}),
	}
	m.decisionCounters.Store(&map[decisionKey]prometheus.Counter{})
	m.frontEndCounters = map[frontEndKey]prometheus.Counter{}
	for _, fe := range frontEnds {
		for k := policy.KindNotCORS; k <= policy.KindActualDisallowed; k++ {
			m.frontEndCounters[frontEndKey{fe, k.String()}] = m.requests.WithLabelValues(string(fe), k.String())
		}
		for k := Unreadable; k <= Internal; k++ {
			m.frontEndCounters[frontEndKey{fe, k.String()}] = m.requests.WithLabelValues(string(fe), k.String())
		}
	}
	for _, level := range limits.LevelNames {
		m.logsSuppressed.WithLabelValues(level)
	}
	return m
}

// Authorizers are the metrics of the authorizer calls, for the pool (nil
// for a nil m).
func (m *Metrics) Authorizers() *authorizer.Metrics {
	if m == nil {
		return nil
	}
	return m.authorizers
}

// ConfigChanged deletes the decision series of policies e does not have,
// so that reloads that rename policies do not grow /metrics for ever. A
// decision in flight on the previous engine may still recreate one; the
// next reload drops it.
func (m *Metrics) ConfigChanged(e *policy.Engine) {
	if m == nil || e == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	keep := map[string]bool{"": true} // decisions without a policy
	for _, name := range e.PolicyNames() {
		keep[name] = true
	}
	old := *m.decisionCounters.Load()
	next := make(map[decisionKey]prometheus.Counter, len(old))
	for key, c := range old {
		if keep[key.policy] {
			next[key] = c
			continue
		}
		m.decisions.DeleteLabelValues(key.policy, key.kind.String())
	}
	m.decisionCounters.Store(&next)
}

// logSuppressed counts request log lines dropped at level.
func (m *Metrics) logSuppressed(level string) {
	if m == nil {
		return
	}
	m.logsSuppressed.WithLabelValues(level).Inc()
}

// malformedMessage counts a request message that does not parse.
func (m *Metrics) malformedMessage() {
	if m == nil {
		return
	}
	m.malformed.Inc()
}

// decision counts one decision of fe and how long it took.
func (m *Metrics) decision(fe FrontEnd, d *policy.Decision, start time.Time) {
	if m == nil {
		return
	}
	m.decisionCounter(d.Policy, d.Kind).Inc()
	m.frontEndRequest(fe, d.Kind.String())
	m.duration.Observe(time.Since(start).Seconds())
}

func (m *Metrics) decisionCounter(name string, kind policy.Kind) prometheus.Counter {
	key := decisionKey{name, kind}
	if c, ok := (*m.decisionCounters.Load())[key]; ok {
		return c
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.decisionCounters.Load()
	if c, ok := old[key]; ok {
		return c
	}
	c := m.decisions.WithLabelValues(name, kind.String())
	next := maps.Clone(old)
	next[key] = c
	m.decisionCounters.Store(&next)
	return c
}

// frontEndRequest counts one request of fe with outcome.
func (m *Metrics) frontEndRequest(fe FrontEnd, outcome string) {
	if c, ok := m.frontEndCounters[frontEndKey{fe, outcome}]; ok {
		c.Inc()
	}
}

// failure counts one request of fe that could not be decided.
func (m *Metrics) failure(fe FrontEnd, k FailureKind, start time.Time) {
	if m == nil {
		return
	}
	m.checkErrors.WithLabelValues(k.String()).Inc()
	m.frontEndRequest(fe, k.String())
	m.duration.Observe(time.Since(start).Seconds())
}

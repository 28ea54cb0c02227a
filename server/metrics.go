package server

import (
	"maps"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"google.golang.org/grpc/codes"

	"github.com/corsauthz/corsauthz/policy"
)

// Metrics are the service's Prometheus metrics. Every label value comes
// from the configuration or from a fixed set (decision kinds, gRPC codes),
// never from a request: a request can name an unknown policy or send any
// Origin, and neither may become a label.
//
// A nil *Metrics is valid and records nothing.
type Metrics struct {
	decisions   *prometheus.CounterVec
	checkErrors *prometheus.CounterVec
	duration    prometheus.Histogram
	configInfo  *prometheus.GaugeVec
	buildInfo   *prometheus.GaugeVec

	// decisionCounters caches the children of decisions so the hot path
	// does one map lookup and no allocation. It is copied on write; its
	// keys are bounded by the configured policy names times the kinds.
	decisionCounters atomic.Pointer[map[decisionKey]prometheus.Counter]
	mu               sync.Mutex // serialises writers of decisionCounters and configInfo
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
	1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3,
}

// NewMetrics creates the metrics and registers them with reg; a nil reg
// leaves them unregistered (as in tests and benchmarks). Registering twice
// with the same registry panics, as with any Prometheus collector.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		decisions: f.NewCounterVec(prometheus.CounterOpts{
			Name: "corsauthz_decisions_total",
			Help: "CORS decisions made, by policy (empty when none applied) and kind (not_cors, preflight_allowed, preflight_rejected, actual_allowed, actual_disallowed). Report-only policies count what would have been decided.",
		}, []string{"policy", "kind"}),
		checkErrors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "corsauthz_check_errors_total",
			Help: "Check calls answered with a non-OK gRPC status instead of a decision, by gRPC code (InvalidArgument: unreadable request; FailedPrecondition: cors_policy names no configured policy; Unavailable: no configuration loaded).",
		}, []string{"code"}),
		duration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "corsauthz_check_duration_seconds",
			Help:    "Time spent in Check, from the decoded request to the response (network and protobuf decoding excluded).",
			Buckets: DurationBuckets,
		}),
		configInfo: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "corsauthz_config_info",
			Help: "The configuration in force: 1 for the SHA-256 hash of its source.",
		}, []string{"hash"}),
		buildInfo: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "corsauthz_build_info",
			Help: "Build information: always 1.",
		}, []string{"version", "goversion"}),
	}
	m.decisionCounters.Store(&map[decisionKey]prometheus.Counter{})
	m.buildInfo.WithLabelValues(buildVersion(), runtime.Version()).Set(1)
	return m
}

// buildVersion is the main module's version as the Go toolchain recorded
// it: a tag for `go install …@vX`, "(devel)" for a local build.
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "unknown"
}

// SetConfig records e as the configuration in force (nil: none).
func (m *Metrics) SetConfig(e *policy.Engine) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.configInfo.Reset()
	if e != nil {
		m.configInfo.WithLabelValues(e.Hash()).Set(1)
	}
}

// decision counts one decision and how long it took.
func (m *Metrics) decision(d *policy.Decision, start time.Time) {
	if m == nil {
		return
	}
	m.decisionCounter(d.Policy, d.Kind).Inc()
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

// checkError counts one Check answered with a gRPC error.
func (m *Metrics) checkError(code codes.Code, start time.Time) {
	if m == nil {
		return
	}
	m.checkErrors.WithLabelValues(code.String()).Inc()
	m.duration.Observe(time.Since(start).Seconds())
}

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

	"github.com/corsauthz/corsauthz/authorizer"
	"github.com/corsauthz/corsauthz/internal/limits"
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
	requests    *prometheus.CounterVec
	// frontEndCounters are the children of requests, made up front: their
	// labels are a fixed set (front ends times outcomes).
	frontEndCounters map[frontEndKey]prometheus.Counter
	duration         prometheus.Histogram
	configInfo       *prometheus.GaugeVec
	buildInfo        *prometheus.GaugeVec

	reloads           *prometheus.CounterVec
	reloadSuccessful  prometheus.Gauge
	reloadSuccessTime prometheus.Gauge
	logsSuppressed    *prometheus.CounterVec
	tlsReloads        *prometheus.CounterVec
	tlsNotAfter       prometheus.Gauge
	malformed         prometheus.Counter
	tlsHandshakeFails prometheus.Counter
	authorizers       *authorizer.Metrics // authorize.go

	// decisionCounters caches the children of decisions so the hot path
	// does one map lookup and no allocation. It is copied on write; its
	// keys are bounded by the configured policy names times the kinds.
	decisionCounters atomic.Pointer[map[decisionKey]prometheus.Counter]
	mu               sync.Mutex // serialises writers of decisionCounters and configInfo
}

// Front ends, the values of the front_end label.
const (
	FrontEndExtAuthz    = "ext_authz"    // envoy.service.auth.v3.Authorization/Check
	FrontEndDecisionAPI = "decision_api" // corsauthz.v1.DecisionService/Decide
	FrontEndHTTP        = "http"         // the HTTP authorization listener (httpauthz)
)

var frontEnds = []string{FrontEndExtAuthz, FrontEndDecisionAPI, FrontEndHTTP}

// errorCodes are the codes a front end's request can fail with: the
// HTTP listener's 400 and 431 count as InvalidArgument, its 503 as
// FailedPrecondition (an unknown X-Corsauthz-Policy) or Unavailable.
var errorCodes = []codes.Code{codes.InvalidArgument, codes.FailedPrecondition, codes.Unavailable, codes.Internal}

type frontEndKey struct {
	frontEnd, outcome string
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
			Help: "Requests answered, by front end (ext_authz, decision_api, http) and outcome: the decision kind, or the error code (InvalidArgument, FailedPrecondition, Unavailable, Internal) of a request that was not decided.",
		}, []string{"front_end", "outcome"}),
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
		reloads: f.NewCounterVec(prometheus.CounterOpts{
			Name: "corsauthz_config_reloads_total",
			Help: "Configuration reloads attempted after the first load, by result (success, failure). Content identical to the configuration in force is not a reload.",
		}, []string{"result"}),
		reloadSuccessful: f.NewGauge(prometheus.GaugeOpts{
			Name: "corsauthz_config_last_reload_successful",
			Help: "1 when the last configuration load succeeded, 0 when it failed and the previous configuration stayed in force.",
		}),
		reloadSuccessTime: f.NewGauge(prometheus.GaugeOpts{
			Name: "corsauthz_config_last_reload_success_timestamp_seconds",
			Help: "When the configuration in force was loaded, in seconds since the Unix epoch.",
		}),
		logsSuppressed: f.NewCounterVec(prometheus.CounterOpts{
			Name: "corsauthz_decision_logs_suppressed_total",
			Help: "Log lines caused by requests dropped by the rate limit, by the level they would have had (info: rejections, debug: every decision, warn and error: refused requests).",
		}, []string{"level"}),
		tlsReloads: f.NewCounterVec(prometheus.CounterOpts{
			Name: "corsauthz_tls_certificate_reloads_total",
			Help: "Reloads of the gRPC listener's certificate files after they changed, by result (success, failure: the previous certificate stays in use).",
		}, []string{"result"}),
		tlsNotAfter: f.NewGauge(prometheus.GaugeOpts{
			Name: "corsauthz_tls_certificate_not_after_timestamp_seconds",
			Help: "When the gRPC listener's certificate in use expires, in seconds since the Unix epoch (0 without TLS).",
		}),
		malformed: f.NewCounter(prometheus.CounterOpts{
			Name: "corsauthz_malformed_messages_total",
			Help: "gRPC request messages that do not parse as the method's message (refused with Internal, as by the standard codec).",
		}),
		tlsHandshakeFails: f.NewCounter(prometheus.CounterOpts{
			Name: "corsauthz_tls_handshake_failures_total",
			Help: "TLS handshakes on the gRPC and HTTP listeners that failed or were refused (no or untrusted client certificate, wrong protocol, expired certificate).",
		}),
	}
	m.decisionCounters.Store(&map[decisionKey]prometheus.Counter{})
	m.frontEndCounters = map[frontEndKey]prometheus.Counter{}
	for _, fe := range frontEnds {
		for k := policy.KindNotCORS; k <= policy.KindActualDisallowed; k++ {
			m.frontEndCounters[frontEndKey{fe, k.String()}] = m.requests.WithLabelValues(fe, k.String())
		}
		for _, c := range errorCodes {
			m.frontEndCounters[frontEndKey{fe, c.String()}] = m.requests.WithLabelValues(fe, c.String())
		}
	}
	m.buildInfo.WithLabelValues(buildVersion(), runtime.Version()).Set(1)
	for _, result := range []string{resultSuccess, resultFailure} {
		m.reloads.WithLabelValues(result)
		m.tlsReloads.WithLabelValues(result)
	}
	for _, level := range limits.LevelNames {
		m.logsSuppressed.WithLabelValues(level)
	}
	return m
}

// Values of the result label.
const (
	resultSuccess = "success"
	resultFailure = "failure"
)

// setVersion replaces the version label of corsauthz_build_info.
func (m *Metrics) setVersion(version string) {
	if m == nil || version == "" {
		return
	}
	m.buildInfo.Reset()
	m.buildInfo.WithLabelValues(version, runtime.Version()).Set(1)
}

// buildVersion is the main module's version as the Go toolchain recorded
// it: a tag for `go install …@vX`, "(devel)" for a local build.
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "unknown"
}

// SetConfig records e as the configuration in force (nil: none), loaded
// successfully now.
func (m *Metrics) SetConfig(e *policy.Engine) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.configInfo.Reset()
	if e != nil {
		m.dropRemovedPolicies(e)
		m.configInfo.WithLabelValues(e.Hash()).Set(1)
		m.reloadSuccessful.Set(1)
		m.reloadSuccessTime.Set(float64(time.Now().UnixNano()) / 1e9)
	}
}

// dropRemovedPolicies deletes the decision series of policies e does not
// have, so that reloads that rename policies do not grow /metrics for
// ever. A decision in flight on the previous engine may still recreate
// one; the next reload drops it. Called with m.mu held.
func (m *Metrics) dropRemovedPolicies(e *policy.Engine) {
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

// reloaded counts a reload: on success, e is the configuration now in
// force; on failure, the one in force is unchanged.
func (m *Metrics) reloaded(e *policy.Engine, ok bool) {
	if m == nil {
		return
	}
	// The state first, then the count: a scrape that sees the new count
	// sees the state that goes with it.
	if !ok {
		m.reloadSuccessful.Set(0)
		m.reloads.WithLabelValues(resultFailure).Inc()
		return
	}
	m.SetConfig(e)
	m.reloads.WithLabelValues(resultSuccess).Inc()
}

// configMatches records that the file holds the configuration in force
// again, after a failed reload: the last load is no longer a failure.
func (m *Metrics) configMatches() {
	if m == nil {
		return
	}
	m.reloadSuccessful.Set(1)
}

// logSuppressed counts decision log lines dropped at level.
func (m *Metrics) logSuppressed(level string, n int) {
	if m == nil || n == 0 {
		return
	}
	m.logsSuppressed.WithLabelValues(level).Add(float64(n))
}

// tlsReloaded counts a certificate reload and, on success, records when
// the certificate now in use expires.
func (m *Metrics) tlsReloaded(ok bool, notAfter time.Time) {
	if m == nil {
		return
	}
	if !ok {
		m.tlsReloads.WithLabelValues(resultFailure).Inc()
		return
	}
	m.tlsLoaded(notAfter)
	m.tlsReloads.WithLabelValues(resultSuccess).Inc()
}

// tlsLoaded records when the certificate in use expires.
func (m *Metrics) tlsLoaded(notAfter time.Time) {
	if m == nil {
		return
	}
	m.tlsNotAfter.Set(float64(notAfter.Unix()))
}

// malformedMessage counts a request message that does not parse.
func (m *Metrics) malformedMessage() {
	if m == nil {
		return
	}
	m.malformed.Inc()
}

// tlsHandshakeFailed counts a failed or refused TLS handshake.
func (m *Metrics) tlsHandshakeFailed() {
	if m == nil {
		return
	}
	m.tlsHandshakeFails.Inc()
}

// decision counts one decision of frontEnd and how long it took.
func (m *Metrics) decision(frontEnd string, d *policy.Decision, start time.Time) {
	if m == nil {
		return
	}
	m.decisionCounter(d.Policy, d.Kind).Inc()
	m.frontEndRequest(frontEnd, d.Kind.String())
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

// frontEndRequest counts one request of frontEnd with outcome.
func (m *Metrics) frontEndRequest(frontEnd, outcome string) {
	if c, ok := m.frontEndCounters[frontEndKey{frontEnd, outcome}]; ok {
		c.Inc()
	}
}

// checkError counts one request of frontEnd answered with an error.
func (m *Metrics) checkError(frontEnd string, code codes.Code, start time.Time) {
	if m == nil {
		return
	}
	m.checkErrors.WithLabelValues(code.String()).Inc()
	m.frontEndRequest(frontEnd, code.String())
	m.duration.Observe(time.Since(start).Seconds())
}

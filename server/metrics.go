package server

import (
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/corsauthz/corsauthz/decision"
	"github.com/corsauthz/corsauthz/policy"
)

// Metrics are the process's Prometheus metrics: configuration reloads,
// build, TLS. What the front ends decide is counted by the decision core
// (decision.Metrics), on the same registry.
//
// A nil *Metrics is valid and records nothing.
type Metrics struct {
	configInfo        *prometheus.GaugeVec
	buildInfo         *prometheus.GaugeVec
	reloads           *prometheus.CounterVec
	reloadSuccessful  prometheus.Gauge
	reloadSuccessTime prometheus.Gauge
	tlsReloads        *prometheus.CounterVec
	tlsNotAfter       prometheus.Gauge
	tlsHandshakeFails prometheus.Counter
	grpcConns         prometheus.Gauge
	grpcConnsRefused  prometheus.Counter
	httpConns         prometheus.Gauge
	httpConnsRefused  prometheus.Counter

	decisions *decision.Metrics
	mu        sync.Mutex // serialises writers of configInfo
}

// NewMetrics creates the metrics, the decision core's included, and
// registers them with reg; a nil reg leaves them unregistered (as in tests
// and benchmarks). Registering twice with the same registry panics, as
// with any Prometheus collector.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		decisions: decision.NewMetrics(reg),
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
		tlsReloads: f.NewCounterVec(prometheus.CounterOpts{
			Name: "corsauthz_tls_certificate_reloads_total",
			Help: "Reloads of the gRPC listener's certificate files after they changed, by result (success, failure: the previous certificate stays in use).",
		}, []string{"result"}),
		tlsNotAfter: f.NewGauge(prometheus.GaugeOpts{
			Name: "corsauthz_tls_certificate_not_after_timestamp_seconds",
			Help: "When the gRPC listener's certificate in use expires, in seconds since the Unix epoch (0 without TLS).",
		}),
		tlsHandshakeFails: f.NewCounter(prometheus.CounterOpts{
			Name: "corsauthz_tls_handshake_failures_total",
			Help: "TLS handshakes on the gRPC and HTTP listeners that failed or were refused (no or untrusted client certificate, wrong protocol, expired certificate).",
		}),
		grpcConns: f.NewGauge(prometheus.GaugeOpts{
			Name: "corsauthz_grpc_connections",
			Help: "Connections open on the gRPC listener, idle ones included.",
		}),
		grpcConnsRefused: f.NewCounter(prometheus.CounterOpts{
			Name: "corsauthz_grpc_connections_refused_total",
			Help: "Connections to the gRPC listener closed at once because --grpc-max-connections were open.",
		}),
		httpConns: f.NewGauge(prometheus.GaugeOpts{
			Name: "corsauthz_http_connections",
			Help: "Connections open on the HTTP authorization listener, idle keep-alive ones included.",
		}),
		httpConnsRefused: f.NewCounter(prometheus.CounterOpts{
			Name: "corsauthz_http_connections_refused_total",
			Help: "Connections to the HTTP authorization listener refused because --http-max-connections were open (answered 503, or closed when too many were being refused at once).",
		}),
	}
	m.buildInfo.WithLabelValues(buildVersion(), runtime.Version()).Set(1)
	for _, result := range []string{resultSuccess, resultFailure} {
		m.reloads.WithLabelValues(result)
		m.tlsReloads.WithLabelValues(result)
	}
	return m
}

// Decisions are the decision core's metrics (nil for a nil m).
func (m *Metrics) Decisions() *decision.Metrics {
	if m == nil {
		return nil
	}
	return m.decisions
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
		m.decisions.ConfigChanged(e)
		m.configInfo.WithLabelValues(e.Hash()).Set(1)
		m.reloadSuccessful.Set(1)
		m.reloadSuccessTime.Set(float64(time.Now().UnixNano()) / 1e9)
	}
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

// tlsHandshakeFailed counts a failed or refused TLS handshake.
func (m *Metrics) tlsHandshakeFailed() {
	if m == nil {
		return
	}
	m.tlsHandshakeFails.Inc()
}

func (m *Metrics) grpcConnectionRefused() {
	if m == nil {
		return
	}
	m.grpcConnsRefused.Inc()
}

func (m *Metrics) grpcConnections(delta float64) {
	if m == nil {
		return
	}
	m.grpcConns.Add(delta)
}

func (m *Metrics) httpConnectionRefused() {
	if m == nil {
		return
	}
	m.httpConnsRefused.Inc()
}

func (m *Metrics) httpConnections(delta float64) {
	if m == nil {
		return
	}
	m.httpConns.Add(delta)
}

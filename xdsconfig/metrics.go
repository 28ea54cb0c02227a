package xdsconfig

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// publisherMetrics are a Publisher's: what it sent and what gateways said.
type publisherMetrics struct {
	sent, acked, nacked prometheus.Counter
	ignored             prometheus.Counter
	refusedRequests     prometheus.Counter
	streamsRefused      prometheus.Counter
	logsSuppressed      *prometheus.CounterVec
	streams             prometheus.Gauge
	info                *prometheus.GaugeVec
	mu                  sync.Mutex
	current             string
}

func newPublisherMetrics(reg prometheus.Registerer) *publisherMetrics {
	m := &publisherMetrics{
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "corsauthz_xds_versions_sent_total",
			Help: "Configuration versions sent to gateways over xDS (one per stream and version).",
		}),
		acked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "corsauthz_xds_versions_acked_total",
			Help: "Configuration versions gateways accepted (xDS ACK), once per response.",
		}),
		nacked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "corsauthz_xds_versions_nacked_total",
			Help: "Configuration versions gateways refused (xDS NACK), once per response; they keep their last good one.",
		}),
		ignored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "corsauthz_xds_requests_ignored_total",
			Help: "xDS requests that answer no response or one already answered (an ACK or NACK repeated, or naming an older response): nothing is resent.",
		}),
		refusedRequests: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "corsauthz_xds_requests_refused_total",
			Help: "xDS requests refused, ending their stream: another resource type than corsauthz's.",
		}),
		streamsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "corsauthz_xds_streams_refused_total",
			Help: "xDS streams refused with RESOURCE_EXHAUSTED because --max-xds-streams were open; the gateway retries with backoff.",
		}),
		logsSuppressed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "corsauthz_xds_logs_suppressed_total",
			Help: "Log lines xDS clients caused (NACKs, refused requests and streams) dropped by the rate limit, by level.",
		}, []string{"level"}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "corsauthz_xds_streams",
			Help: "Open xDS streams: gateways subscribed to the configuration.",
		}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "corsauthz_xds_config_version_info",
			Help: "The configuration version served over xDS (value 1).",
		}, []string{"version"}),
	}
	if reg != nil {
		reg.MustRegister(m.sent, m.acked, m.nacked, m.ignored, m.refusedRequests, m.streamsRefused, m.logsSuppressed, m.streams, m.info)
	}
	return m
}

func (m *publisherMetrics) logSuppressed(level string) {
	m.logsSuppressed.WithLabelValues(level).Inc()
}

func (m *publisherMetrics) version(v string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.current != "" {
		m.info.DeleteLabelValues(m.current)
	}
	m.current = v
	m.info.WithLabelValues(v).Set(1)
}

// subscriptionMetrics are a Subscription's, labelled with the address it
// subscribes to so that several can share a registry.
type subscriptionMetrics struct {
	acked, nacked      prometheus.Counter
	tooLarge           prometheus.Counter
	compiles           prometheus.Counter
	compileSeconds     prometheus.Counter
	compileWaits       prometheus.Counter
	compileWaitSeconds prometheus.Counter
	connected          prometheus.Gauge
	lastUpdate         prometheus.Gauge
	staleness          prometheus.GaugeFunc
}

func newSubscriptionMetrics(reg prometheus.Registerer, address string, staleness func() float64) *subscriptionMetrics {
	labels := prometheus.Labels{"address": address}
	m := &subscriptionMetrics{
		acked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "corsauthz_gateway_xds_updates_acked_total", ConstLabels: labels,
			Help: "Configuration versions received over xDS, compiled and put in force (ACK).",
		}),
		nacked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "corsauthz_gateway_xds_updates_nacked_total", ConstLabels: labels,
			Help: "Configuration versions received over xDS that did not compile (NACK); the last good one stays.",
		}),
		tooLarge: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "corsauthz_gateway_xds_updates_too_large_total", ConstLabels: labels,
			Help: "Configuration versions NACKed, undecoded, for being larger than MaxConfigBytes (the default of --max-config-bytes); also counted as NACKed.",
		}),
		compiles: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "corsauthz_gateway_xds_compiles_total", ConstLabels: labels,
			Help: "Configuration versions received over xDS and compiled (a version already in force is not).",
		}),
		compileSeconds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "corsauthz_gateway_xds_compile_seconds_total", ConstLabels: labels,
			Help: "Time spent compiling configuration versions received over xDS.",
		}),
		compileWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "corsauthz_gateway_xds_compile_waits_total", ConstLabels: labels,
			Help: "Times a version waited before being compiled because versions came faster than the compile budget (CompileBurst, CompileShare) allows.",
		}),
		compileWaitSeconds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "corsauthz_gateway_xds_compile_wait_seconds_total", ConstLabels: labels,
			Help: "Time versions waited for the compile budget.",
		}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "corsauthz_gateway_xds_connected", ConstLabels: labels,
			Help: "1 while the xDS stream to corsauthz is up, 0 otherwise.",
		}),
		lastUpdate: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "corsauthz_gateway_xds_last_update_timestamp_seconds", ConstLabels: labels,
			Help: "When the configuration in force was received (Unix time; 0: none yet).",
		}),
		staleness: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "corsauthz_gateway_xds_staleness_seconds", ConstLabels: labels,
			Help: "Seconds since the configuration in force was last known to be current: 0 while the stream is up, else the time since it went down (or since start, with no configuration yet).",
		}, staleness),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.acked, m.nacked, m.tooLarge, m.compiles, m.compileSeconds, m.compileWaits, m.compileWaitSeconds, m.connected, m.lastUpdate, m.staleness} {
			if err := reg.Register(c); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
				panic(err) // a programming error: a metric of another shape under this name
			}
		}
	}
	return m
}

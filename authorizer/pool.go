package authorizer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/corsauthz/corsauthz/policy"
)

// Pool holds one Client per configured authorizer, counts and logs their
// calls. Sync follows a new configuration: an authorizer whose
// configuration is unchanged keeps its client, and so its connections; a
// removed or changed one is closed once the calls that may still use it
// have had their timeout.
type Pool struct {
	clients atomic.Pointer[map[string]Client]
	logger  *slog.Logger
	metrics *Metrics
	errLogs logLimiter

	mu      sync.Mutex // serialises Sync and Close
	retired map[Client]*time.Timer
	closed  bool
}

// ErrUnknown is the error for a name the pool holds no client for.
var ErrUnknown = errors.New("no such authorizer")

// DefaultErrorLogRate is how many error lines a second the pool writes;
// the lines past it are dropped, and the next line says how many.
const DefaultErrorLogRate = 10

// NewPool returns an empty pool logging to logger (nil: nowhere) and
// counting in metrics (nil: not counted).
func NewPool(logger *slog.Logger, metrics *Metrics) *Pool {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Pool{logger: logger, metrics: metrics, retired: map[Client]*time.Timer{}}
	p.errLogs.perSecond = DefaultErrorLogRate
	p.clients.Store(&map[string]Client{})
	return p
}

// Sync makes the pool hold a client for each of as and no other. It keeps
// every client whose configuration is unchanged, builds the others, and
// closes the clients it replaced after the longest timeout (calls in
// flight finish with them). An error (a client that cannot be built)
// changes nothing.
func (p *Pool) Sync(as []policy.Authorizer) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("authorizer: pool closed")
	}
	old := *p.clients.Load()
	next := make(map[string]Client, len(as))
	var built []Client
	for i := range as {
		a := as[i]
		if c, ok := old[a.Name]; ok && c.Config().Equal(&a) {
			next[a.Name] = c
			continue
		}
		c, err := New(a)
		if err != nil {
			for _, b := range built {
				b.Close()
			}
			return err
		}
		built = append(built, c)
		next[a.Name] = c
	}
	p.clients.Store(&next)
	for name, c := range old {
		if next[name] != c {
			p.retire(c)
		}
	}
	return nil
}

// retire closes c once the calls that may use it have timed out.
func (p *Pool) retire(c Client) {
	grace := c.Config().Timeout() + time.Second
	p.retired[c] = time.AfterFunc(grace, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if _, ok := p.retired[c]; ok {
			delete(p.retired, c)
			c.Close()
		}
	})
}

// Close closes every client now, retired ones included.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for c, t := range p.retired {
		t.Stop()
		c.Close()
	}
	clear(p.retired)
	for _, c := range *p.clients.Load() {
		c.Close()
	}
	p.clients.Store(&map[string]Client{})
}

// Ask asks the authorizer named name about r, counts the call by result
// with its latency, and logs a failure (rate-limited).
func (p *Pool) Ask(ctx context.Context, name string, r *Request) *Answer {
	start := time.Now()
	c := (*p.clients.Load())[name]
	var a *Answer
	if c == nil {
		a = failed(fmt.Errorf("authorizer %q: %w", name, ErrUnknown))
	} else {
		a = c.Ask(ctx, r)
	}
	p.metrics.observe(name, a.Result, time.Since(start))
	if a.Result == Error {
		p.logError(ctx, name, a.Err)
	}
	return a
}

func (p *Pool) logError(ctx context.Context, name string, err error) {
	if !p.logger.Enabled(ctx, slog.LevelError) {
		return
	}
	ok, dropped := p.errLogs.allow(time.Now())
	if !ok {
		return
	}
	msg := "no error"
	if err != nil {
		msg = err.Error()
		if len(msg) > maxLoggedLen {
			msg = msg[:maxLoggedLen] + "…"
		}
	}
	attrs := []slog.Attr{slog.String("authorizer", name), slog.String("error", msg)}
	if dropped > 0 {
		attrs = append(attrs, slog.Int("suppressed_before", dropped))
	}
	p.logger.LogAttrs(ctx, slog.LevelError, "authorizer failed", attrs...)
}

const maxLoggedLen = 256

// logLimiter lets perSecond lines through in each second and counts the
// others.
type logLimiter struct {
	perSecond int
	mu        sync.Mutex
	second    int64
	n         int
	dropped   int
}

// allow reports whether a line may be written now, and how many were
// dropped since the last one written.
func (l *logLimiter) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := now.Unix(); s != l.second {
		l.second, l.n = s, 0
	}
	if l.n >= l.perSecond {
		l.dropped++
		return false, 0
	}
	l.n++
	d := l.dropped
	l.dropped = 0
	return true, d
}

// Metrics are the per-authorizer metrics.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// children caches each authorizer's counters and histogram, so that a
	// call does not hash its labels; bounded by the configured names.
	children sync.Map // name → *authorizerMetrics
}

type authorizerMetrics struct {
	results  [len(resultNames)]prometheus.Counter
	duration prometheus.Observer
}

// NewMetrics registers the authorizer metrics on reg (nil: nowhere):
// corsauthz_authorizer_requests_total{authorizer, result} and
// corsauthz_authorizer_request_duration_seconds{authorizer}.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "corsauthz_authorizer_requests_total",
			Help: "Calls to each authorizer, by result: allow, deny or error (unreachable, timeout, malformed answer).",
		}, []string{"authorizer", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "corsauthz_authorizer_request_duration_seconds",
			Help:    "Latency of the calls to each authorizer, whatever their result.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"authorizer"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration)
	}
	return m
}

func (m *Metrics) observe(name string, r Result, d time.Duration) {
	if m == nil {
		return
	}
	c, ok := m.children.Load(name)
	if !ok {
		am := &authorizerMetrics{duration: m.duration.WithLabelValues(name)}
		for i, rn := range resultNames {
			am.results[i] = m.requests.WithLabelValues(name, rn)
		}
		c, _ = m.children.LoadOrStore(name, am)
	}
	am := c.(*authorizerMetrics)
	if int(r) < len(am.results) {
		am.results[r].Inc()
	}
	am.duration.Observe(d.Seconds())
}

// Client returns the client for name, or nil.
func (p *Pool) Client(name string) Client { return (*p.clients.Load())[name] }

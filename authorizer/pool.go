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

	"github.com/corsauthz/corsauthz/internal/limits"
	"github.com/corsauthz/corsauthz/policy"
)

// Pool holds one Client per configured authorizer, counts and logs their
// calls, and bounds them. Sync follows a new configuration: an authorizer
// whose configuration is unchanged keeps its client, and so its
// connections; a removed or changed one is closed once the calls that may
// still use it have had their timeout.
//
// The bound: at most MaxPending calls waiting or in flight in the whole
// pool, and for each authorizer at most its share, MaxPending divided by
// the number of authorizers (each client also keeps at most MaxInFlight
// on the wire, the others waiting their turn). A call past either is
// answered Overloaded at once. The shares add up to the global bound, so
// however many authorizers hang, each of the others keeps its whole share
// and its requests go on being answered; and one authorizer alone may use
// every slot. (A single global bound would let one hanging authorizer
// starve the others; a share that others could borrow would too, until
// their timeouts.)
type Pool struct {
	clients atomic.Pointer[map[string]*entry]
	logger  *slog.Logger
	metrics *Metrics
	errLogs logLimiter
	// pending counts the calls waiting or in flight, all authorizers
	// together (retired clients' included).
	pending atomic.Int64

	mu      sync.Mutex // serialises Sync and Close
	retired map[Client]*time.Timer
	closed  bool
}

// entry is an authorizer's client with its share of the pool's calls.
type entry struct {
	client  Client
	pending atomic.Int64
	share   atomic.Int64 // MaxPending / number of authorizers
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
	p.clients.Store(&map[string]*entry{})
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
	next := make(map[string]*entry, len(as))
	var built []Client
	for i := range as {
		a := as[i]
		if e, ok := old[a.Name]; ok && e.client.Config().Equal(&a) {
			next[a.Name] = e
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
		next[a.Name] = &entry{client: c}
	}
	share := int64(MaxPending)
	if len(next) > 0 {
		share = max(int64(MaxPending/len(next)), 1)
	}
	for _, e := range next {
		e.share.Store(share)
	}
	p.clients.Store(&next)
	for name, e := range old {
		if next[name] != e {
			p.retire(e.client)
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
	for _, e := range *p.clients.Load() {
		e.client.Close()
	}
	p.clients.Store(&map[string]*entry{})
}

// Ask asks the authorizer named name about r, counts the call by result
// with its latency, and logs a failure or a denial whose status had to be
// replaced (rate-limited). Past the pool's bounds it answers Overloaded
// at once, without asking.
func (p *Pool) Ask(ctx context.Context, name string, r *Request) *Answer {
	start := time.Now()
	e := (*p.clients.Load())[name]
	var a *Answer
	switch {
	case e == nil:
		a = failed(fmt.Errorf("authorizer %q: %w", name, ErrUnknown))
	case !p.enter(e):
		a = &Answer{Result: Overloaded, Err: ErrOverloaded}
		if h := e.client.Config().HTTP; h != nil {
			a.RemoveUpstream = h.UpstreamHeaders // see httpClient.Ask
		}
	default:
		a = e.client.Ask(ctx, r)
		p.leave(e)
	}
	p.metrics.observe(name, a.Result, time.Since(start))
	switch {
	case a.Result.Failed():
		p.logError(ctx, name, a.Err)
	case a.Result == Deny && DenialStatus(a.Status) != a.Status:
		p.logWarn(ctx, name, fmt.Sprintf("the denial's status %d is not 400–599: answered 403", a.Status))
	}
	return a
}

// enter counts a call in, or reports that it is past a bound. Neither
// count ever goes past its bound, even for an instant, so that Pending is
// exact: a call is counted in its authorizer's share first, then in the
// pool's.
func (p *Pool) enter(e *entry) bool {
	if !increment(&e.pending, e.share.Load()) {
		return false
	}
	if !increment(&p.pending, MaxPending) {
		e.pending.Add(-1)
		return false
	}
	return true
}

// increment adds one to n unless n is at limit already.
func increment(n *atomic.Int64, limit int64) bool {
	for {
		v := n.Load()
		if v >= limit {
			return false
		}
		if n.CompareAndSwap(v, v+1) {
			return true
		}
	}
}

func (p *Pool) leave(e *entry) {
	e.pending.Add(-1)
	p.pending.Add(-1)
}

// Pending returns how many calls are waiting or in flight in the pool.
func (p *Pool) Pending() int { return int(p.pending.Load()) }

func (p *Pool) logWarn(ctx context.Context, name, msg string) {
	p.logLimited(ctx, slog.LevelWarn, "authorizer answer changed", name, msg)
}

func (p *Pool) logError(ctx context.Context, name string, err error) {
	msg := "no error"
	if err != nil {
		msg = err.Error()
	}
	p.logLimited(ctx, slog.LevelError, "authorizer failed", name, msg)
}

// logLimited writes a line about an authorizer, at most
// DefaultErrorLogRate a second. The message is cut to 256 bytes (never
// inside a UTF-8 character) and any query it quotes is cut out: the
// request's query (with forward_path, or in an authorizer's own error
// message) may hold a token.
func (p *Pool) logLimited(ctx context.Context, level slog.Level, line, name, msg string) {
	if !p.logger.Enabled(ctx, level) {
		return
	}
	ok, dropped := p.errLogs.allow(time.Now())
	if !ok {
		return
	}
	attrs := []slog.Attr{slog.String("authorizer", name), slog.String("error", limits.Cut(redactQuery(msg)))}
	if dropped > 0 {
		attrs = append(attrs, slog.Int("suppressed_before", dropped))
	}
	p.logger.LogAttrs(ctx, level, line, attrs...)
}

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
			Help: "Calls to each authorizer, by result: allow, deny, error (unreachable, timeout, malformed answer), refused (forward_path and an encoded / or \\ in the path: 400, not asked) or overloaded (too many calls waiting: 503, not asked).",
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
func (p *Pool) Client(name string) Client {
	if e := (*p.clients.Load())[name]; e != nil {
		return e.client
	}
	return nil
}

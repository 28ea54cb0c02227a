package xdsconfig

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corsauthz/corsauthz/internal/limits"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	sotwv3 "github.com/envoyproxy/go-control-plane/pkg/client/sotw/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/corsauthz/corsauthz/policy"
	corsauthzv1 "github.com/corsauthz/corsauthz/proto/gen/corsauthz/v1"
)

// Reconnection backoff: exponential with jitter, reset once a stream has
// delivered a response.
const (
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Second
)

// The compile budget (SubscribeOptions.CompileBurst and CompileShare): a
// corsauthz changes its configuration now and then, and each version is
// compiled once; a server that sends new versions without end (hostile,
// or broken) gets at most CompileShare of one processor for compiling
// them, after a burst of CompileBurst of compile time. (Before the budget,
// a server alternating two versions took 14.2 s of CPU in 20 s.)
const (
	DefaultCompileBurst = 2 * time.Second
	DefaultCompileShare = 0.1
)

// envelopeBytes is what a Configuration message may add to its content:
// the version (a SHA-256 in hex) and the source name.
const envelopeBytes = 4 << 10

// SubscribeOptions configure a Subscription. The zero value is usable.
type SubscribeOptions struct {
	// NodeID identifies this gateway to corsauthz in its logs (default
	// "corsauthz-gateway").
	NodeID string
	// Registerer gets the subscription's metrics, labelled address=Address
	// (nil: none). When two subscriptions to one address register on one
	// registry, the first one's metrics are those exported.
	Registerer prometheus.Registerer
	// Address labels the metrics (the corsauthz address dialled).
	Address string
	// Logger gets the subscription's logs (nil: none).
	Logger *slog.Logger
	// Prepare, when set, is called with each configuration before it is
	// put in force; an error NACKs the version and keeps the one in force
	// (the Go middleware builds the authorizer clients it needs here).
	Prepare func(*policy.Engine) error
	// MinBackoff and MaxBackoff bound the wait between reconnection
	// attempts (defaults DefaultMinBackoff and DefaultMaxBackoff).
	MinBackoff, MaxBackoff time.Duration
	// MaxConfigBytes bounds a configuration received, as corsauthz's
	// --max-config-bytes bounds its file (default
	// policy.DefaultMaxConfigBytes): a larger one is NACKed before it is
	// decoded or compiled. Set it to corsauthz's --max-config-bytes when
	// that is larger than the default. The other limits of a file
	// (policies, origins, YAML nodes) apply as policy.Load applies them.
	MaxConfigBytes int64
	// CompileBurst and CompileShare bound the time spent compiling
	// versions: a version waits before it is compiled while the time
	// spent compiling is past CompileBurst plus CompileShare of the time
	// elapsed (defaults DefaultCompileBurst and DefaultCompileShare).
	CompileBurst time.Duration
	CompileShare float64
}

// Subscription keeps the configuration in force in a corsauthz compiled in
// this process. It subscribes over conn, compiles each new version with
// policy.Load, puts it in force atomically and ACKs it; a version that does
// not compile is NACKed with its errors and the last good one stays. When
// the stream breaks (corsauthz restarting, or away) it reconnects with
// backoff, and the last good configuration goes on deciding meanwhile.
type Subscription struct {
	engines *policy.Holder
	conn    grpc.ClientConnInterface
	opts    SubscribeOptions
	logger  *slog.Logger
	metrics *subscriptionMetrics

	ready     chan struct{} // closed once a configuration is in force
	readyOnce sync.Once
	cancel    context.CancelFunc
	done      chan struct{}

	start    time.Time
	downAt   atomic.Int64 // UnixNano when the stream went down; 0 while up
	received atomic.Int64 // UnixNano of the configuration in force

	// The compile budget: seconds of compile time available, refilled at
	// CompileShare a second up to CompileBurst (touched by the stream's
	// goroutine only).
	budget     float64
	budgetTime time.Time
}

// Subscribe starts a Subscription over conn until ctx is done or Close is
// called. It returns at once; Ready tells when a configuration is in force.
func Subscribe(ctx context.Context, conn grpc.ClientConnInterface, opts SubscribeOptions) *Subscription {
	if opts.NodeID == "" {
		opts.NodeID = "corsauthz-gateway"
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(DefaultMaxBackoff, opts.MinBackoff)
	}
	if opts.MaxConfigBytes <= 0 {
		opts.MaxConfigBytes = policy.DefaultMaxConfigBytes
	}
	if opts.CompileBurst <= 0 {
		opts.CompileBurst = DefaultCompileBurst
	}
	if opts.CompileShare <= 0 || opts.CompileShare > 1 {
		opts.CompileShare = DefaultCompileShare
	}
	s := &Subscription{
		engines: policy.NewHolder(nil),
		conn:    conn,
		opts:    opts,
		logger:  opts.Logger,
		ready:   make(chan struct{}),
		done:    make(chan struct{}),
		start:   time.Now(),
		budget:  opts.CompileBurst.Seconds(),
	}
	s.budgetTime = s.start
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	s.downAt.Store(s.start.UnixNano())
	s.metrics = newSubscriptionMetrics(opts.Registerer, opts.Address, s.Staleness)
	ctx, s.cancel = context.WithCancel(ctx)
	go s.run(ctx)
	return s
}

// Engine returns the configuration in force, or nil before the first.
func (s *Subscription) Engine() *policy.Engine { return s.engines.Load() }

// Ready is closed once a configuration is in force.
func (s *Subscription) Ready() <-chan struct{} { return s.ready }

// Staleness is how long, in seconds, since the configuration in force was
// last known to be current: 0 while the stream is up.
func (s *Subscription) Staleness() float64 {
	down := s.downAt.Load()
	if down == 0 {
		return 0
	}
	return time.Since(time.Unix(0, down)).Seconds()
}

// Close ends the stream and waits for the subscription to stop. The last
// configuration stays readable with Engine.
func (s *Subscription) Close() {
	s.cancel()
	<-s.done
}

func (s *Subscription) run(ctx context.Context) {
	defer close(s.done)
	backoff := s.opts.MinBackoff
	for {
		delivered, err := s.stream(ctx)
		s.setDown()
		if ctx.Err() != nil {
			return
		}
		if delivered {
			backoff = s.opts.MinBackoff
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		if maxAgeReconnect(err) {
			// corsauthz closes every connection after
			// --max-connection-age (5 min by default) so that load
			// spreads over new replicas: routine, not a failure.
			s.logger.LogAttrs(ctx, slog.LevelDebug, "xDS: corsauthz closed the connection for its maximum age (routine); reconnecting",
				slog.String("address", s.opts.Address), slog.Duration("retry_in", wait))
		} else {
			s.logger.LogAttrs(ctx, slog.LevelWarn, "xDS: the stream to corsauthz broke; the configuration in force stays; reconnecting",
				slog.String("address", s.opts.Address), slog.String("error", limits.Cut(err.Error())), slog.Duration("retry_in", wait))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(backoff*2, s.opts.MaxBackoff)
	}
}

// stream runs one ADS stream until it breaks; delivered says whether it
// brought at least one response.
func (s *Subscription) stream(ctx context.Context) (delivered bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A new client per stream: a new stream is a new conversation, and
	// the server must not read the last one's nonce as a stale answer.
	c := sotwv3.NewADSClient(ctx, &corev3.Node{Id: s.opts.NodeID, UserAgentName: "corsauthz-xdsconfig"}, TypeURL)
	// A message past MaxMessageSize (or the configuration limit and its
	// envelope, when larger) is refused by gRPC before it is read; one
	// within it but with too large a configuration is NACKed by apply.
	recvLimit := max(MaxMessageSize, int(s.opts.MaxConfigBytes)+envelopeBytes)
	if err := c.InitConnect(s.conn, grpc.WaitForReady(true), grpc.MaxCallRecvMsgSize(recvLimit)); err != nil {
		return false, err
	}
	nackWait := time.Duration(0)
	for {
		resp, err := c.Fetch()
		if err != nil {
			return delivered, err
		}
		if !delivered {
			delivered = true
			s.setUp()
		}
		if err := s.apply(ctx, resp.Resources); err != nil {
			s.metrics.nacked.Inc()
			s.logger.LogAttrs(ctx, slog.LevelError, "xDS: refusing a configuration (NACK); the last good one stays",
				slog.String("address", s.opts.Address), slog.String("error", limits.Cut(err.Error())))
			msg := err.Error()
			if len(msg) > maxNackMessage {
				msg = msg[:maxNackMessage]
			}
			// A server that sends a refused version straight back (a
			// corsauthz does not) would make this a busy loop: NACK
			// ever more slowly.
			select {
			case <-ctx.Done():
				return delivered, ctx.Err()
			case <-time.After(nackWait):
			}
			nackWait = min(max(2*nackWait, s.opts.MinBackoff), s.opts.MaxBackoff)
			if err := c.Nack(msg); err != nil {
				return delivered, err
			}
			continue
		}
		nackWait = 0
		if err := c.Ack(); err != nil {
			return delivered, err
		}
	}
}

// apply compiles the one Configuration in resources and puts it in force.
func (s *Subscription) apply(ctx context.Context, resources []*anypb.Any) error {
	if len(resources) != 1 {
		return fmt.Errorf("want exactly one %s resource, got %d", TypeURL, len(resources))
	}
	if resources[0].GetTypeUrl() != TypeURL {
		return fmt.Errorf("want a %s resource, got %.256q", TypeURL, resources[0].GetTypeUrl())
	}
	// The same limit as a file's, checked before anything is decoded.
	if n := len(resources[0].GetValue()); int64(n) > s.opts.MaxConfigBytes+envelopeBytes {
		s.metrics.tooLarge.Inc()
		return s.tooLarge(n)
	}
	var cfg corsauthzv1.Configuration
	if err := proto.Unmarshal(resources[0].GetValue(), &cfg); err != nil {
		return fmt.Errorf("decoding the configuration: %w", err)
	}
	if n := len(cfg.GetContent()); int64(n) > s.opts.MaxConfigBytes {
		s.metrics.tooLarge.Inc()
		return s.tooLarge(n)
	}
	if old := s.engines.Load(); old != nil && old.Hash() == cfg.GetVersion() {
		s.metrics.acked.Inc()
		return nil // the one in force: a new stream resends it
	}
	if err := s.waitForBudget(ctx); err != nil {
		return err
	}
	t0 := time.Now()
	// Files an authorizer reads (TLS, static headers) are this gateway's
	// own, checked when the call is made: one missing here fails its
	// policy's requests (503), not the whole configuration.
	e, _, err := policy.LoadWithOptions(limits.Cut(cfg.GetSource()), cfg.GetContent(), policy.LoadOptions{SkipLocalFiles: true})
	s.spent(time.Since(t0))
	if err != nil {
		return fmt.Errorf("version %.64s does not compile: %w", cfg.GetVersion(), err)
	}
	if e.Hash() != cfg.GetVersion() {
		return fmt.Errorf("version %.64q is not the SHA-256 of its content (%s)", cfg.GetVersion(), e.Hash())
	}
	if s.opts.Prepare != nil {
		if err := s.opts.Prepare(e); err != nil {
			return fmt.Errorf("version %.64s cannot be put in force: %w", cfg.GetVersion(), err)
		}
	}
	s.engines.Store(e)
	s.received.Store(time.Now().UnixNano())
	s.metrics.acked.Inc()
	s.metrics.lastUpdate.Set(float64(time.Now().Unix()))
	s.logger.LogAttrs(ctx, slog.LevelInfo, "xDS: configuration in force",
		slog.String("address", s.opts.Address), slog.String("config_hash", e.Hash()), slog.String("source", limits.Cut(e.Source())))
	s.readyOnce.Do(func() { close(s.ready) })
	return nil
}

// tooLarge is the NACK of a configuration of n bytes, past MaxConfigBytes.
func (s *Subscription) tooLarge(n int) error {
	return fmt.Errorf("the configuration is %d bytes, more than the limit of %d bytes (xdsconfig.SubscribeOptions.MaxConfigBytes, as corsauthz's --max-config-bytes for a file)", n, s.opts.MaxConfigBytes)
}

// waitForBudget waits until the compile budget is not overdrawn, counting
// the wait; it returns ctx's error if ctx ends first.
func (s *Subscription) waitForBudget(ctx context.Context) error {
	now := time.Now()
	s.budget = min(s.opts.CompileBurst.Seconds(), s.budget+now.Sub(s.budgetTime).Seconds()*s.opts.CompileShare)
	s.budgetTime = now
	if s.budget >= 0 {
		return nil
	}
	wait := time.Duration(-s.budget / s.opts.CompileShare * float64(time.Second))
	s.metrics.compileWaits.Inc()
	s.metrics.compileWaitSeconds.Add(wait.Seconds())
	s.logger.LogAttrs(ctx, slog.LevelWarn, "xDS: new configuration versions come faster than the compile budget allows; waiting before compiling the next",
		slog.String("address", s.opts.Address), slog.Duration("wait", wait))
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(wait):
	}
	s.budget = 0
	s.budgetTime = time.Now()
	return nil
}

// spent takes d of compile time from the budget.
func (s *Subscription) spent(d time.Duration) {
	s.budget -= d.Seconds()
	s.metrics.compiles.Inc()
	s.metrics.compileSeconds.Add(d.Seconds())
}

// maxAgeReconnect reports whether err ended a stream because corsauthz
// closed the connection for its age (gRPC's GOAWAY with debug data
// "max_age", once the grace period is over).
func maxAgeReconnect(err error) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.Unavailable && strings.Contains(st.Message(), `received prior goaway: code: NO_ERROR, debug data: "max_age"`)
}

func (s *Subscription) setUp() {
	s.downAt.Store(0)
	s.metrics.connected.Set(1)
}

func (s *Subscription) setDown() {
	s.downAt.CompareAndSwap(0, time.Now().UnixNano())
	s.metrics.connected.Set(0)
}

package xdsconfig

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corsauthz/corsauthz/internal/limits"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	sotwv3 "github.com/envoyproxy/go-control-plane/pkg/client/sotw/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
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
	s := &Subscription{
		engines: policy.NewHolder(nil),
		conn:    conn,
		opts:    opts,
		logger:  opts.Logger,
		ready:   make(chan struct{}),
		done:    make(chan struct{}),
		start:   time.Now(),
	}
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
		s.logger.LogAttrs(ctx, slog.LevelWarn, "xDS: the stream to corsauthz broke; the configuration in force stays; reconnecting",
			slog.String("address", s.opts.Address), slog.String("error", err.Error()), slog.Duration("retry_in", wait))
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
	if err := c.InitConnect(s.conn, grpc.WaitForReady(true), grpc.MaxCallRecvMsgSize(MaxMessageSize)); err != nil {
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
	var cfg corsauthzv1.Configuration
	if err := proto.Unmarshal(resources[0].GetValue(), &cfg); err != nil {
		return fmt.Errorf("decoding the configuration: %w", err)
	}
	if old := s.engines.Load(); old != nil && old.Hash() == cfg.GetVersion() {
		s.metrics.acked.Inc()
		return nil // the one in force: a new stream resends it
	}
	// Files an authorizer reads (TLS, static headers) are this gateway's
	// own, checked when the call is made: one missing here fails its
	// policy's requests (503), not the whole configuration.
	e, _, err := policy.LoadWithOptions(cfg.GetSource(), cfg.GetContent(), policy.LoadOptions{SkipLocalFiles: true})
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

func (s *Subscription) setUp() {
	s.downAt.Store(0)
	s.metrics.connected.Set(1)
}

func (s *Subscription) setDown() {
	s.downAt.CompareAndSwap(0, time.Now().UnixNano())
	s.metrics.connected.Set(0)
}

package xdsconfig

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/corsauthz/corsauthz/internal/limits"
	"github.com/corsauthz/corsauthz/policy"
	corsauthzv1 "github.com/corsauthz/corsauthz/proto/gen/corsauthz/v1"
)

// Publisher serves the configuration in force over xDS (ADS, state of the
// world) and pushes every new one to the gateways subscribed.
//
// Every client gets the same snapshot, whatever its node: the cache keys
// them all under one name, so a thousand gateways cost one snapshot, and
// SetSnapshot never waits for a client (each stream's watch is one-shot and
// buffered; a gateway that does not read holds only its own stream).
type Publisher struct {
	cache   cachev3.SnapshotCache
	xds     serverv3.Server
	stop    context.CancelFunc // ends every stream
	logger  *slog.Logger
	metrics *publisherMetrics
	mu      sync.Mutex // serialises publish
	version string     // published last

	sentMu sync.Mutex
	sent   map[int64]string // stream ID: the version last sent on it
}

// NewPublisher returns a Publisher with nothing to serve yet; reg (nil:
// none) gets its metrics, logger (nil: none) its logs.
func NewPublisher(reg prometheus.Registerer, logger *slog.Logger) *Publisher {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Publisher{
		cache:   cachev3.NewSnapshotCache(false, oneNode{}, nil),
		logger:  logger,
		metrics: newPublisherMetrics(reg),
		sent:    map[int64]string{},
	}
	// The server's context ends its streams: go-control-plane's stream
	// loop returns on it (not on a stream's own context).
	ctx, stop := context.WithCancel(context.Background())
	p.stop = stop
	p.xds = serverv3.NewServer(ctx, p.cache, serverv3.CallbackFuncs{
		StreamOpenFunc:     p.streamOpened,
		StreamClosedFunc:   p.streamClosed,
		StreamRequestFunc:  p.streamRequest,
		StreamResponseFunc: p.streamResponse,
	})
	return p
}

// Register adds the aggregated discovery service to s.
func (p *Publisher) Register(s *grpc.Server) {
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(s, p.xds)
}

// Shutdown ends every stream, now and later: a stream lasts as long as its
// gateway, and a gRPC GracefulStop would otherwise wait for them all. The
// gateways keep their last configuration and reconnect (to this server's
// successor, or another replica).
func (p *Publisher) Shutdown() { p.stop() }

// Publish makes e's configuration the one served, and pushes it to every
// subscribed gateway. What is published is e's canonical form
// (policy.Engine.Canonical: no comments, no file path, no secret value),
// versioned by its SHA-256, which is the hash the gateway's engine has.
func (p *Publisher) Publish(ctx context.Context, e *policy.Engine) {
	if e == nil {
		return
	}
	content, err := e.Canonical()
	if err != nil {
		p.logger.LogAttrs(ctx, slog.LevelError, "xDS: the configuration cannot be written in canonical form; gateways keep the one before", slog.String("error", err.Error()))
		return
	}
	sum := sha256.Sum256(content)
	if err := p.publish(ctx, hex.EncodeToString(sum[:]), PublishedSource, content); err != nil {
		p.logger.LogAttrs(ctx, slog.LevelError, "xDS: publishing the configuration failed", slog.String("error", err.Error()))
	}
}

// PublishedSource is the source name of every published configuration:
// the file's path stays on the service.
const PublishedSource = "corsauthz-xds"

func (p *Publisher) publish(ctx context.Context, version, source string, content []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.version == version {
		return nil
	}
	res := &corsauthzv1.Configuration{Version: version, Source: source, Content: content}
	// The cache sends to each waiting stream's buffered channel; a
	// context is only needed to stop waiting, which never happens.
	if err := p.cache.SetSnapshot(ctx, nodeKey, snapshot{version: version, res: res}); err != nil {
		return err
	}
	p.version = version
	p.metrics.version(version)
	return nil
}

func (p *Publisher) streamOpened(_ context.Context, _ int64, typeURL string) error {
	p.metrics.streams.Inc()
	return nil
}

func (p *Publisher) streamClosed(id int64, _ *corev3.Node) {
	p.sentMu.Lock()
	delete(p.sent, id)
	p.sentMu.Unlock()
	p.metrics.streams.Dec()
}

// streamRequest counts ACKs and NACKs (a request answering a response,
// with or without error_detail) and refuses other resource types: this
// server has only the one.
//
// A NACK carries the last version the client accepted, and the snapshot
// cache answers a request whose version differs from its own at once: it
// would send the refused version straight back, and client and server
// would loop. So a NACK is read as "I have seen the version you sent me":
// the stream waits for the next version published.
func (p *Publisher) streamRequest(id int64, req *discoveryv3.DiscoveryRequest) error {
	if req.GetTypeUrl() != TypeURL {
		return status.Errorf(codes.InvalidArgument, "corsauthz serves only %s over xDS, not %.256q", TypeURL, req.GetTypeUrl())
	}
	if req.GetResponseNonce() == "" {
		return nil // a subscription, not an answer
	}
	if d := req.GetErrorDetail(); d != nil {
		p.sentMu.Lock()
		refused, ok := p.sent[id]
		p.sentMu.Unlock()
		if ok {
			req.VersionInfo = refused
		}
		p.metrics.nacked.Inc()
		p.logger.Warn("xDS: a gateway refused the configuration (NACK); it keeps its last good one",
			slog.String("node", limits.Cut(req.GetNode().GetId())),
			slog.String("refused_version", limits.Cut(refused)),
			slog.String("error", limits.Cut(d.GetMessage())))
		return nil
	}
	p.metrics.acked.Inc()
	return nil
}

func (p *Publisher) streamResponse(_ context.Context, id int64, _ *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	p.sentMu.Lock()
	p.sent[id] = resp.GetVersionInfo()
	p.sentMu.Unlock()
	p.metrics.sent.Inc()
}

// nodeKey is the one node name the snapshot cache knows.
const nodeKey = "corsauthz"

// oneNode maps every client to nodeKey.
type oneNode struct{}

func (oneNode) ID(*corev3.Node) string { return nodeKey }

// snapshot is a cachev3.ResourceSnapshot of the one resource. The cache's
// own Snapshot type knows only Envoy's resource types.
type snapshot struct {
	version string
	res     *corsauthzv1.Configuration
}

func (s snapshot) GetVersion(typeURL string) string {
	if typeURL != TypeURL {
		return ""
	}
	return s.version
}

func (s snapshot) GetResourcesAndTTL(typeURL string) map[string]types.ResourceWithTTL {
	if typeURL != TypeURL {
		return nil
	}
	return map[string]types.ResourceWithTTL{ResourceName: {Resource: s.res}}
}

func (s snapshot) GetResources(typeURL string) map[string]types.Resource {
	if typeURL != TypeURL {
		return nil
	}
	return map[string]types.Resource{ResourceName: s.res}
}

func (s snapshot) ConstructVersionMap() error { return nil }

func (s snapshot) GetVersionMap(typeURL string) map[string]string {
	if typeURL != TypeURL {
		return nil
	}
	return map[string]string{ResourceName: s.version}
}

var _ cachev3.ResourceSnapshot = snapshot{}

// String names the snapshot in logs.
func (s snapshot) String() string { return fmt.Sprintf("corsauthz configuration %s", s.version) }

package xdsconfig

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/corsauthz/corsauthz/internal/limits"
	"github.com/corsauthz/corsauthz/policy"
)

// Publisher serves the configuration in force over xDS (ADS, state of the
// world) and pushes every new one to the gateways subscribed.
//
// Every client gets the same resource, whatever its node, encoded once per
// version and shared by every stream (sharedCache, wireForm): a thousand
// gateways cost one encoded configuration, and a gateway that does not
// read holds a few hundred bytes of its own. Publish never waits for a
// stream.
//
// Bounded (docs/limits.md): at most MaxStreams streams at once, a stream
// past it refused with RESOURCE_EXHAUSTED and counted; the log lines a
// client can cause (NACKs, malformed requests, refused streams) go through
// a rate limit and the lines past it are counted; each response is
// answered once, and an ACK or NACK repeated or naming another version
// buys no resend.
type Publisher struct {
	cache   *sharedCache
	ctx     context.Context    // ends with Shutdown
	stop    context.CancelFunc // ends every stream
	logger  *slog.Logger
	log     *limits.RequestLog // the lines clients cause
	metrics *publisherMetrics
	mu      sync.Mutex // serialises publish
	version string     // published last

	maxStreams int64
	open       atomic.Int64 // streams open, refused ones not counted
	lastID     atomic.Int64 // the last stream's id

	streamsMu sync.Mutex
	streams   map[int64]*streamState
}

// streamState is what a stream was last sent, and whether the gateway has
// answered it.
type streamState struct {
	nonce, version string
	answered       bool
}

// DefaultMaxStreams is the default of PublisherOptions.MaxStreams (and of
// corsauthz serve --max-xds-streams): a stream costs about 23 KiB
// (docs/limits.md), so that many stay well within the shipped 128 MiB.
const DefaultMaxStreams = 1000

// PublisherOptions configure a Publisher. The zero value is usable.
type PublisherOptions struct {
	// Registerer gets the Publisher's metrics (nil: none).
	Registerer prometheus.Registerer
	// Logger gets its logs (nil: none).
	Logger *slog.Logger
	// MaxStreams bounds the xDS streams open at once (0:
	// DefaultMaxStreams); a stream past it is refused with
	// RESOURCE_EXHAUSTED, and the gateway retries with backoff.
	MaxStreams int
	// LogRate bounds the log lines clients cause, per level and second
	// (burst: as many); 0 means limits.DefaultLogRate, a negative value no
	// limit.
	LogRate float64
}

// NewPublisher returns a Publisher with nothing to serve yet; reg (nil:
// none) gets its metrics, logger (nil: none) its logs. The other options
// are their defaults.
func NewPublisher(reg prometheus.Registerer, logger *slog.Logger) *Publisher {
	return NewPublisherWithOptions(PublisherOptions{Registerer: reg, Logger: logger})
}

// NewPublisherWithOptions returns a Publisher with nothing to serve yet.
func NewPublisherWithOptions(opts PublisherOptions) *Publisher {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	maxStreams := opts.MaxStreams
	if maxStreams <= 0 {
		maxStreams = DefaultMaxStreams
	}
	rate := opts.LogRate
	if rate == 0 {
		rate = limits.DefaultLogRate
	}
	p := &Publisher{
		cache:      newSharedCache(),
		logger:     logger,
		metrics:    newPublisherMetrics(opts.Registerer),
		maxStreams: int64(maxStreams),
		streams:    map[int64]*streamState{},
	}
	p.log = limits.NewRequestLog(logger, rate, p.metrics.logSuppressed).WithSummary("xDS log lines suppressed by the rate limit")
	// The Publisher's context ends its streams (Shutdown).
	p.ctx, p.stop = context.WithCancel(context.Background())
	return p
}

// Register adds the aggregated discovery service to s.
func (p *Publisher) Register(s *grpc.Server) {
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(s, ads{p: p})
}

// Shutdown ends every stream, now and later: a stream lasts as long as its
// gateway, and a gRPC GracefulStop would otherwise wait for them all. The
// gateways keep their last configuration and reconnect (to this server's
// successor, or another replica).
func (p *Publisher) Shutdown() { p.stop() }

// Streams is how many streams are open.
func (p *Publisher) Streams() int { return int(p.open.Load()) }

// ads is the aggregated discovery service: state-of-the-world streams
// within the cap, each sending the shared encoded resource; the
// incremental protocol is not served.
type ads struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	p *Publisher
}

func (a ads) StreamAggregatedResources(st discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	p := a.p
	if p.open.Add(1) > p.maxStreams {
		p.open.Add(-1)
		p.metrics.streamsRefused.Inc()
		p.log.Log(st.Context(), slog.LevelWarn, "xDS: stream refused: too many streams open",
			slog.Int64("limit", p.maxStreams), slog.String("peer", peerAddr(st.Context())))
		return status.Errorf(codes.ResourceExhausted, "corsauthz serves at most %d xDS streams at once (--max-xds-streams); retry later", p.maxStreams)
	}
	defer p.open.Add(-1)
	return p.serve(st)
}

// serve is a state-of-the-world stream of the one resource type, as
// go-control-plane's server (pkg/server/sotw/v3, which this replaces: it
// linked every Envoy resource type into the binary) serves one: each
// request that answers the last response (its nonce), or the first one,
// asks for the version the stream has not been sent (sharedCache.watch);
// a request naming an older nonce is skipped; each response gets the
// stream's next nonce. A request without a type URL, or with another than
// TypeURL, ends the stream with INVALID_ARGUMENT; Shutdown ends it with
// OK.
func (p *Publisher) serve(st discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	id := p.lastID.Add(1)
	p.streamOpened(id)
	defer p.streamClosed(id)

	// Requests are read here so that the loop below can wait for a
	// request and a version at once.
	reqs := make(chan *discoveryv3.DiscoveryRequest)
	go func() {
		defer close(reqs)
		for {
			req, err := st.Recv()
			if err != nil {
				return
			}
			select {
			case reqs <- req:
			case <-st.Context().Done():
				return
			case <-p.ctx.Done():
				return
			}
		}
	}()

	var (
		node   *corev3.Node
		next   chan *sharedVersion // nil until the first request
		cancel = func() {}
		nonce  string // of the last response
		sent   string // the version last sent
		count  int64  // responses sent
	)
	defer func() { cancel() }()
	for {
		select {
		case <-p.ctx.Done():
			return nil
		case v := <-next:
			res, err := v.resource()
			if err != nil {
				p.logger.LogAttrs(st.Context(), slog.LevelError, "xDS: encoding the configuration failed", slog.String("error", err.Error()))
				return status.Error(codes.Internal, "corsauthz could not encode its configuration")
			}
			count++
			nonce, sent = strconv.FormatInt(count, 10), v.id
			resp := &discoveryv3.DiscoveryResponse{VersionInfo: v.id, Resources: []*anypb.Any{res}, TypeUrl: TypeURL, Nonce: nonce}
			p.streamResponse(id, resp)
			if err := sendShared(st, resp); err != nil {
				return err
			}
		case req, ok := <-reqs:
			if !ok {
				return nil
			}
			if req.GetNode() != nil {
				node = req.GetNode()
			} else {
				req.Node = node
			}
			if req.GetTypeUrl() == "" {
				return status.Error(codes.InvalidArgument, "type URL is required for ADS")
			}
			if err := p.streamRequest(id, req); err != nil {
				return err
			}
			if nonce != "" && req.GetResponseNonce() != nonce {
				continue // answers an older response: nothing to do
			}
			cancel()
			next = make(chan *sharedVersion, 1)
			cancel = p.cache.watch(sent, next)
		}
	}
}

// sendShared sends r in its wire form (wireForm), so that the encoded
// resource is not copied for each stream.
func sendShared(st discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer, r *discoveryv3.DiscoveryResponse) error {
	if m := wireForm(r); m != nil {
		return st.SendMsg(m)
	}
	return st.Send(r)
}

func peerAddr(ctx context.Context) string {
	if pr, ok := peer.FromContext(ctx); ok && pr.Addr != nil {
		return pr.Addr.String()
	}
	return ""
}

// Publish makes e's configuration the one served, and pushes it to every
// subscribed gateway. What is published is e's canonical form
// (policy.Engine.Canonical: no comments, no file path, no secret value),
// versioned by its SHA-256, which is the hash the gateway's engine has.
//
// The form is hashed here as it is written (policy.Engine.WriteCanonical)
// and encoded only when a gateway needs it, straight into the resource
// (encodeConfiguration): no copy of it is kept while no gateway is
// subscribed.
func (p *Publisher) Publish(ctx context.Context, e *policy.Engine) {
	if e == nil {
		return
	}
	h := sha256.New()
	n, err := e.WriteCanonical(h)
	if err != nil {
		p.logger.LogAttrs(ctx, slog.LevelError, "xDS: the configuration cannot be written in canonical form; gateways keep the one before", slog.String("error", err.Error()))
		return
	}
	version := hex.EncodeToString(h.Sum(nil))
	p.publish(version, func() ([]byte, error) {
		return encodeConfiguration(version, PublishedSource, e, n)
	})
}

// PublishedSource is the source name of every published configuration:
// the file's path stays on the service.
const PublishedSource = "corsauthz-xds"

// encodeConfiguration is the encoded corsauthzv1.Configuration{version,
// source, e's canonical form} (size bytes long), as proto.Marshal writes
// it (fields in number order), with the form written into it directly
// rather than built and then copied.
func encodeConfiguration(version, source string, e *policy.Engine, size int) ([]byte, error) {
	b := make([]byte, 0, 3*binary.MaxVarintLen64+len(version)+len(source)+size)
	if version != "" {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, version)
	}
	if source != "" {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, source)
	}
	if size == 0 {
		return b, nil
	}
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(size))
	w := appender{b}
	if n, err := e.WriteCanonical(&w); err != nil || n != size {
		return nil, fmt.Errorf("writing the canonical form again: %d bytes (want %d), %v", n, size, err)
	}
	return w.b, nil
}

// appender is an io.Writer appending to b.
type appender struct{ b []byte }

func (a *appender) Write(p []byte) (int, error) {
	a.b = append(a.b, p...)
	return len(p), nil
}

// publish makes version, encoded by encode when a stream needs it, the
// one served.
func (p *Publisher) publish(version string, encode func() ([]byte, error)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.version == version {
		return
	}
	p.cache.set(newSharedVersion(version, encode))
	p.version = version
	p.metrics.version(version)
}

func (p *Publisher) streamOpened(id int64) {
	p.streamsMu.Lock()
	p.streams[id] = &streamState{}
	p.streamsMu.Unlock()
	p.metrics.streams.Inc()
}

// streamClosed drops the encoded configuration when the last stream
// closes (sharedVersion).
func (p *Publisher) streamClosed(id int64) {
	p.streamsMu.Lock()
	delete(p.streams, id)
	none := len(p.streams) == 0
	p.streamsMu.Unlock()
	p.metrics.streams.Dec()
	if none {
		p.cache.release()
	}
}

// streamRequest refuses other resource types (this server has only the
// one), and counts the answers to what was sent: the first request
// carrying the nonce of the last response is its ACK, or its NACK when it
// has an error_detail (logged, rate-limited). Any other request naming a
// nonce (repeated, or answering an older response) is counted as ignored
// and logs nothing: it changes nothing either, since a stream is sent each
// version once (sharedCache).
func (p *Publisher) streamRequest(id int64, req *discoveryv3.DiscoveryRequest) error {
	if req.GetTypeUrl() != TypeURL {
		p.metrics.refusedRequests.Inc()
		p.log.Log(context.Background(), slog.LevelWarn, "xDS: request refused: unknown resource type",
			slog.String("node", limits.Cut(req.GetNode().GetId())), slog.String("type_url", limits.Cut(req.GetTypeUrl())))
		return status.Errorf(codes.InvalidArgument, "corsauthz serves only %s over xDS, not %.256q", TypeURL, req.GetTypeUrl())
	}
	nonce := req.GetResponseNonce()
	p.streamsMu.Lock()
	st := p.streams[id]
	if st == nil || st.nonce == "" {
		p.streamsMu.Unlock()
		return nil // a subscription, before anything was sent
	}
	first := nonce == st.nonce && !st.answered
	if first {
		st.answered = true
	}
	sent := st.version
	p.streamsMu.Unlock()
	if !first {
		p.metrics.ignored.Inc()
		return nil
	}
	if d := req.GetErrorDetail(); d != nil {
		p.metrics.nacked.Inc()
		p.log.Log(context.Background(), slog.LevelWarn, "xDS: a gateway refused the configuration (NACK); it keeps its last good one",
			slog.String("node", limits.Cut(req.GetNode().GetId())),
			slog.String("refused_version", limits.Cut(sent)),
			slog.String("error", limits.Cut(d.GetMessage())))
		return nil
	}
	p.metrics.acked.Inc()
	return nil
}

func (p *Publisher) streamResponse(id int64, resp *discoveryv3.DiscoveryResponse) {
	p.streamsMu.Lock()
	if st := p.streams[id]; st != nil {
		st.nonce, st.version, st.answered = resp.GetNonce(), resp.GetVersionInfo(), false
	}
	p.streamsMu.Unlock()
	p.metrics.sent.Inc()
}

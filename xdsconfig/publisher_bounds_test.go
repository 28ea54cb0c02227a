package xdsconfig_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/corsauthz/corsauthz/internal/limits"
	"github.com/corsauthz/corsauthz/internal/racedetector"
	"github.com/corsauthz/corsauthz/xdsconfig"
)

// startXDSWith is startXDS with publisher options (its registry set here).
func startXDSWith(tb testing.TB, opts xdsconfig.PublisherOptions) *xdsServer {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &xdsServer{reg: prometheus.NewRegistry(), grpc: grpc.NewServer(), addr: lis.Addr().String()}
	opts.Registerer = s.reg
	s.pub = xdsconfig.NewPublisherWithOptions(opts)
	s.pub.Register(s.grpc)
	go s.grpc.Serve(lis)
	tb.Cleanup(s.grpc.Stop)
	tb.Cleanup(s.pub.Shutdown)
	return s
}

// rawStream is an ADS stream driven by hand, as a hostile client would.
type rawStream struct {
	discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	cancel context.CancelFunc
}

func openRaw(tb testing.TB, cc *grpc.ClientConn, node string) *rawStream {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	// io.EOF: the server has ended the stream already (refused it); Recv
	// says why.
	if err := st.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: node}, TypeUrl: xdsconfig.TypeURL}); err != nil && err != io.EOF {
		tb.Fatal(err)
	}
	return &rawStream{st, cancel}
}

// recvWithin is Recv, failing the test after d.
func (s *rawStream) recvWithin(tb testing.TB, d time.Duration) (*discoveryv3.DiscoveryResponse, error) {
	tb.Helper()
	type result struct {
		r   *discoveryv3.DiscoveryResponse
		err error
	}
	ch := make(chan result, 1)
	go func() {
		r, err := s.Recv()
		ch <- result{r, err}
	}()
	select {
	case res := <-ch:
		return res.r, res.err
	case <-time.After(d):
		tb.Fatalf("no response within %s", d)
		return nil, nil
	}
}

// TestStreamCap: past MaxStreams a stream is refused with
// RESOURCE_EXHAUSTED, counted and logged (rate-limited); closing one lets
// the next in.
func TestStreamCap(t *testing.T) {
	t.Parallel()
	const limit = 5
	var logs logSink
	srv := startXDSWith(t, xdsconfig.PublisherOptions{MaxStreams: limit, Logger: logs.logger(slog.LevelDebug)})
	srv.pub.Publish(context.Background(), mustLoad(t, configFor("https://one.example")))
	cc := dial(t, srv.addr)
	var open []*rawStream
	for i := range limit {
		s := openRaw(t, cc, fmt.Sprint("gw", i))
		if _, err := s.recvWithin(t, 5*time.Second); err != nil {
			t.Fatalf("stream %d within the cap: %v", i, err)
		}
		open = append(open, s)
	}
	const extra = 50
	for i := range extra {
		s := openRaw(t, cc, "over")
		_, err := s.recvWithin(t, 5*time.Second)
		if grpcstatus.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "--max-xds-streams") {
			t.Fatalf("stream %d past the cap: %v, want RESOURCE_EXHAUSTED naming --max-xds-streams", i, err)
		}
	}
	if got := metric(t, srv.reg, "corsauthz_xds_streams_refused_total"); got != extra {
		t.Errorf("corsauthz_xds_streams_refused_total = %v, want %d", got, extra)
	}
	if got := metric(t, srv.reg, "corsauthz_xds_streams"); got != limit {
		t.Errorf("corsauthz_xds_streams = %v, want %d", got, limit)
	}
	if n := logs.count("xDS: stream refused: too many streams open"); n == 0 || n > extra {
		t.Errorf("%d lines for %d refused streams", n, extra)
	}
	open[0].cancel()
	waitFor(t, 5*time.Second, "a closed stream still counted", func() bool { return srv.pub.Streams() == limit-1 })
	s := openRaw(t, cc, "next")
	if _, err := s.recvWithin(t, 5*time.Second); err != nil {
		t.Errorf("a stream after one closed: %v", err)
	}
}

// processCPU is the CPU time the process has used (user and system).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// logSink counts the bytes of log written and keeps the lines.
type logSink struct {
	mu    sync.Mutex
	n     int
	lines []map[string]any
}

func (w *logSink) logger(level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}

func (w *logSink) Write(p []byte) (int, error) {
	var rec map[string]any
	if err := json.Unmarshal(p, &rec); err != nil {
		panic(err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n += len(p)
	w.lines = append(w.lines, rec)
	return len(p), nil
}

func (w *logSink) bytes() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// withMsg returns the lines whose msg is msg.
func (w *logSink) withMsg(msg string) []map[string]any {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []map[string]any
	for _, rec := range w.lines {
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

func (w *logSink) count(msg string) int { return len(w.withMsg(msg)) }

// TestNackFloodBounded: 20,000 NACKs on one stream, then one NACK on each
// of 300 streams. The NACK of a response is counted and logged once; the
// repeats are counted as ignored and log nothing; the NACKs of many
// streams go through the rate limit. (Before: 20,000 WARN lines, 14.7 MB
// of log, 0.74 s of CPU.)
func TestNackFloodBounded(t *testing.T) {
	t.Parallel()
	var log logSink
	srv := startXDSWith(t, xdsconfig.PublisherOptions{Logger: log.logger(slog.LevelInfo)})
	srv.pub.Publish(context.Background(), mustLoad(t, configFor("https://one.example")))
	cc := dial(t, srv.addr)
	s := openRaw(t, cc, "flooder")
	resp, err := s.recvWithin(t, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	const flood = 20000
	nack := &discoveryv3.DiscoveryRequest{TypeUrl: xdsconfig.TypeURL, ResponseNonce: resp.GetNonce(),
		ErrorDetail: &status.Status{Code: int32(codes.InvalidArgument), Message: strings.Repeat("refused ", 100)}}
	cpu0, t0 := processCPU(), time.Now()
	for range flood {
		if err := s.Send(nack); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, "the NACKs were not all read", func() bool {
		return metric(t, srv.reg, "corsauthz_xds_versions_nacked_total")+metric(t, srv.reg, "corsauthz_xds_requests_ignored_total") == flood
	})
	cpu, took := processCPU()-cpu0, time.Since(t0)
	oneStream := log.bytes()
	t.Logf("%d NACKs on one stream in %s: %d bytes of log, %s CPU (client and server)", flood, took.Round(time.Millisecond), oneStream, cpu.Round(time.Millisecond))
	if got := metric(t, srv.reg, "corsauthz_xds_versions_nacked_total"); got != 1 {
		t.Errorf("corsauthz_xds_versions_nacked_total = %v, want 1 (the repeats are not NACKs of a new response)", got)
	}
	if oneStream > 2048 {
		t.Errorf("%d bytes of log for the NACKs of one response", oneStream)
	}
	if limit := 2 * time.Second * racedetector.CPUFactor; cpu > limit {
		t.Errorf("%s of CPU for %d NACKs, want at most %s", cpu, flood, limit)
	}

	// One NACK on each of many streams: each is news, and the rate limit
	// bounds the lines.
	const streams = 300
	var wg sync.WaitGroup
	for i := range streams {
		wg.Go(func() {
			s := openRaw(t, cc, fmt.Sprint("gw", i))
			r, err := s.Recv()
			if err != nil {
				t.Error(err)
				return
			}
			nack := proto.Clone(nack).(*discoveryv3.DiscoveryRequest)
			nack.ResponseNonce = r.GetNonce()
			if err := s.Send(nack); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	const nackLine = "xDS: a gateway refused the configuration (NACK); it keeps its last good one"
	// A NACK is counted before its line is written or suppressed: wait
	// for both.
	waitFor(t, 30*time.Second, "the NACKs of many streams were not all counted, logged or suppressed", func() bool {
		return metric(t, srv.reg, "corsauthz_xds_versions_nacked_total") == 1+streams &&
			float64(log.count(nackLine))+metric(t, srv.reg, "corsauthz_xds_logs_suppressed_total") >= 1+streams
	})
	written := log.count(nackLine)
	suppressed := metric(t, srv.reg, "corsauthz_xds_logs_suppressed_total")
	t.Logf("%d NACKs on as many streams: %d lines written, %v suppressed, %d bytes of log in all", streams+1, written, suppressed, log.bytes())
	if written > 2*limits.DefaultLogRate || float64(written)+suppressed != streams+1 {
		t.Errorf("%d NACK lines written and %v suppressed for %d NACKs, want at most %d written", written, suppressed, streams+1, 2*limits.DefaultLogRate)
	}
}

// TestStaleACKBuysNoResend: ACKs naming versions the stream was never
// sent, with the current nonce, and the same ACK repeated, get nothing
// back: the next message on the stream is the next version published.
// (Before: each ACK of a stale version resent the whole configuration,
// 2,000 requests pulled 2.0 GB with a 1 MB one.)
func TestStaleACKBuysNoResend(t *testing.T) {
	t.Parallel()
	srv := startXDSWith(t, xdsconfig.PublisherOptions{})
	content := []byte(strings.Repeat("#", 1<<20)) // not compiled by this client
	if err := srv.pub.PublishRaw("v1", "big.yaml", content); err != nil {
		t.Fatal(err)
	}
	cc := dial(t, srv.addr, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(xdsconfig.MaxMessageSize)))
	s := openRaw(t, cc, "stale")
	first, err := s.recvWithin(t, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	received := proto.Size(first)
	const asks = 2000
	sent := 0
	for i := range asks {
		req := &discoveryv3.DiscoveryRequest{TypeUrl: xdsconfig.TypeURL, ResponseNonce: first.GetNonce(), VersionInfo: fmt.Sprint("stale-", i%3)}
		if i%2 == 1 {
			req.VersionInfo = "v1" // the same ACK, again
		}
		sent += proto.Size(req)
		if err := s.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, "the ACKs were not all read", func() bool {
		return metric(t, srv.reg, "corsauthz_xds_versions_acked_total")+metric(t, srv.reg, "corsauthz_xds_requests_ignored_total") == asks
	})
	if err := srv.pub.PublishRaw("v2", "small.yaml", []byte("#")); err != nil {
		t.Fatal(err)
	}
	next, err := s.recvWithin(t, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	received += proto.Size(next)
	t.Logf("%d ACKs (%d bytes sent) got %d bytes back in all", asks, sent, received)
	if next.GetVersionInfo() != "v2" {
		t.Errorf("after %d stale ACKs the stream got version %q, want the next one published (v2)", asks, next.GetVersionInfo())
	}
	if got := metric(t, srv.reg, "corsauthz_xds_versions_acked_total"); got != 1 {
		t.Errorf("corsauthz_xds_versions_acked_total = %v, want 1 (one response, one ACK)", got)
	}
	if got := metric(t, srv.reg, "corsauthz_xds_versions_sent_total"); got != 2 {
		t.Errorf("corsauthz_xds_versions_sent_total = %v, want 2", got)
	}
}

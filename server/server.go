package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/corsauthz/corsauthz/internal/tracing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/corsauthz/corsauthz/decision"
	"github.com/corsauthz/corsauthz/decisionapi"
	"github.com/corsauthz/corsauthz/extauthz"
	"github.com/corsauthz/corsauthz/httpauthz"
	"github.com/corsauthz/corsauthz/internal/limits"
	"github.com/corsauthz/corsauthz/policy"
	corsauthzv1 "github.com/corsauthz/corsauthz/proto/gen/corsauthz/v1"
	"github.com/corsauthz/corsauthz/xdsconfig"
)

// Defaults for [Options].
const (
	// DefaultDecisionLogRate is how many request log lines a second each
	// level (info: rejections; debug: every decision; warn and error:
	// refused requests) may write by default, with a burst of as many.
	DefaultDecisionLogRate = limits.DefaultLogRate

	DefaultGRPCAddr     = "127.0.0.1:9001"
	DefaultAdminAddr    = "127.0.0.1:9002"
	DefaultDrainTimeout = 10 * time.Second
)

// gRPC server settings. Envoy keeps few long-lived HTTP/2 connections to
// the service and may ping them, so pings are permitted every few seconds;
// MaxConnectionAge makes clients reconnect now and then, which spreads the
// load over new replicas. The Default ones can be changed with [Options].
const (
	DefaultMaxRecvMsgSize        = 1 << 20 // a CheckRequest is a few KiB
	DefaultMaxConcurrentStreams  = 1024    // per connection
	DefaultMaxConnectionAge      = 5 * time.Minute
	DefaultMaxConnectionAgeGrace = 30 * time.Second
	keepaliveMinTime             = 5 * time.Second
	keepaliveTime                = time.Minute
	keepaliveTimeout             = 20 * time.Second
)

// Admin HTTP server timeouts.
const (
	adminReadHeaderTimeout = 5 * time.Second
	adminReadTimeout       = 10 * time.Second
	adminWriteTimeout      = 30 * time.Second
	adminIdleTimeout       = 2 * time.Minute
	adminShutdownTimeout   = 5 * time.Second
)

// watchDrainWait bounds how long a health Watch stream is kept open at
// shutdown for its NOT_SERVING update to go out.
const watchDrainWait = time.Second

// healthServices are the names grpc.health.v1.Health answers for besides
// "" (the whole server): the decision APIs.
var healthServices = []string{
	authv3.Authorization_ServiceDesc.ServiceName,
	corsauthzv1.DecisionService_ServiceDesc.ServiceName,
}

// Options configure a Server. The zero value is usable.
type Options struct {
	// GRPCAddr is the gRPC listen address (default DefaultGRPCAddr); use
	// port 0 for any free port, then ask Server.GRPCAddr.
	GRPCAddr string
	// AdminAddr is the listen address of /healthz, /readyz and /metrics
	// (default DefaultAdminAddr).
	AdminAddr string
	// HTTPAddr is the listen address of the HTTP authorization listener
	// (docs/nginx.md, package httpauthz); empty means none. It serves TLS
	// with the gRPC listener's TLS options.
	HTTPAddr string
	// HTTPPathPrefix is removed from the HTTP listener's request paths
	// (Envoy's http_service path_prefix); see httpauthz.Options.
	HTTPPathPrefix string
	// Logger receives the server's logs (nil: none).
	Logger *slog.Logger
	// Registry holds the metrics /metrics serves; the server registers its
	// own on it. Nil means a new registry with the Go and process
	// collectors; a registry passed in gets only the server's metrics.
	Registry *prometheus.Registry
	// DrainTimeout bounds how long Serve waits for in-flight calls after
	// its context is cancelled, before closing them (default
	// DefaultDrainTimeout).
	DrainTimeout time.Duration
	// GRPCServerOptions are appended to the server's own gRPC options (for
	// transport credentials or interceptors).
	GRPCServerOptions []grpc.ServerOption

	// TLS, when set, serves gRPC over TLS (mutual TLS with a client CA),
	// rereading the files when they change.
	TLS *TLSOptions
	// ShutdownDelay is how long, once shutdown begins, the server keeps
	// serving while health says NOT_SERVING, so that load balancers and
	// gateways stop sending before the listener closes (default 0).
	ShutdownDelay time.Duration
	// MaxRecvMsgSize bounds a request message in bytes (default
	// DefaultMaxRecvMsgSize); MaxConcurrentStreams the calls in flight on
	// one connection (default DefaultMaxConcurrentStreams).
	MaxRecvMsgSize       int
	MaxConcurrentStreams uint32
	// MaxConnectionAge closes connections after about that long (with a
	// random jitter of ±10%), so that clients reconnect and load spreads
	// to new replicas; calls in flight then get MaxConnectionAgeGrace to
	// finish. Defaults DefaultMaxConnectionAge and
	// DefaultMaxConnectionAgeGrace; a negative value means never.
	MaxConnectionAge, MaxConnectionAgeGrace time.Duration
	// DecisionLogRate bounds the request log lines written per second at
	// each level (burst: as many); 0 means DefaultDecisionLogRate, a
	// negative value no limit.
	DecisionLogRate float64
	// TracerProvider, when set, traces every request (a span per Check,
	// Decide and HTTP authorization request, and per authorizer call);
	// nil: no tracing. See internal/tracing for the OTEL_* setup.
	TracerProvider trace.TracerProvider
	// Version is the version corsauthz_build_info reports (default: the
	// module version the binary was built from).
	Version string

	// MaxXDSStreams bounds the xDS streams open at once (default
	// xdsconfig.DefaultMaxStreams); past it a stream is refused with
	// RESOURCE_EXHAUSTED and counted.
	MaxXDSStreams int
	// GRPCMaxConnections bounds the gRPC listener's connections open at
	// once, idle ones included (default DefaultGRPCMaxConnections); past
	// it a connection is closed at once, and counted.
	GRPCMaxConnections int
	// HTTPMaxConnections bounds the HTTP listener's connections open at
	// once, idle ones included (default httpauthz.DefaultMaxConnections);
	// past it a connection is answered 503 and closed, and counted.
	HTTPMaxConnections int
	// HTTPIdleTimeout closes the HTTP listener's keep-alive connections
	// idle that long (default httpauthz.IdleTimeout).
	HTTPIdleTimeout time.Duration
}

// Server is the process's listeners: one gRPC server with the ext_authz
// API, the decision API (corsauthz.v1.DecisionService),
// grpc.health.v1.Health and reflection, and an admin HTTP server.
type Server struct {
	engines       *policy.Holder
	logger        *slog.Logger
	metrics       *Metrics
	drainTimeout  time.Duration
	shutdownDelay time.Duration
	reloadMu      sync.Mutex // serialises Reload

	grpc     *grpc.Server
	core     *decision.Core
	health   *health.Server
	admin    *http.Server
	grpcLis  net.Listener
	adminLis net.Listener
	http     *httpauthz.Server // nil without an HTTP listener
	httpLis  net.Listener
	started  atomic.Bool
	draining atomic.Bool
	drainCh  chan struct{} // closed when draining starts
	xds      *xdsconfig.Publisher
}

// New builds a Server deciding with the engine engines holds, and binds
// both listeners, so that an address in use is reported here rather than
// by Serve. Call Serve to serve.
func New(engines *policy.Holder, opts Options) (*Server, error) {
	if engines == nil {
		return nil, errors.New("server: nil policy holder")
	}
	s := &Server{
		engines:       engines,
		logger:        opts.Logger,
		drainTimeout:  opts.DrainTimeout,
		shutdownDelay: max(opts.ShutdownDelay, 0),
		drainCh:       make(chan struct{}),
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.drainTimeout <= 0 {
		s.drainTimeout = DefaultDrainTimeout
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	// Registering panics on a registry that has the metrics already: a
	// programming error, caught before any port is bound.
	s.metrics = NewMetrics(reg)
	s.metrics.SetConfig(engines.Load())
	s.metrics.setVersion(opts.Version)

	// One decision core for every front end, and its request log for
	// every line a client can cause.
	s.core = decision.New(engines, decision.Options{
		Logger:  s.logger,
		Metrics: s.metrics.Decisions(),
		LogRate: opts.DecisionLogRate,
		Tracer:  tracing.Tracer(opts.TracerProvider),
	})
	if err := s.core.Sync(engines.Load()); err != nil {
		s.logger.Error("authorizers: cannot build a client", slog.String("error", err.Error()))
	}

	var tlsCreds []grpc.ServerOption
	var certs *certReloader
	if opts.TLS != nil {
		var err error
		if certs, err = newCertReloader(*opts.TLS, s.logger, s.metrics, s.core); err != nil {
			return nil, err
		}
		tlsCreds = append(tlsCreds, grpc.Creds(certs.credentials()))
	}

	grpcAddr := cmp.Or(opts.GRPCAddr, DefaultGRPCAddr)
	adminAddr := cmp.Or(opts.AdminAddr, DefaultAdminAddr)

	var err error
	if s.grpcLis, err = listen(grpcAddr, "gRPC"); err != nil {
		return nil, err
	}
	s.grpcLis = s.limitGRPCConnections(s.grpcLis, opts.GRPCMaxConnections)
	if s.adminLis, err = listen(adminAddr, "the admin HTTP server"); err != nil {
		s.grpcLis.Close()
		return nil, err
	}
	if opts.HTTPAddr != "" {
		if s.httpLis, err = listen(opts.HTTPAddr, "HTTP authorization"); err != nil {
			s.grpcLis.Close()
			s.adminLis.Close()
			return nil, err
		}
	}

	if !isLoopback(s.adminLis.Addr()) {
		s.logger.Warn("the admin listener is not on loopback: /metrics, /healthz and /readyz can be reached from the network; bind --admin-addr to 127.0.0.1 unless that is intended, and restrict who can reach it",
			slog.String("admin_addr", s.adminLis.Addr().String()))
	}

	serverOpts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(cmp.Or(opts.MaxRecvMsgSize, DefaultMaxRecvMsgSize)),
		grpc.MaxConcurrentStreams(cmp.Or(opts.MaxConcurrentStreams, DefaultMaxConcurrentStreams)),
		// A call's metadata: gRPC's default would take 16 MiB of headers.
		grpc.MaxHeaderListSize(limits.MetadataSize),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             keepaliveMinTime,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionAge:      orDefaultAge(opts.MaxConnectionAge, DefaultMaxConnectionAge),
			MaxConnectionAgeGrace: orDefaultAge(opts.MaxConnectionAgeGrace, DefaultMaxConnectionAgeGrace),
			Time:                  keepaliveTime,
			Timeout:               keepaliveTimeout,
		}),
		grpc.ChainStreamInterceptor(s.endWatchOnDrain),
	}
	// The ext_authz fast path's codec and the transport settings measured
	// with cmd/loadbench.
	serverOpts = append(serverOpts, extauthz.ServerOptions(s.core)...)
	serverOpts = append(serverOpts, tlsCreds...)
	s.grpc = grpc.NewServer(append(serverOpts, opts.GRPCServerOptions...)...)
	extauthz.Register(s.grpc, extauthz.New(s.core))
	if s.httpLis != nil {
		if err := s.newHTTPListener(opts, certs); err != nil {
			s.grpcLis.Close()
			s.adminLis.Close()
			s.httpLis.Close()
			return nil, err
		}
	}
	corsauthzv1.RegisterDecisionServiceServer(s.grpc, decisionapi.New(s.core))
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	s.registerXDS(xdsconfig.NewPublisherWithOptions(xdsconfig.PublisherOptions{ // xds.go
		Registerer: reg,
		Logger:     s.logger,
		MaxStreams: opts.MaxXDSStreams,
		LogRate:    opts.DecisionLogRate,
	}))
	reflection.Register(s.grpc)
	s.syncHealth()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	s.admin = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: adminReadHeaderTimeout,
		ReadTimeout:       adminReadTimeout,
		WriteTimeout:      adminWriteTimeout,
		IdleTimeout:       adminIdleTimeout,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// orDefaultAge returns d, def when d is 0, or "never" (the largest
// duration, which gRPC reads as infinite) when d is negative.
func orDefaultAge(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return time.Duration(math.MaxInt64)
	}
	return d
}

// listen binds addr, with an error that says which listener failed and
// why, such as "listen on 127.0.0.1:9001 for gRPC: address already in use".
func listen(addr, what string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err == nil {
		return lis, nil
	}
	cause := err
	var sysErr *os.SyscallError
	var opErr *net.OpError
	switch {
	case errors.As(err, &sysErr):
		cause = sysErr.Err
	case errors.As(err, &opErr):
		cause = opErr.Err
	}
	return nil, fmt.Errorf("listen on %s for %s: %w", addr, what, cause)
}

// isLoopback reports whether addr is a TCP address on a loopback IP.
func isLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// GRPCAddr is the address the gRPC listener is bound to.
func (s *Server) GRPCAddr() net.Addr { return s.grpcLis.Addr() }

// AdminAddr is the address the admin HTTP listener is bound to.
func (s *Server) AdminAddr() net.Addr { return s.adminLis.Addr() }

// HTTPAddr is the address the HTTP authorization listener is bound to, or
// nil when there is none.
func (s *Server) HTTPAddr() net.Addr {
	if s.httpLis == nil {
		return nil
	}
	return s.httpLis.Addr()
}

// newHTTPListener builds the HTTP authorization listener's server, which
// decides with the same core as the gRPC front ends, behind its cap on
// connections (httpfront.go).
func (s *Server) newHTTPListener(opts Options, certs *certReloader) error {
	h, err := httpauthz.New(s.core, httpauthz.Options{PathPrefix: opts.HTTPPathPrefix, Ready: s.notReady})
	if err != nil {
		return err
	}
	var tlsConfig *tls.Config
	if certs != nil {
		tlsConfig = certs.httpTLSConfig()
	}
	s.http = h.Server(httpauthz.ServerOptions{IdleTimeout: opts.HTTPIdleTimeout, Log: httpListenerLog(s.core, s.metrics)})
	// The cap counts TCP connections; TLS is served above it, so that
	// the server sees the *tls.Conn it makes the handshake on.
	s.httpLis = s.limitHTTPConnections(s.httpLis, tlsConfig, opts.HTTPMaxConnections)
	if tlsConfig != nil {
		s.httpLis = tls.NewListener(s.httpLis, tlsConfig)
	}
	return nil
}

// notReady says why the server should get no traffic, or nil.
func (s *Server) notReady() error {
	switch {
	case s.draining.Load():
		return errors.New("shutting down")
	case s.engines.Load() == nil:
		return errors.New("no configuration loaded")
	}
	return nil
}

// ready reports whether the server should get traffic: a configuration is
// loaded and it is not shutting down.
func (s *Server) ready() bool {
	return !s.draining.Load() && s.engines.Load() != nil
}

// syncHealth sets the gRPC health status from the holder. After shutdown
// has begun the health server ignores it and stays NOT_SERVING.
func (s *Server) syncHealth() {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if s.ready() {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus("", st)
	for _, name := range healthServices {
		s.health.SetServingStatus(name, st)
	}
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	switch {
	case s.draining.Load():
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not ready: shutting down")
	case s.engines.Load() == nil:
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not ready: no configuration loaded")
	default:
		fmt.Fprintln(w, "ready")
	}
}

// Serve serves both listeners until ctx is cancelled, then shuts down:
// health goes NOT_SERVING (and /readyz 503), the gRPC listener closes,
// in-flight calls get up to DrainTimeout to finish before they are cut,
// and the admin server stops last. It returns nil after a shutdown asked
// for by ctx, or the error of a listener that failed. Serve may be called
// once.
func (s *Server) Serve(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("server: Serve called twice")
	}
	errc := make(chan error, 3)
	pending := 2
	go func() {
		err := s.grpc.Serve(s.grpcLis)
		if errors.Is(err, grpc.ErrServerStopped) && s.draining.Load() {
			err = nil // ctx was cancelled before Serve began
		}
		if err != nil {
			errc <- fmt.Errorf("serve gRPC on %s: %w", s.grpcLis.Addr(), err)
			return
		}
		errc <- nil
	}()
	go func() {
		if err := s.admin.Serve(s.adminLis); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("serve admin HTTP on %s: %w", s.adminLis.Addr(), err)
			return
		}
		errc <- nil
	}()
	attrs := []slog.Attr{
		slog.String("grpc_addr", s.grpcLis.Addr().String()),
		slog.String("admin_addr", s.adminLis.Addr().String()),
	}
	if s.http != nil {
		pending++
		go func() {
			if err := s.http.Serve(s.httpLis); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve HTTP authorization on %s: %w", s.httpLis.Addr(), err)
				return
			}
			errc <- nil
		}()
		attrs = append(attrs, slog.String("http_addr", s.httpLis.Addr().String()))
	}
	s.logger.LogAttrs(context.Background(), slog.LevelInfo, "serving", attrs...)

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		pending--
		if err == nil {
			err = errors.New("server: a listener stopped before shutdown")
		}
		s.logger.Error("listener failed: shutting down", slog.String("error", err.Error()))
	}
	s.shutdown()
	for ; pending > 0; pending-- {
		if e := <-errc; err == nil {
			err = e
		}
	}
	return err
}

func (s *Server) shutdown() {
	s.draining.Store(true)
	s.health.Shutdown() // NOT_SERVING for every service, from now on
	close(s.drainCh)
	if s.shutdownDelay > 0 {
		// Still serving, while health says NOT_SERVING, so that gateways
		// stop sending before the listener closes.
		s.logger.Info("shutting down: health is NOT_SERVING; still serving during the shutdown delay", slog.Duration("delay", s.shutdownDelay))
		time.Sleep(s.shutdownDelay)
	}
	s.logger.Info("shutting down: draining gRPC calls", slog.Duration("timeout", s.drainTimeout))

	httpStopped := make(chan struct{})
	go func() {
		defer close(httpStopped)
		s.shutdownHTTP()
	}()
	s.endXDSStreams() // xds.go
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(s.drainTimeout)
	select {
	case <-stopped:
		timer.Stop()
	case <-timer.C:
		s.logger.Warn("drain timeout: closing the remaining gRPC calls", slog.Duration("timeout", s.drainTimeout))
		s.grpc.Stop()
		<-stopped
	}
	<-httpStopped

	ctx, cancel := context.WithTimeout(context.Background(), adminShutdownTimeout)
	defer cancel()
	if err := s.admin.Shutdown(ctx); err != nil {
		s.admin.Close()
	}
	s.core.Close()
	s.logger.Info("shut down")
}

// shutdownHTTP stops the HTTP listener: it closes, idle connections are
// closed, and requests in flight get the drain timeout to finish.
func (s *Server) shutdownHTTP() {
	if s.http == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.drainTimeout)
	defer cancel()
	if err := s.http.Shutdown(ctx); err != nil {
		s.logger.Warn("drain timeout: closing the remaining HTTP authorization requests", slog.Duration("timeout", s.drainTimeout))
		s.http.Close()
	}
}

// endWatchOnDrain ends health Watch streams once shutdown has begun and
// their NOT_SERVING update has been sent: GracefulStop waits for every
// stream, and a watcher would otherwise hold it for the whole DrainTimeout.
func (s *Server) endWatchOnDrain(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if info.FullMethod != healthpb.Health_Watch_FullMethodName {
		return handler(srv, ss)
	}
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	w := &watchStream{ServerStream: ss, ctx: ctx, notServingSent: make(chan struct{}, 1)}
	go func() {
		select {
		case <-s.drainCh:
		case <-ctx.Done():
			return
		}
		timer := time.NewTimer(watchDrainWait)
		defer timer.Stop()
		select {
		case <-w.notServingSent:
		case <-timer.C:
		case <-ctx.Done():
		}
		cancel()
	}()
	return handler(srv, w)
}

// watchStream is a health Watch stream whose context ends at shutdown, and
// which tells when the last status it sent was not SERVING.
type watchStream struct {
	grpc.ServerStream
	ctx            context.Context
	notServingSent chan struct{} // holds a token while the last status sent is not SERVING
}

func (w *watchStream) Context() context.Context { return w.ctx }

func (w *watchStream) SendMsg(m any) error {
	err := w.ServerStream.SendMsg(m)
	if resp, ok := m.(*healthpb.HealthCheckResponse); ok && err == nil {
		if resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			select {
			case <-w.notServingSent:
			default:
			}
		} else {
			select {
			case w.notServingSent <- struct{}{}:
			default:
			}
		}
	}
	return err
}

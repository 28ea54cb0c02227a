package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/corsauthz/corsauthz/internal/tracing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/corsauthz/corsauthz/httpauthz"
	"github.com/corsauthz/corsauthz/internal/configwatch"
	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/server"
	"github.com/corsauthz/corsauthz/xdsconfig"
)

var serveHelp = commandHelp{
	usage: "corsauthz serve [--config FILE] [--grpc-addr ADDR] [--http-addr ADDR] [--admin-addr ADDR] [flags]",
	description: `Serves CORS decisions for API gateways:
  --grpc-addr   gRPC: Envoy's ext_authz Check, the decision API (Decide,
                ListPolicies), xDS for the Go middleware and the Caddy module,
                health and reflection;
  --http-addr   HTTP authorization for NGINX's auth_request and Envoy's
                http_service;
  --admin-addr  HTTP /healthz, /readyz and /metrics.
Without --config it serves the built-in example configuration and says so.
With --config it reloads the file when it changes and on SIGHUP, keeping the
configuration in force when the new one is invalid. SIGTERM or SIGINT:
health turns NOT_SERVING, calls in flight finish (at most --drain-timeout),
exit 0. An invalid configuration or an address that cannot be listened on:
the reason on stderr, exit 1.`,
}

func runServe(ctx context.Context, args []string, io IO) int {
	fs := newFlagSet("serve", io)
	config := fs.String("config", "", "configuration `FILE` (default: the built-in example)")
	maxConfigBytes := maxConfigBytesFlag(fs)
	grpcAddr := fs.String("grpc-addr", server.DefaultGRPCAddr, "`ADDR` for gRPC: ext_authz, the decision API, xDS, health and reflection")
	adminAddr := fs.String("admin-addr", server.DefaultAdminAddr, "`ADDR` for HTTP /healthz, /readyz and /metrics")
	httpAddr := fs.String("http-addr", server.DefaultHTTPAddr, "`ADDR` for HTTP authorization (NGINX auth_request, Envoy's http_service); empty: none")
	httpPrefix := fs.String("http-path-prefix", "", "`PREFIX` removed from the HTTP authorization request's path (Envoy's http_service path_prefix)")
	drain := fs.Duration("drain-timeout", server.DefaultDrainTimeout, "on SIGTERM, how long (`DURATION`) in-flight calls may take before they are cut")
	logLevel := fs.String("log-level", "info", "`LEVEL`: debug, info, warn or error (debug logs every decision)")
	logFormat := fs.String("log-format", "text", "`FORMAT`: text or json")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the serving process to this `FILE` (for performance work)")
	checkInterval := fs.Duration("config-check-interval", configwatch.DefaultInterval, "with --config: how often (`DURATION`) the file is reread even without filesystem events (0: only on events and SIGHUP)")
	shutdownDelay := fs.Duration("shutdown-delay", 0, "on SIGTERM, how long (`DURATION`) to keep serving while health says NOT_SERVING, before the listeners close (so load balancers notice)")
	tlsCert := fs.String("tls-cert-file", "", "PEM certificate (chain) `FILE` for TLS on the gRPC and HTTP authorization listeners (the admin listener stays plain HTTP); reread when it changes")
	tlsKey := fs.String("tls-key-file", "", "PEM private key `FILE` of --tls-cert-file")
	tlsClientCA := fs.String("tls-client-ca-file", "", "PEM CA bundle `FILE`: require client certificates signed by it on the gRPC and HTTP authorization listeners (mutual TLS)")
	tlsReload := fs.Duration("tls-reload-interval", server.DefaultTLSReloadInterval, "how often (`DURATION`), at most, the TLS files are checked for a change")
	maxConnAge := fs.Duration("max-connection-age", server.DefaultMaxConnectionAge, "close gRPC connections after about this long (`DURATION`) so load spreads to new replicas (0: never)")
	maxConnAgeGrace := fs.Duration("max-connection-age-grace", server.DefaultMaxConnectionAgeGrace, "time (`DURATION`) calls in flight get to finish on a connection closed for its age (0: unbounded)")
	maxStreams := fs.Uint("max-concurrent-streams", server.DefaultMaxConcurrentStreams, "`CALLS` in flight allowed on one gRPC connection")
	maxMsg := fs.Int("max-recv-msg-size", server.DefaultMaxRecvMsgSize, "largest gRPC request message accepted, in `BYTES`")
	logRate := fs.Float64("decision-log-rate", server.DefaultDecisionLogRate, "decision log `LINES` per second, per level, before lines are dropped and counted (0: no limit)")
	grpcMaxConns := fs.Int("grpc-max-connections", server.DefaultGRPCMaxConnections, "`CONNECTIONS` open at once on the gRPC listener, idle ones included; past it a connection is closed at once and the client retries")
	maxXDSStreams := fs.Int("max-xds-streams", xdsconfig.DefaultMaxStreams, "xDS `STREAMS` (gateways in local mode) open at once; past it a stream is refused with RESOURCE_EXHAUSTED and the gateway retries")
	httpMaxConns := fs.Int("http-max-connections", httpauthz.DefaultMaxConnections, "`CONNECTIONS` open at once on the HTTP authorization listener, idle ones included; past it a connection is answered 503 and closed")
	httpIdle := fs.Duration("http-idle-timeout", httpauthz.IdleTimeout, "close HTTP authorization keep-alive connections idle this long (`DURATION`)")
	positional, code, ok := parseFlags(fs, args, false, serveHelp, io)
	if !ok {
		return code
	}
	if err := applyEnv(fs, io.Env); err != nil {
		fmt.Fprintf(io.Stderr, "corsauthz serve: %v\n", err)
		return 2
	}
	if len(positional) > 0 {
		fmt.Fprintf(io.Stderr, "corsauthz serve: unexpected argument %q\n", positional[0])
		return 2
	}
	listeners := []listenerFlag{{"grpc-addr", "gRPC", *grpcAddr}, {"admin-addr", "admin HTTP server", *adminAddr}, {"http-addr", "HTTP authorization", *httpAddr}}
	if err := distinctAddresses(listeners); err != nil {
		fmt.Fprintf(io.Stderr, "corsauthz serve: %v\n", err)
		return 2
	}
	logger, err := newLogger(io, *logLevel, *logFormat)
	if err != nil {
		fmt.Fprintf(io.Stderr, "corsauthz serve: %v\n", err)
		return 2
	}
	tlsOpts, err := tlsOptions(*tlsCert, *tlsKey, *tlsClientCA, *tlsReload)
	if err != nil {
		fmt.Fprintf(io.Stderr, "corsauthz serve: %v\n", err)
		return 2
	}
	if *maxStreams == 0 || *maxStreams > 1<<31 || *maxMsg <= 0 || *logRate < 0 {
		fmt.Fprintln(io.Stderr, "corsauthz serve: --max-concurrent-streams and --max-recv-msg-size must be positive, --decision-log-rate 0 or more")
		return 2
	}
	if *maxConfigBytes <= 0 {
		fmt.Fprintln(io.Stderr, "corsauthz serve: --max-config-bytes must be positive")
		return 2
	}
	if *maxXDSStreams <= 0 || *grpcMaxConns <= 0 || *httpMaxConns <= 0 || *httpIdle <= 0 {
		fmt.Fprintln(io.Stderr, "corsauthz serve: --max-xds-streams, --grpc-max-connections, --http-max-connections and --http-idle-timeout must be positive")
		return 2
	}

	if *config == "" {
		logger.Warn("no --config given: serving the built-in example configuration", "config", orExample(""))
	}
	var tuning *runtimeTuning // runtime.go
	if io.TuneRuntime {
		tuning = newRuntimeTuning(io.Env, os.ReadFile)
	}
	tuning.start()
	tuning.loading()
	e, err := loadConfigOrStop(ctx, *config, *maxConfigBytes, io)
	if errors.Is(err, context.Canceled) {
		fmt.Fprintf(io.Stderr, "corsauthz serve: stopped while loading the configuration %s\n", orExample(*config))
		return 1
	}
	if err != nil {
		fmt.Fprintf(io.Stderr, "corsauthz serve: the configuration %s is invalid:\n", orExample(*config))
		printConfigError(io.Stderr, err)
		return 1
	}

	logger.Info("configuration loaded",
		"config", orExample(*config),
		"config_hash", e.Hash(),
		"policies", strings.Join(e.PolicyNames(), ","),
		"version", Version())

	// Tracing, when the OTEL_* environment asks for it (off by default).
	getenv := func(name string) string { v, _ := io.Env(name); return v }
	tp, err := tracing.Setup(ctx, Version(), getenv)
	if err != nil {
		fmt.Fprintf(io.Stderr, "corsauthz serve: tracing: %v\n", err)
		return 1
	}
	var tracerProvider trace.TracerProvider
	if tp != nil {
		tracerProvider = tp
		logger.Info("tracing: spans exported over OTLP (OTEL_* environment)")
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = tp.Shutdown(sctx) // flush the last spans
		}()
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := server.New(policy.NewHolder(e), server.Options{
		GRPCAddr:              *grpcAddr,
		AdminAddr:             *adminAddr,
		HTTPAddr:              *httpAddr,
		HTTPPathPrefix:        *httpPrefix,
		Logger:                logger,
		Registry:              reg,
		DrainTimeout:          *drain,
		ShutdownDelay:         *shutdownDelay,
		TLS:                   tlsOpts,
		MaxConnectionAge:      zeroIsNever(*maxConnAge),
		MaxConnectionAgeGrace: zeroIsNever(*maxConnAgeGrace),
		MaxConcurrentStreams:  uint32(*maxStreams),
		MaxRecvMsgSize:        *maxMsg,
		DecisionLogRate:       zeroIsNoLimit(*logRate),
		Version:               Version(),
		TracerProvider:        tracerProvider,
		MaxXDSStreams:         *maxXDSStreams,
		GRPCMaxConnections:    *grpcMaxConns,
		HTTPMaxConnections:    *httpMaxConns,
		HTTPIdleTimeout:       *httpIdle,
	})
	if err != nil {
		fmt.Fprintf(io.Stderr, "corsauthz serve: %v%s\n", err, listenAdvice(err, listeners))
		return 1
	}
	if gcPercent, limit := tuning.serving(); gcPercent != 0 { // runtime.go
		logger.Info("garbage collector", "gc_percent", gcPercent, "runtime_memory_limit_bytes", limit)
	}
	stopProfile, err := startCPUProfile(*cpuProfile)
	if err != nil {
		fmt.Fprintf(io.Stderr, "corsauthz serve: %v\n", err)
		return 1
	}
	defer stopProfile()
	if *config != "" {
		stopWatch := watchConfig(ctx, srv, *config, e.Hash(), *checkInterval, *maxConfigBytes, logger, tuning)
		defer stopWatch()
	}
	if err := srv.Serve(ctx); err != nil {
		fmt.Fprintf(io.Stderr, "corsauthz serve: %v\n", err)
		return 1
	}
	logger.Info("stopped")
	return 0
}

// listenerFlag is a flag that names an address serve listens on.
type listenerFlag struct {
	name string // the flag, without dashes
	what string // the words server.New's listen error uses for it
	addr string // its value
}

// distinctAddresses refuses two listeners given the same address (port 0,
// any free port, excepted): the second could never listen.
func distinctAddresses(ls []listenerFlag) error {
	for i, a := range ls {
		for _, b := range ls[i+1:] {
			if a.addr != "" && a.addr == b.addr && !strings.HasSuffix(a.addr, ":0") {
				return fmt.Errorf("--%s and --%s are both %s: give each listener its own port", a.name, b.name, a.addr)
			}
		}
	}
	return nil
}

// listenAdvice says which flag to change when server.New could not listen
// on an address (taken, not on this machine, or a privileged port), or ""
// for any other error.
func listenAdvice(err error, ls []listenerFlag) string {
	if !errors.Is(err, syscall.EADDRINUSE) && !errors.Is(err, syscall.EADDRNOTAVAIL) && !errors.Is(err, syscall.EACCES) {
		return ""
	}
	msg := err.Error()
	var match *listenerFlag
	for i, l := range ls {
		if l.addr == "" || !strings.Contains(msg, "listen on "+l.addr+" ") {
			continue
		}
		if match == nil || strings.Contains(msg, l.what) {
			match = &ls[i]
		}
	}
	if match == nil {
		return ""
	}
	why := "another process is listening there"
	switch {
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		why = "no interface of this machine has that address"
	case errors.Is(err, syscall.EACCES):
		why = "ports below 1024 need privileges"
	}
	return fmt.Sprintf(" (%s): choose another address with --%s (or %s)", why, match.name, EnvName(match.name))
}

// watchConfig reloads the configuration file into srv when it changes and
// on SIGHUP, until the returned function is called; that function returns
// once the watch has stopped.
func watchConfig(ctx context.Context, srv *server.Server, path, hash string, interval time.Duration, maxBytes int64, logger *slog.Logger, tuning *runtimeTuning) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	if interval == 0 {
		interval = -1 // configwatch: no periodic check
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		_ = configwatch.Watch(ctx, path, configwatch.Options{
			Interval:    interval,
			MaxBytes:    maxBytes,
			Trigger:     hup,
			InitialHash: hash,
			Logger:      logger,
		}, func(ctx context.Context, c configwatch.Change) {
			if c.Err != nil {
				srv.ReloadFailed(ctx, path, c.Err)
				return
			}
			if c.Forced {
				logger.Info("SIGHUP: reloading the configuration", "config", path)
			}
			tuning.loading()
			_ = srv.Reload(ctx, path, c.Data) // logged and counted by Reload
			if gcPercent, limit := tuning.serving(); gcPercent != 0 {
				logger.Debug("garbage collector", "gc_percent", gcPercent, "runtime_memory_limit_bytes", limit)
			}
		})
	})
	logger.Info("watching the configuration file for changes; SIGHUP reloads it",
		"config", path, "check_interval", max(interval, 0))
	return func() {
		signal.Stop(hup)
		cancel()
		wg.Wait()
	}
}

// loadConfigOrStop is loadConfig, given up when ctx is done (SIGTERM or
// SIGINT) before the load ends, with ctx's error: the process stops at
// once rather than after a load that may take seconds. The load goes on
// in the background until the process exits.
func loadConfigOrStop(ctx context.Context, path string, maxBytes int64, io IO) (*policy.Engine, error) {
	type result struct {
		e   *policy.Engine
		err error
	}
	done := make(chan result, 1)
	go func() {
		e, err := loadConfig(path, maxBytes, io)
		done <- result{e, err}
	}()
	select {
	case r := <-done:
		return r.e, r.err
	case <-ctx.Done():
		return nil, context.Canceled
	}
}

// tlsOptions checks the TLS flags: none, or a certificate and its key,
// with or without a client CA.
func tlsOptions(cert, key, clientCA string, reload time.Duration) (*server.TLSOptions, error) {
	switch {
	case cert == "" && key == "" && clientCA == "":
		return nil, nil
	case cert == "" || key == "":
		return nil, fmt.Errorf("TLS needs both --tls-cert-file and --tls-key-file")
	}
	return &server.TLSOptions{CertFile: cert, KeyFile: key, ClientCAFile: clientCA, ReloadInterval: reload}, nil
}

// zeroIsNever maps a flag's 0 ("never") to server.Options' negative value.
func zeroIsNever(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// zeroIsNoLimit maps --decision-log-rate 0 ("no limit") to
// server.Options' negative value.
func zeroIsNoLimit(rate float64) float64 {
	if rate == 0 {
		return -1
	}
	return rate
}

func newLogger(io IO, level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: write debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(io.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(io.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: write text or json", format)
}

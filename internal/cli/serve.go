package cli

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/server"
)

func runServe(ctx context.Context, args []string, io IO) int {
	fs := newFlagSet("serve", io)
	config := fs.String("config", "", "configuration file (default: the built-in example)")
	grpcAddr := fs.String("grpc-addr", "127.0.0.1:9001", "address for gRPC: ext_authz, the decision API, health and reflection")
	adminAddr := fs.String("admin-addr", "127.0.0.1:9002", "address for HTTP /healthz, /readyz and /metrics")
	drain := fs.Duration("drain-timeout", 10*time.Second, "on SIGTERM, how long in-flight calls may take before they are cut")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error (debug logs every decision)")
	logFormat := fs.String("log-format", "text", "text or json")
	fs.Usage = func() {
		fmt.Fprint(io.Stderr, "Usage: corsauthz serve [--config FILE] [--grpc-addr ADDR] [--admin-addr ADDR]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := applyEnv(fs, io.Env); err != nil {
		fmt.Fprintf(io.Stderr, "corsauthz serve: %v\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(io.Stderr, "corsauthz serve: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	logger, err := newLogger(io, *logLevel, *logFormat)
	if err != nil {
		fmt.Fprintf(io.Stderr, "corsauthz serve: %v\n", err)
		return 2
	}

	if *config == "" {
		logger.Warn("no --config given: serving the built-in example configuration", "config", orExample(""))
	}
	e, err := loadConfig(*config, io)
	if err != nil {
		fmt.Fprintf(io.Stderr, "corsauthz serve: the configuration %s is invalid:\n", orExample(*config))
		printConfigError(io.Stderr, err)
		return 1
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := server.New(policy.NewHolder(e), server.Options{
		GRPCAddr:     *grpcAddr,
		AdminAddr:    *adminAddr,
		Logger:       logger,
		Registry:     reg,
		DrainTimeout: *drain,
	})
	if err != nil {
		fmt.Fprintf(io.Stderr, "corsauthz serve: %v\n", err)
		return 1
	}
	logger.Info("serving",
		"grpc_addr", srv.GRPCAddr().String(),
		"admin_addr", srv.AdminAddr().String(),
		"config", orExample(*config),
		"config_hash", e.Hash(),
		"policies", strings.Join(e.PolicyNames(), ","),
		"version", Version())
	if err := srv.Serve(ctx); err != nil {
		fmt.Fprintf(io.Stderr, "corsauthz serve: %v\n", err)
		return 1
	}
	logger.Info("stopped")
	return 0
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

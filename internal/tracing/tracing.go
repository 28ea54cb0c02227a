// Package tracing sets up OpenTelemetry tracing from the standard OTEL_*
// environment, off unless asked for, and carries trace context across the
// wire formats corsauthz reads and writes (gRPC metadata, HTTP headers).
//
// Tracing is on when OTEL_TRACES_EXPORTER is "otlp", or when an OTLP
// endpoint is set (OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) and OTEL_TRACES_EXPORTER is not
// "none"; OTEL_SDK_DISABLED=true turns it off whatever else is set. The
// exporter speaks OTLP over HTTP (the specification's default) or gRPC
// (OTEL_EXPORTER_OTLP_PROTOCOL=grpc) and reads its own OTEL_EXPORTER_OTLP_*
// settings; the sampler is OTEL_TRACES_SAMPLER's (parent-based, always on
// by default), the resource OTEL_SERVICE_NAME's and
// OTEL_RESOURCE_ATTRIBUTES'. Context is propagated with W3C Trace Context
// and Baggage.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
)

// ScopeName is the instrumentation scope of corsauthz's spans.
const ScopeName = "github.com/corsauthz/corsauthz"

// Propagator is the propagator of every front end and authorizer call:
// W3C Trace Context and Baggage.
var Propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// Enabled reports whether the environment asks for tracing.
func Enabled(getenv func(string) string) bool {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	switch exporter := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))); exporter {
	case "otlp":
		return true
	case "", "none":
		return exporter == "" && (getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "")
	}
	return false
}

// ErrUnsupportedExporter is returned for an OTEL_TRACES_EXPORTER other than
// otlp or none.
var ErrUnsupportedExporter = errors.New("OTEL_TRACES_EXPORTER: corsauthz exports traces with otlp only (or none)")

// Setup builds the tracer provider the environment asks for, or returns a
// nil provider when tracing is off. version names the service version.
// getenv decides whether tracing is on and which protocol the exporter
// speaks; the exporter and the SDK read their own OTEL_* settings
// (endpoint, headers, sampler, resource) from the process environment, so
// getenv must be the process environment's (os.Getenv) but in tests of
// Enabled. Shut the provider down at exit to flush the last spans.
func Setup(ctx context.Context, version string, getenv func(string) string) (*sdktrace.TracerProvider, error) {
	exporter := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")))
	if exporter != "" && exporter != "otlp" && exporter != "none" {
		return nil, fmt.Errorf("%w, not %q", ErrUnsupportedExporter, exporter)
	}
	if !Enabled(getenv) {
		return nil, nil
	}
	var (
		exp *otlptrace.Exporter
		err error
	)
	protocol := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch protocol {
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	case "", "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	default:
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL %q: write grpc or http/protobuf", protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		semconv.ServiceVersion(version),
	))
	if err != nil {
		res = resource.Default()
	}
	if getenv("OTEL_SERVICE_NAME") == "" && !strings.Contains(getenv("OTEL_RESOURCE_ATTRIBUTES"), "service.name=") {
		res, _ = resource.Merge(res, resource.NewSchemaless(semconv.ServiceName("corsauthz")))
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}

// Tracer is the tracer of provider p, or nil when p is nil (tracing off).
func Tracer(p trace.TracerProvider) trace.Tracer {
	if p == nil {
		return nil
	}
	return p.Tracer(ScopeName)
}

// FromMetadata returns ctx with the trace context of the incoming gRPC
// call's metadata (Envoy sends its span's context there).
func FromMetadata(ctx context.Context) context.Context {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return ctx
	}
	return Propagator.Extract(ctx, metadataCarrier(md))
}

// FromHeader returns ctx with the trace context of an HTTP request's
// headers, unless ctx carries a span already (a gateway's own tracing).
func FromHeader(ctx context.Context, h http.Header) context.Context {
	if trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	return Propagator.Extract(ctx, propagation.HeaderCarrier(h))
}

// ToHeader writes ctx's trace context into an outgoing HTTP request's
// headers, when ctx has a span: without tracing it costs a lookup.
func ToHeader(ctx context.Context, h http.Header) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	Propagator.Inject(ctx, propagation.HeaderCarrier(h))
}

// ToMetadata returns ctx with its trace context in the outgoing gRPC
// metadata.
func ToMetadata(ctx context.Context) context.Context {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	md = md.Copy()
	Propagator.Inject(ctx, metadataCarrier(md))
	return metadata.NewOutgoingContext(ctx, md)
}

// metadataCarrier adapts gRPC metadata to a propagation.TextMapCarrier.
type metadataCarrier metadata.MD

func (c metadataCarrier) Get(key string) string {
	if vs := metadata.MD(c).Get(key); len(vs) > 0 {
		return vs[0]
	}
	return ""
}

func (c metadataCarrier) Set(key, value string) { metadata.MD(c).Set(key, value) }

func (c metadataCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// Getenv is os.Getenv, for Setup and Enabled.
var Getenv = os.Getenv

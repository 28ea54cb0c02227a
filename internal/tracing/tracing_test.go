package tracing_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/corsauthz/corsauthz/internal/tracing"
)

func TestEnabled(t *testing.T) {
	for _, tc := range []struct {
		desc string
		env  map[string]string
		want bool
	}{
		{desc: "nothing set: off", env: nil, want: false},
		{desc: "otlp exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, want: true},
		{desc: "an endpoint alone", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, want: true},
		{desc: "a traces endpoint alone", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, want: true},
		{desc: "exporter none wins over an endpoint", env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, want: false},
		{desc: "SDK disabled wins", env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, want: false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if got := tracing.Enabled(func(k string) string { return tc.env[k] }); got != tc.want {
				t.Errorf("Enabled = %t, want %t", got, tc.want)
			}
		})
	}
}

func TestSetupRefusesOtherExporters(t *testing.T) {
	env := map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}
	tp, err := tracing.Setup(context.Background(), "test", func(k string) string { return env[k] })
	if tp != nil || !errors.Is(err, tracing.ErrUnsupportedExporter) {
		t.Errorf("Setup = %v, %v; want ErrUnsupportedExporter", tp, err)
	}
	if tp, err := tracing.Setup(context.Background(), "test", func(string) string { return "" }); tp != nil || err != nil {
		t.Errorf("Setup with nothing set = %v, %v; want no provider, no error", tp, err)
	}
}

// TestHeaderRoundTrip: a span's context written to HTTP headers is read
// back as the same trace; without a span nothing is written.
func TestHeaderRoundTrip(t *testing.T) {
	h := http.Header{}
	tracing.ToHeader(context.Background(), h)
	if len(h) != 0 {
		t.Errorf("headers without a span: %v", h)
	}
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("t").Start(context.Background(), "s")
	defer span.End()
	tracing.ToHeader(ctx, h)
	got := trace.SpanContextFromContext(tracing.FromHeader(context.Background(), h))
	if got.TraceID() != span.SpanContext().TraceID() || got.SpanID() != span.SpanContext().SpanID() {
		t.Errorf("read back %v, want %v", got, span.SpanContext())
	}
}

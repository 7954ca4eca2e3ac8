// Package tracing sets up OpenTelemetry traces for a securemsg process and carries trace
// context across the hops gRPC instrumentation cannot see: the transactional outbox (a row
// written in one process, published later by a relay), JetStream messages, and rows a service
// queues for later work (notification's deliveries).
//
// Export is off unless the standard OTEL_* variables ask for it (Setup); off, every tracer is
// OpenTelemetry's no-op and the helpers here cost a context lookup. On, spans leave the process
// only through a redacting exporter (redact.go) that keeps an allow-list of attribute keys and
// drops status descriptions and exception events, so no PHI, token or key can reach a trace
// backend through an attribute some library adds in a later version.
//
// Only the W3C traceparent and tracestate headers are propagated; baggage is not, because it
// is free text a caller could fill with anything.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the spans securemsg's own code starts.
const ScopeName = "github.com/securemsg/securemsg"

// Propagator is the one context propagator every hop uses: W3C trace context only.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// Tracer returns the tracer securemsg's own spans come from. It follows the global provider,
// so a tracer taken before Setup still exports once Setup installed one.
func Tracer() trace.Tracer { return otel.Tracer(ScopeName) }

// Enabled reports whether the environment asks for trace export: an OTLP endpoint is set
// (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), OTEL_TRACES_EXPORTER is
// unset or "otlp", and OTEL_SDK_DISABLED is not "true".
func Enabled(getenv func(string) string) bool {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	switch strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))) {
	case "", "otlp":
	default: // "none", or an exporter this build does not carry
		return false
	}
	return getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != ""
}

// Setup installs the process's tracer provider and propagator when Enabled, and returns the
// function that flushes and stops it at shutdown (a no-op when tracing is off). The exporter,
// endpoint, headers, TLS and timeouts come from the standard OTEL_EXPORTER_OTLP_* variables
// (the protocol from OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
// or "http/protobuf", the default), sampling from OTEL_TRACES_SAMPLER(_ARG), batching from
// OTEL_BSP_*; service.name is OTEL_SERVICE_NAME, else "securemsg-<service>".
func Setup(ctx context.Context, service string) (shutdown func(context.Context) error, err error) {
	otel.SetTextMapPropagator(Propagator)
	if !Enabled(os.Getenv) {
		return func(context.Context) error { return nil }, nil
	}
	exp, err := newExporter(ctx, os.Getenv)
	if err != nil {
		return nil, err
	}
	res, err := newResource(ctx, service)
	if err != nil {
		return nil, errors.Join(err, exp.Shutdown(ctx))
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(Redacting(exp)),
		sdktrace.WithResource(res),
	)
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}

// newExporter builds the OTLP exporter for the configured protocol; the exporters read the rest
// of their configuration from the environment themselves.
func newExporter(ctx context.Context, getenv func(string) string) (sdktrace.SpanExporter, error) {
	protocol := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch strings.ToLower(strings.TrimSpace(protocol)) {
	case "", "http/protobuf":
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("tracing: OTLP/HTTP exporter: %w", err)
		}
		return exp, nil
	case "grpc":
		exp, err := otlptracegrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("tracing: OTLP/gRPC exporter: %w", err)
		}
		return exp, nil
	default:
		return nil, fmt.Errorf("tracing: OTEL_EXPORTER_OTLP_PROTOCOL %q is not supported (want grpc or http/protobuf)", protocol)
	}
}

// newResource says who produced the spans: the service's name and build, plus whatever
// OTEL_RESOURCE_ATTRIBUTES adds (the pod and namespace, say).
func newResource(ctx context.Context, service string) (*resource.Resource, error) {
	name := os.Getenv("OTEL_SERVICE_NAME")
	if name == "" {
		name = "securemsg-" + service
	}
	version := "devel"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		version = bi.Main.Version
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(name), semconv.ServiceVersion(version), semconv.ServiceNamespace("securemsg")),
		resource.WithFromEnv(),
		resource.WithTelemetrySDK(),
	)
	if err != nil && res == nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	// A partial resource (an unparsable OTEL_RESOURCE_ATTRIBUTES entry, say) still names the
	// service; tracing should not keep a service from starting.
	return res, nil
}

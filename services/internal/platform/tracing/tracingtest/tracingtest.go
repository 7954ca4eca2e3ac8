// Package tracingtest records the spans a test's code starts, for assertions: a tracer
// provider exporting synchronously into memory, installed as the global one for the test (the
// code under test takes its tracer from tracing.Tracer, which follows the global provider).
// Tests that use it must not run in parallel with other tracing tests of the same package.
package tracingtest

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// Record installs a recording tracer provider until tb ends and returns it with its spans.
func Record(tb testing.TB) (*sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	tb.Helper()
	mem := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(mem))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	tb.Cleanup(func() { otel.SetTracerProvider(prev); _ = tp.Shutdown(context.Background()) })
	return tp, mem
}

package tracing

import (
	"context"
	"maps"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// TraceParentHeader is the W3C header that names a span as the parent of the next hop.
const TraceParentHeader = "traceparent"

// InjectHeaders returns headers with the trace context of ctx's span added (traceparent, and
// tracestate when there is one); headers itself is not changed. Without a valid span in ctx
// it returns headers as they were, so untraced work adds nothing to an outbox row.
func InjectHeaders(ctx context.Context, headers map[string]string) map[string]string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return headers
	}
	out := make(map[string]string, len(headers)+2)
	maps.Copy(out, headers)
	Propagator.Inject(ctx, propagation.MapCarrier(out))
	return out
}

// TraceParent is ctx's span as a traceparent value, or "" when ctx carries no valid span: what
// a row queued for later work stores so that the work continues the trace.
func TraceParent(ctx context.Context) string {
	return InjectHeaders(ctx, nil)[TraceParentHeader]
}

// WithRemoteParent returns ctx with the span named by traceparent as its remote parent; an
// empty or malformed value leaves ctx as it is (the work then starts a trace of its own).
func WithRemoteParent(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return Propagator.Extract(ctx, propagation.MapCarrier{TraceParentHeader: traceparent})
}

// MultiMapCarrier carries trace context in headers with several values per key and exact,
// case-sensitive keys, as NATS headers are (nats.Header converts to it directly).
// propagation.HeaderCarrier would canonicalise the keys to "Traceparent".
type MultiMapCarrier map[string][]string

var _ propagation.TextMapCarrier = MultiMapCarrier(nil)

// Get returns the first value of key.
func (c MultiMapCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Set replaces the values of key.
func (c MultiMapCarrier) Set(key, value string) { c[key] = []string{value} }

// Keys lists the keys present.
func (c MultiMapCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

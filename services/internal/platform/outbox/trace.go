package outbox

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/securemsg/securemsg/services/internal/platform/tracing"
)

var publishAttrs = trace.WithAttributes(
	attribute.String("messaging.system", "nats"),
	attribute.String("messaging.operation.type", "send"),
)

// publishSpan starts the span of one event's publish as a child of the request that wrote the
// event (the traceparent NewRows stored with the row), and puts the span's own context into the
// message's headers, replacing the stored one, so a consumer's span hangs under the publish.
// An event written outside any trace gets no span: the relay's loop alone would start a trace
// for every event.
func publishSpan(ctx context.Context, stored map[string]string, header map[string][]string) trace.Span {
	parent := tracing.Propagator.Extract(ctx, propagation.MapCarrier(stored))
	if !trace.SpanContextFromContext(parent).IsValid() {
		return nil
	}
	spanCtx, span := tracing.Tracer().Start(parent, "outbox publish", trace.WithSpanKind(trace.SpanKindProducer), publishAttrs)
	tracing.Propagator.Inject(spanCtx, tracing.MultiMapCarrier(header))
	return span
}

// endPublishSpan ends a publish's span once JetStream acknowledged the event or refused it.
func endPublishSpan(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.SetStatus(codes.Error, "")
	}
	span.End()
}

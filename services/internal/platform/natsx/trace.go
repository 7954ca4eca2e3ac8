package natsx

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/securemsg/securemsg/services/internal/platform/tracing"
)

// StartProcessSpan starts the span of handling one JetStream message, continuing the trace the
// publisher put in its headers (the outbox relay's publish span). It names the stream and the
// durable, never the subject, whose last tokens are ids. A message without trace context gets
// no span: ctx is returned as it is and the span is a no-op.
func StartProcessSpan(ctx context.Context, msg jetstream.Msg, stream, durable string) (context.Context, trace.Span) {
	parent := tracing.Propagator.Extract(ctx, tracing.MultiMapCarrier(msg.Headers()))
	if !trace.SpanContextFromContext(parent).IsValid() {
		return ctx, noop.Span{}
	}
	return tracing.Tracer().Start(parent, "process "+stream, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.destination.name", stream),
			attribute.String("messaging.consumer.group.name", durable),
		))
}

// EndProcessSpan ends a message's span with its handler's outcome.
func EndProcessSpan(span trace.Span, err error) {
	if err != nil {
		span.SetStatus(codes.Error, "")
	}
	span.End()
}

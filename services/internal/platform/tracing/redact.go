package tracing

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// allowedKeys are the span and event attribute keys that may leave the process: the rpc, db
// and messaging conventions' names for what was called and how it ended. Anything else is
// dropped, whoever set it — the caller's network address and user agent (identifiers under
// HIPAA), URLs, SQL text, exception messages.
var allowedKeys = map[attribute.Key]bool{
	"rpc.system": true, "rpc.system.name": true, "rpc.service": true, "rpc.method": true,
	"rpc.grpc.status_code": true, "rpc.response.status_code": true,
	"rpc.message.type": true, "rpc.message.id": true,
	"rpc.message.compressed_size": true, "rpc.message.uncompressed_size": true,
	"server.address": true, "server.port": true, "network.transport": true, "network.type": true,
	"db.system": true, "db.system.name": true, "db.namespace": true, "db.operation.name": true,
	"db.operation.batch.size": true, "db.response.status_code": true,
	"messaging.system": true, "messaging.operation.type": true, "messaging.operation.name": true,
	"messaging.destination.name": true, "messaging.consumer.group.name": true,
	"messaging.batch.message_count": true,
	"error.type":                    true,
}

// ownPrefix marks attributes securemsg's own code sets; each is chosen to be an enum or a
// count (securemsg.event.type, securemsg.delivery.channel), never an id or free text.
const ownPrefix = "securemsg."

// allowedEvents are the span events kept (with their attributes filtered): gRPC's message
// events. "exception" events carry error text and stack traces, so they never leave.
var allowedEvents = map[string]bool{"message": true}

// Allowed reports whether an attribute key may be exported.
func Allowed(k attribute.Key) bool { return allowedKeys[k] || strings.HasPrefix(string(k), ownPrefix) }

// Redacting wraps an exporter so that every span it is given is cut down to what Allowed
// admits before it goes on: attributes filtered, events other than gRPC message events dropped,
// link attributes and link tracestate dropped, and the status description emptied (the code
// stays). Span names are the code's own (rpc spans only for methods that exist: see
// grpcserver.WithTracing). A status
// description is error text, and error text is where a stray value is most likely to hide.
func Redacting(next sdktrace.SpanExporter) sdktrace.SpanExporter { return redactingExporter{next} }

type redactingExporter struct{ next sdktrace.SpanExporter }

func (e redactingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	out := make([]sdktrace.ReadOnlySpan, len(spans))
	for i, s := range spans {
		out[i] = redact(s)
	}
	return e.next.ExportSpans(ctx, out)
}

func (e redactingExporter) Shutdown(ctx context.Context) error { return e.next.Shutdown(ctx) }

// redactedSpan is a span as exported: the embedded original answers everything but the parts
// overridden here.
type redactedSpan struct {
	sdktrace.ReadOnlySpan
	attrs  []attribute.KeyValue
	events []sdktrace.Event
	links  []sdktrace.Link
	status sdktrace.Status
}

func (s redactedSpan) Attributes() []attribute.KeyValue { return s.attrs }
func (s redactedSpan) Events() []sdktrace.Event         { return s.events }
func (s redactedSpan) Links() []sdktrace.Link           { return s.links }
func (s redactedSpan) Status() sdktrace.Status          { return s.status }

func redact(s sdktrace.ReadOnlySpan) sdktrace.ReadOnlySpan {
	r := redactedSpan{ReadOnlySpan: s, attrs: filter(s.Attributes()), status: sdktrace.Status{Code: s.Status().Code}}
	for _, ev := range s.Events() {
		if allowedEvents[ev.Name] {
			ev.Attributes, ev.DroppedAttributeCount = filter(ev.Attributes), 0
			r.events = append(r.events, ev)
		}
	}
	for _, l := range s.Links() {
		// A link to a public caller's context carries its tracestate: free text of theirs.
		r.links = append(r.links, sdktrace.Link{SpanContext: l.SpanContext.WithTraceState(trace.TraceState{})})
	}
	return r
}

func filter(attrs []attribute.KeyValue) []attribute.KeyValue {
	var kept []attribute.KeyValue
	for _, kv := range attrs {
		if Allowed(kv.Key) {
			kept = append(kept, kv)
		}
	}
	return kept
}

package tracing_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/securemsg/securemsg/services/internal/platform/tracing"
)

func TestEnabled(t *testing.T) {
	for _, tt := range []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"nothing set", nil, false},
		{"endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, true},
		{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, true},
		{"exporter otlp", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "x", "OTEL_TRACES_EXPORTER": "otlp"}, true},
		{"exporter none", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "x", "OTEL_TRACES_EXPORTER": "none"}, false},
		{"exporter unknown", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "x", "OTEL_TRACES_EXPORTER": "zipkin"}, false},
		{"sdk disabled", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "x", "OTEL_SDK_DISABLED": "TRUE"}, false},
		{"exporter otlp without endpoint", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tracing.Enabled(func(k string) string { return tt.env[k] }); got != tt.want {
				t.Errorf("Enabled(%v) = %t, want %t", tt.env, got, tt.want)
			}
		})
	}
}

// TestSetupOffByDefault: with no OTEL_* variables Setup installs nothing that exports, and its
// shutdown is a no-op.
func TestSetupOffByDefault(t *testing.T) {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED"} {
		t.Setenv(k, "")
	}
	shutdown, err := tracing.Setup(t.Context(), "test")
	if err != nil {
		t.Fatal(err)
	}
	_, span := tracing.Tracer().Start(t.Context(), "x")
	if span.IsRecording() || span.SpanContext().IsValid() {
		t.Errorf("a span started with tracing off is recording (%t) or valid (%t); want neither", span.IsRecording(), span.SpanContext().IsValid())
	}
	span.End()
	if err := shutdown(t.Context()); err != nil {
		t.Errorf("shutdown = %v", err)
	}
}

func TestSetupRefusesUnknownProtocol(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
	if _, err := tracing.Setup(t.Context(), "test"); err == nil || !strings.Contains(err.Error(), "http/json") {
		t.Errorf("Setup(protocol http/json) = %v; want an error naming the protocol", err)
	}
}

// TestRedactingKeepsOnlyAllowedAttributes records a span the way libraries do — with the
// caller's address, a URL, SQL text and an exception carrying a value — and checks that only
// the allow-listed attributes, gRPC's message events and the status code leave.
func TestRedactingKeepsOnlyAllowedAttributes(t *testing.T) {
	const phi = "PHI-MARKER-4711"
	mem := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracing.Redacting(mem)))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	state, err := trace.ParseTraceState("portal=" + strings.ToLower(phi))
	if err != nil {
		t.Fatal(err)
	}
	link := trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled, TraceState: state}
	_, span := tp.Tracer("test").Start(t.Context(), "securemsg.messaging.v1.MessagingService/GetThread",
		trace.WithLinks(trace.Link{SpanContext: trace.NewSpanContext(link), Attributes: []attribute.KeyValue{attribute.String("note", phi)}}))
	span.SetAttributes(
		attribute.String("rpc.method", "GetThread"),
		attribute.String("rpc.service", "securemsg.messaging.v1.MessagingService"),
		attribute.Int("rpc.grpc.status_code", 5),
		attribute.String("db.operation.name", "SELECT"),
		attribute.String("securemsg.delivery.channel", "email"),
		attribute.String("network.peer.address", "203.0.113.9"),
		attribute.String("client.address", "203.0.113.9"),
		attribute.String("user_agent.original", "portal "+phi),
		attribute.String("url.full", "https://portal.example/threads?subject="+phi),
		attribute.String("db.query.text", "SELECT '"+phi+"'"),
		attribute.String("enduser.id", phi),
	)
	span.AddEvent("message", trace.WithAttributes(attribute.String("rpc.message.type", "SENT"), attribute.String("payload", phi)))
	span.RecordError(errors.New("decrypt "+phi), trace.WithStackTrace(true))
	span.SetStatus(codes.Error, "thread "+phi+" not found")
	span.End()

	spans := mem.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans exported; want 1", len(spans))
	}
	got := spans[0]
	keys := map[attribute.Key]bool{}
	for _, kv := range got.Attributes {
		keys[kv.Key] = true
	}
	for _, k := range []attribute.Key{"rpc.method", "rpc.service", "rpc.grpc.status_code", "db.operation.name", "securemsg.delivery.channel"} {
		if !keys[k] {
			t.Errorf("allowed attribute %s was dropped", k)
		}
	}
	for _, k := range []attribute.Key{"network.peer.address", "client.address", "user_agent.original", "url.full", "db.query.text", "enduser.id"} {
		if keys[k] {
			t.Errorf("attribute %s was exported; it is not on the allow-list", k)
		}
	}
	if len(got.Events) != 1 || got.Events[0].Name != "message" || len(got.Events[0].Attributes) != 1 {
		t.Errorf("events = %+v; want only the message event with its rpc.message.type", got.Events)
	}
	if got.Status.Code != codes.Error || got.Status.Description != "" {
		t.Errorf("status = %+v; want code Error without a description", got.Status)
	}
	if len(got.Links) != 1 || len(got.Links[0].Attributes) != 0 || got.Links[0].SpanContext.TraceID() != link.TraceID ||
		got.Links[0].SpanContext.TraceState().Len() != 0 {
		t.Errorf("links = %+v; want the link without its attributes and the caller's tracestate", got.Links)
	}
	if dump := strings.Join(strings.Fields(fmtSpan(got)), " "); strings.Contains(dump, phi) || strings.Contains(dump, "203.0.113.9") {
		t.Errorf("the exported span still holds the marker or the caller's address: %s", dump)
	}
}

func fmtSpan(s tracetest.SpanStub) string {
	var b strings.Builder
	b.WriteString(s.Name + " " + s.Status.Description)
	for _, kv := range s.Attributes {
		b.WriteString(" " + string(kv.Key) + "=" + kv.Value.String())
	}
	for _, ev := range s.Events {
		b.WriteString(" event " + ev.Name)
		for _, kv := range ev.Attributes {
			b.WriteString(" " + string(kv.Key) + "=" + kv.Value.String())
		}
	}
	for _, l := range s.Links {
		for _, kv := range l.Attributes {
			b.WriteString(" link " + string(kv.Key) + "=" + kv.Value.String())
		}
	}
	return b.String()
}

// TestPropagationRoundTrip: the context a row stores (InjectHeaders, TraceParent) brings the
// next hop into the same trace (WithRemoteParent, MultiMapCarrier), and untraced work stores
// nothing.
func TestPropagationRoundTrip(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	ctx, span := tp.Tracer("test").Start(t.Context(), "rpc")
	defer span.End()

	headers := map[string]string{"Content-Type": "application/protobuf"}
	out := tracing.InjectHeaders(ctx, headers)
	if len(headers) != 1 {
		t.Errorf("InjectHeaders changed its argument: %v", headers)
	}
	tp1 := out[tracing.TraceParentHeader]
	if !strings.Contains(tp1, span.SpanContext().TraceID().String()) || out["Content-Type"] != "application/protobuf" {
		t.Fatalf("InjectHeaders = %v; want the original headers and a traceparent of trace %s", out, span.SpanContext().TraceID())
	}
	if got := tracing.TraceParent(ctx); got != tp1 {
		t.Errorf("TraceParent = %q, want %q", got, tp1)
	}
	next := trace.SpanContextFromContext(tracing.WithRemoteParent(t.Context(), tp1))
	if next.TraceID() != span.SpanContext().TraceID() || next.SpanID() != span.SpanContext().SpanID() || !next.IsRemote() {
		t.Errorf("WithRemoteParent = %v; want the rpc's span as remote parent", next)
	}

	nats := tracing.MultiMapCarrier{}
	tracing.Propagator.Inject(ctx, nats)
	if nats.Get("traceparent") != tp1 || len(nats["Traceparent"]) != 0 {
		t.Errorf("MultiMapCarrier = %v; want the exact lower-case traceparent key", nats)
	}

	if got := tracing.InjectHeaders(t.Context(), headers); len(got) != 1 {
		t.Errorf("InjectHeaders without a span = %v; want the headers unchanged", got)
	}
	if got := tracing.TraceParent(t.Context()); got != "" {
		t.Errorf("TraceParent without a span = %q; want empty", got)
	}
	for _, bad := range []string{"", "garbage", "00-zz-zz-01"} {
		if sc := trace.SpanContextFromContext(tracing.WithRemoteParent(t.Context(), bad)); sc.IsValid() {
			t.Errorf("WithRemoteParent(%q) gave a valid parent %v", bad, sc)
		}
	}
}

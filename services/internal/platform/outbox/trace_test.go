package outbox_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
	"github.com/securemsg/securemsg/services/internal/platform/tracing"
	"github.com/securemsg/securemsg/services/internal/platform/tracing/tracingtest"
)

// TestTraceContinuesThroughTheOutbox writes one event inside a traced request and one outside
// any trace, with a real relay publishing to a real JetStream: the traced event's row keeps the
// request's trace context, the relay publishes it under an "outbox publish" span that is the
// request span's child, and the message carries the publish span's context for the consumer.
// The untraced event is published with no trace header and no span.
func TestTraceContinuesThroughTheOutbox(t *testing.T) {
	tp, mem := tracingtest.Record(t)

	f := newFixture(t)
	ctx, request := tp.Tracer("test").Start(t.Context(), "rpc")
	traced, untraced := f.event(1), f.event(2)
	if err := pg.WithTx(ctx, f.pool, func(tx pgx.Tx) error { return outbox.Add(ctx, tx, traced) }); err != nil {
		t.Fatal(err)
	}
	request.End()
	f.writeTx(t, []outbox.Event{untraced})
	var stored string
	if err := f.pool.QueryRow(t.Context(), `SELECT headers->>'traceparent' FROM outbox WHERE id = $1`, traced.ID).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if want := tracing.TraceParent(ctx); stored != want {
		t.Fatalf("stored traceparent = %q, want the request's %q", stored, want)
	}

	f.startRelay(t, nil)
	deadline := time.Now().Add(10 * time.Second)
	for f.streamCount(t) < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	s, info, err := f.eventsStream(t)
	if err != nil || info.State.Msgs != 2 {
		t.Fatalf("events stream = %v, %v; want the two events", info, err)
	}
	var publish tracetest.SpanStub
	for _, sp := range mem.GetSpans() {
		if sp.Name == "outbox publish" {
			if publish.Name != "" {
				t.Fatal("two publish spans; the untraced event must have none")
			}
			publish = sp
		}
	}
	if publish.Name == "" || publish.Parent.SpanID() != request.SpanContext().SpanID() || publish.SpanKind != trace.SpanKindProducer {
		t.Fatalf("publish span = %+v; want a producer span under the request span", publish)
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		got := trace.SpanContextFromContext(tracing.WithRemoteParent(t.Context(), m.Header.Get(tracing.TraceParentHeader)))
		switch m.Header.Get("Nats-Msg-Id") {
		case traced.ID:
			if got.TraceID() != request.SpanContext().TraceID() || got.SpanID() != publish.SpanContext.SpanID() {
				t.Errorf("traced message's traceparent names span %s of trace %s; want the publish span %s of trace %s",
					got.SpanID(), got.TraceID(), publish.SpanContext.SpanID(), request.SpanContext().TraceID())
			}
		case untraced.ID:
			if got.IsValid() {
				t.Errorf("untraced message carries trace context %v", got)
			}
		}
	}
}

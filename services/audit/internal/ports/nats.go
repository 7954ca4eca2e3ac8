// Package ports holds the audit service's edges: the JetStream consumer that feeds the log, the
// core NATS responder for producers' reconciliation, and the gRPC AuditService.
package ports

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/securemsg/securemsg/services/audit/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/backoff"
	"github.com/securemsg/securemsg/services/internal/platform/natsx"
	"github.com/securemsg/securemsg/services/internal/platform/tracing"
)

// Ingester appends a batch of records (app.Service).
type Ingester interface {
	Ingest(ctx context.Context, recs []domain.Incoming) ([]domain.Entry, error)
}

// Reconciler answers a producer's reconciliation request (app.Service).
type Reconciler interface {
	Reconcile(ctx context.Context, req auditlog.ReconcileRequest, idle bool) auditlog.ReconcileReply
}

// Consumer is the durable JetStream consumer of the audit stream. It fetches batches and
// appends each batch in one transaction, acknowledging the messages only after the commit;
// after a crash the unacknowledged batch comes again and the event-id check drops the copies.
type Consumer struct {
	JS       jetstream.JetStream
	Stream   string
	Durable  string
	Subjects []string
	Batch    int
	MaxWait  time.Duration
	Ingester Ingester
	Log      *slog.Logger
	// AppendLag, when set, is told for each appended record how long it took from the action
	// (meta.occurred_at) to its place in the log: outbox, relay, stream and ingest together.
	AppendLag func(time.Duration)

	// mu guards cons: Run's loop and the reconciliation responder (Idle) share it.
	mu   sync.Mutex
	cons jetstream.Consumer
}

// batch is the fetch size (default 1,024).
func (c *Consumer) batch() int {
	if c.Batch == 0 {
		return 1024
	}
	return c.Batch
}

// maxWait is how long a fetch waits for a full batch (default 1 s).
func (c *Consumer) maxWait() time.Duration {
	if c.MaxWait == 0 {
		return time.Second
	}
	return c.MaxWait
}

func (c *Consumer) log() *slog.Logger {
	if c.Log == nil {
		return slog.Default()
	}
	return c.Log
}

// forget drops the consumer handle, so the next use declares it again (after NATS came back).
func (c *Consumer) forget() {
	c.mu.Lock()
	c.cons = nil
	c.mu.Unlock()
}

// retryDelay spaces the retries of a failing ingest: 100 ms doubling to 3.2 s, with jitter so
// that replicas retrying after the same outage spread out.
var retryDelay = backoff.Exponential{Floor: 100 * time.Millisecond, Ceiling: 3200 * time.Millisecond, Jitter: 0.1}

// DefaultDurable is the consumer name the audit replicas share.
const DefaultDurable = "audit-log"

func (c *Consumer) consumer(ctx context.Context) (jetstream.Consumer, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cons != nil {
		return c.cons, nil
	}
	cons, err := c.JS.CreateOrUpdateConsumer(ctx, c.Stream, jetstream.ConsumerConfig{
		Durable:   c.Durable,
		AckPolicy: jetstream.AckExplicitPolicy,
		// Short, so records a consumer held when NATS or the service went away are redelivered
		// within seconds of recovery; a batch appends in well under this, and a redelivered
		// record is dropped by the idempotent append.
		AckWait:        15 * time.Second,
		MaxDeliver:     -1, // an audit record is never given up on
		MaxAckPending:  max(4*c.batch(), 1024),
		FilterSubjects: c.Subjects,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("audit consumer %s on %s: %w", c.Durable, c.Stream, err)
	}
	c.cons = cons
	return cons, nil
}

// Idle reports whether the consumer has nothing pending or unacknowledged.
func (c *Consumer) Idle(ctx context.Context) bool {
	cons, err := c.consumer(ctx)
	if err != nil {
		return false
	}
	info, err := cons.Info(ctx)
	return err == nil && info.NumPending == 0 && info.NumAckPending == 0
}

// Run consumes until ctx ends. NATS and Postgres outages are retried with backoff.
func (c *Consumer) Run(ctx context.Context) error {
	failures := 0
	for ctx.Err() == nil {
		err := c.runBatch(ctx)
		if err == nil {
			failures = 0
			continue
		}
		if ctx.Err() != nil {
			break
		}
		failures++
		delay := retryDelay.Delay(failures)
		if failures == 1 || failures%20 == 0 {
			c.log().Warn("audit ingest failed; retrying", "error", err, "failures", failures)
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
	return nil
}

func (c *Consumer) runBatch(ctx context.Context) (err error) {
	cons, err := c.consumer(ctx)
	if err != nil {
		return err
	}
	batch, err := cons.Fetch(c.batch(), jetstream.FetchMaxWait(c.maxWait()))
	if err != nil {
		c.forget()
		return fmt.Errorf("fetch: %w", err)
	}
	var msgs []jetstream.Msg
	var recs []domain.Incoming
	var spans []trace.Span
	defer func() { endSpans(spans, err) }()
	for msg := range batch.Messages() {
		in, err := domain.ParseIncoming(msg.Data())
		if err != nil {
			md, _ := msg.Metadata()
			var seq uint64
			if md != nil {
				seq = md.Sequence.Stream
			}
			// Never retried: the bytes will not change. The message stays in the stream.
			c.log().Error("audit message is not a valid audit record; terminating it", "subject", msg.Subject(), "stream_seq", seq, "error", err)
			_ = msg.Term()
			continue
		}
		msgs = append(msgs, msg)
		recs = append(recs, in)
		if _, span := natsx.StartProcessSpan(ctx, msg, c.Stream, c.Durable); span.SpanContext().IsValid() {
			spans = append(spans, span)
		}
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && len(msgs) == 0 {
		c.forget()
		return fmt.Errorf("fetch: %w", err)
	}
	if len(recs) == 0 {
		return nil
	}
	appendCtx, appendSpans := startAppendSpans(ctx, spans, len(recs))
	appended, err := c.Ingester.Ingest(appendCtx, recs)
	endSpans(appendSpans, err)
	if err != nil {
		for _, m := range msgs {
			_ = m.NakWithDelay(time.Second)
		}
		return fmt.Errorf("append %d records: %w", len(recs), err)
	}
	if c.AppendLag != nil {
		// Only the records appended now: a redelivered copy would count an old record twice.
		for _, e := range appended {
			c.AppendLag(max(e.AppendedAt.Sub(e.Projection.OccurredAt), 0)) // producers' clocks may run ahead
		}
	}
	for _, m := range msgs {
		if err := m.Ack(); err != nil {
			// Redelivered later; the append is idempotent.
			c.log().Debug("ack failed; message will be redelivered", "error", err)
		}
	}
	return nil
}

// ServeReconcile answers producers' reconciliation requests on
// auditlog.ReconcileSubjectPrefix.> (subjectPrefix overrides it in tests) until ctx ends.
func ServeReconcile(ctx context.Context, nc *nats.Conn, subjectPrefix string, r Reconciler, c *Consumer, log *slog.Logger) error {
	if subjectPrefix == "" {
		subjectPrefix = auditlog.ReconcileSubjectPrefix
	}
	sub, err := nc.QueueSubscribe(subjectPrefix+".*", "audit", func(m *nats.Msg) {
		var req auditlog.ReconcileRequest
		var rep auditlog.ReconcileReply
		if err := json.Unmarshal(m.Data, &req); err != nil || req.Producer == "" {
			rep.Error = "malformed request"
		} else {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			rep = r.Reconcile(rctx, req, c.Idle(rctx))
			cancel()
			if len(rep.Missing) > 0 {
				log.Warn("producer's audit records are missing from the log; asking for republish",
					"producer", req.Producer, "count", len(rep.Missing))
			}
		}
		b, _ := json.Marshal(rep)
		_ = m.Respond(b)
	})
	if err != nil {
		return fmt.Errorf("subscribe reconcile: %w", err)
	}
	<-ctx.Done()
	return sub.Unsubscribe()
}

// startAppendSpans starts, under each traced record's span, an "audit append" span that lasts
// as long as the batch's append, so every record's trace shows when and how it entered the log.
// The append itself (its statements, and the alerts it may raise) runs under a span of its own:
// a new root that links every traced record, so one person's trace never holds another's
// records or an alert about someone else. Without traced records ctx is returned as it is.
func startAppendSpans(ctx context.Context, spans []trace.Span, records int) (context.Context, []trace.Span) {
	if len(spans) == 0 {
		return ctx, nil
	}
	batch := attribute.Int("messaging.batch.message_count", records)
	appends := make([]trace.Span, 0, len(spans)+1)
	links := make([]trace.Link, 0, len(spans))
	for _, s := range spans {
		_, span := tracing.Tracer().Start(trace.ContextWithSpan(ctx, s), "audit append", trace.WithAttributes(batch))
		appends = append(appends, span)
		links = append(links, trace.Link{SpanContext: s.SpanContext()})
	}
	appendCtx, span := tracing.Tracer().Start(ctx, "audit append batch", trace.WithNewRoot(), trace.WithLinks(links...), trace.WithAttributes(batch))
	return appendCtx, append(appends, span)
}

// endSpans ends the records' spans with the batch's outcome (acknowledged, or to be redelivered).
func endSpans(spans []trace.Span, err error) {
	for _, s := range spans {
		natsx.EndProcessSpan(s, err)
	}
}

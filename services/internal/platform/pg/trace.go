package pg

import (
	"context"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/securemsg/securemsg/services/internal/platform/tracing"
)

// spanTracer turns the statements of traced work into client spans named "pg <OPERATION>"
// (SELECT, INSERT, BEGIN, COMMIT…) with the schema as db.namespace and the SQLSTATE of a
// failure. It never records SQL text or arguments: arguments are PHI ciphertext and ids, and
// the text is the code's, findable from the operation and the parent span.
//
// It starts a span only inside a sampled trace: the relay's and dispatcher's polling queries,
// which run with no rpc around them, would otherwise each start a trace of their own.
type spanTracer struct {
	namespace attribute.KeyValue
}

var (
	_ pgx.QueryTracer = spanTracer{}
	_ pgx.BatchTracer = spanTracer{}
)

var (
	dbSystem = attribute.String("db.system.name", "postgresql")
	// batchOperation names a pipelined batch's span: its statements may be of every kind.
	batchOperation = attribute.String("db.operation.name", "BATCH")
)

func newSpanTracer(schema string) spanTracer {
	return spanTracer{namespace: attribute.String("db.namespace", schema)}
}

// statementSpan keys the span start made, so end ends that one and never a span of the
// caller's that happens to be in the context.
type statementSpan struct{}

func (t spanTracer) start(ctx context.Context, name string, attrs ...attribute.KeyValue) context.Context {
	if !trace.SpanContextFromContext(ctx).IsSampled() {
		return ctx
	}
	ctx, span := tracing.Tracer().Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(append(attrs, dbSystem, t.namespace)...))
	return context.WithValue(ctx, statementSpan{}, span)
}

func end(ctx context.Context, err error) {
	span, ok := ctx.Value(statementSpan{}).(trace.Span)
	if !ok {
		return
	}
	if err != nil {
		if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) {
			span.SetAttributes(attribute.String("db.response.status_code", pe.Code))
		}
		span.SetStatus(codes.Error, "")
	}
	span.End()
}

func (t spanTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	op := operation(data.SQL)
	return t.start(ctx, "pg "+op, attribute.String("db.operation.name", op))
}

func (spanTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	end(ctx, data.Err)
}

func (t spanTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	n := 0
	if data.Batch != nil {
		n = data.Batch.Len()
	}
	return t.start(ctx, "pg BATCH", batchOperation, attribute.Int("db.operation.batch.size", n))
}

func (spanTracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (spanTracer) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchEndData) {
	end(ctx, data.Err)
}

// operation is the statement's first keyword, upper-cased ("WITH" for a CTE), or "QUERY" when
// it does not start with a plain word. Only letters are taken, so nothing of the statement but
// its kind can reach a span name.
func operation(sql string) string {
	sql = strings.TrimLeft(sql, " \t\r\n(")
	end := 0
	for end < len(sql) && end < 16 && isLetter(sql[end]) {
		end++
	}
	if end == 0 {
		return "QUERY"
	}
	return strings.ToUpper(sql[:end])
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

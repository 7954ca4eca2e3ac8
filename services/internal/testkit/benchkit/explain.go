package benchkit

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Statement is one SQL statement a pool ran, with its arguments.
type Statement struct {
	SQL  string
	Args []any
}

// StatementLog is a pgx tracer (pg.Config.Tracer) that records the statements a pool runs —
// queries and the queries of batches — so a benchmark can EXPLAIN exactly the repository's SQL.
type StatementLog struct {
	mu    sync.Mutex
	stmts []Statement
}

var (
	_ pgx.QueryTracer = (*StatementLog)(nil)
	_ pgx.BatchTracer = (*StatementLog)(nil)
)

func (l *StatementLog) add(sql string, args []any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stmts = append(l.stmts, Statement{sql, args})
}

// Take returns the statements recorded since the last Take and forgets them.
func (l *StatementLog) Take() []Statement {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stmts
	l.stmts = nil
	return s
}

// TraceQueryStart records a query.
func (l *StatementLog) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	l.add(d.SQL, d.Args)
	return ctx
}

// TraceQueryEnd does nothing.
func (l *StatementLog) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TraceBatchStart does nothing: the batch's queries are recorded one by one.
func (l *StatementLog) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}

// TraceBatchQuery records a query of a batch.
func (l *StatementLog) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	l.add(d.SQL, d.Args)
}

// TraceBatchEnd does nothing.
func (l *StatementLog) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// Explain runs EXPLAIN (ANALYZE, BUFFERS) of st on pool and returns the plan's lines.
func Explain(tb testing.TB, pool *pgxpool.Pool, st Statement) []string {
	tb.Helper()
	rows, err := pool.Query(tb.Context(), "EXPLAIN (ANALYZE, BUFFERS) "+st.SQL, st.Args...)
	if err != nil {
		tb.Fatalf("EXPLAIN: %v", err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		tb.Fatalf("EXPLAIN: %v", err)
	}
	return lines
}

// ExplainText is Explain's plan as one text.
func ExplainText(tb testing.TB, pool *pgxpool.Pool, st Statement) string {
	tb.Helper()
	return strings.Join(Explain(tb, pool, st), "\n")
}

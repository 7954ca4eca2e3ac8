package outbox

import (
	"context"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// insertMarker starts every statement this package builds to write outbox rows (Add's, and
// Statement's inside a caller's statement); CommitWatch recognises outbox writes by it.
const insertMarker = "INSERT INTO outbox "

// CommitWatch wakes the relay when a commit has made outbox rows visible, without asking
// Postgres to notify anyone.
//
// We used to wake the relay with an AFTER INSERT trigger calling pg_notify. A transaction that
// notifies takes a cluster-wide lock before its commit record and keeps it until the commit is
// flushed, so every event-writing commit of every service sharing the Postgres server waited
// for the previous one's fsync: commits could no longer share a flush, and SendMessage at 16
// clients ran at two thirds of the rate it reaches without the trigger.
//
// Instead, the watch is the pool's pgx tracer. It sees each statement the service sends; when a
// statement that wrote outbox rows ends outside a transaction (an implicit transaction, or a
// pipelined batch without BEGIN), or the transaction that ran one commits, it signals C. The
// relay of the same process publishes at once. Rows written by another replica, or by a tool
// outside the service, are picked up by that replica's relay or by the poll interval, as a
// lost notification was before.
type CommitWatch struct {
	c chan struct{}
	// wrote holds the connections whose open transaction has written outbox rows.
	wrote sync.Map // *pgconn.PgConn → struct{}
}

// NewCommitWatch returns a watch to install as a pool's tracer (pg.Config.Tracer) and to hand
// to the relay of that pool (Options.Commits).
func NewCommitWatch() *CommitWatch { return &CommitWatch{c: make(chan struct{}, 1)} }

// C delivers a value after commits of outbox rows; several commits before a receive fold into
// one value.
func (w *CommitWatch) C() <-chan struct{} { return w.c }

func (w *CommitWatch) signal() {
	select {
	case w.c <- struct{}{}:
	default:
	}
}

// saw records a statement that wrote outbox rows on conn.
func (w *CommitWatch) saw(sql string, conn *pgconn.PgConn) {
	if strings.Contains(sql, insertMarker) {
		w.wrote.Store(conn, struct{}{})
	}
}

// ended runs when a statement or batch on conn has finished. Once the connection is outside a
// transaction again, what it wrote is either committed or gone.
func (w *CommitWatch) ended(conn *pgconn.PgConn, tag pgconn.CommandTag, err error) {
	if conn.IsClosed() {
		w.wrote.Delete(conn)
		return
	}
	if conn.TxStatus() != 'I' {
		return
	}
	// A COMMIT of a failed transaction answers ROLLBACK.
	if _, ok := w.wrote.LoadAndDelete(conn); ok && err == nil && tag.String() != "ROLLBACK" {
		w.signal()
	}
}

// TraceQueryStart implements pgx.QueryTracer.
func (w *CommitWatch) TraceQueryStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	w.saw(data.SQL, conn.PgConn())
	return ctx
}

// TraceQueryEnd implements pgx.QueryTracer.
func (w *CommitWatch) TraceQueryEnd(_ context.Context, conn *pgx.Conn, data pgx.TraceQueryEndData) {
	w.ended(conn.PgConn(), data.CommandTag, data.Err)
}

// TraceBatchStart implements pgx.BatchTracer.
func (w *CommitWatch) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}

// TraceBatchQuery implements pgx.BatchTracer.
func (w *CommitWatch) TraceBatchQuery(_ context.Context, conn *pgx.Conn, data pgx.TraceBatchQueryData) {
	w.saw(data.SQL, conn.PgConn())
}

// TraceBatchEnd implements pgx.BatchTracer.
func (w *CommitWatch) TraceBatchEnd(_ context.Context, conn *pgx.Conn, data pgx.TraceBatchEndData) {
	w.ended(conn.PgConn(), pgconn.CommandTag{}, data.Err)
}

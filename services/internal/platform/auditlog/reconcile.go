package auditlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/securemsg/securemsg/services/internal/platform/natsx"
)

// Reconciliation closes the one gap the outbox cannot: JetStream acknowledges a publish once it
// has the message in memory and the OS, and syncs to disk on an interval (the server-wide
// jetstream.sync_interval; nats.go exposes no per-stream sync setting). A crash of the NATS
// host in that window can lose the tail of the stream although the producer's outbox already
// marked the rows published.
//
// Each producer runs a Reconciler. It asks the audit service, over core NATS request/reply on
// ReconcileSubjectPrefix + "." + service, for its high-water mark — the outbox seq up to which
// every audit record the producer wrote is known to be in the audit log — then sends the
// (seq, event id) pairs of its published audit rows after the mark, oldest first. The audit
// service answers with the ids it does not hold; the producer marks those rows unpublished, so
// its relay sends them again. The audit service only answers when its consumer has nothing
// pending, so records still on their way through the stream are never mistaken for lost ones;
// otherwise it answers Busy and the producer tries again later.

// ReconcileSubjectPrefix is the core NATS subject tree of reconciliation requests. It lies
// outside securemsg.audit.> on purpose: a request there would be captured by the audit stream.
const ReconcileSubjectPrefix = natsx.ReconcileSubject

// ReconcileEntry is one audit row of a producer's outbox.
type ReconcileEntry struct {
	Seq int64  `json:"seq"`
	ID  string `json:"id"`
}

// ReconcileRequest asks the audit service which of Entries it lacks (none: just the mark).
type ReconcileRequest struct {
	Producer string           `json:"producer"`
	Entries  []ReconcileEntry `json:"entries,omitempty"`
}

// ReconcileReply answers a ReconcileRequest.
type ReconcileReply struct {
	// Mark is the producer's high-water mark after this exchange.
	Mark int64 `json:"mark"`
	// Missing lists the event ids of Entries the audit log does not hold.
	Missing []string `json:"missing,omitempty"`
	// Busy says the audit service is still consuming; ask again later.
	Busy bool `json:"busy,omitempty"`
	// Error is set when the audit service could not answer.
	Error string `json:"error,omitempty"`
}

// Reconciler is the producer side of reconciliation, for one service's outbox.
type Reconciler struct {
	pool     *pgxpool.Pool
	nc       *nats.Conn
	producer string
	subject  string // the emitter's audit subject, as stored in the outbox rows
	// SubjectPrefix is where requests go (default ReconcileSubjectPrefix; tests isolate it).
	SubjectPrefix string
	// Grace leaves rows published less than this long ago to the normal path (default 30s).
	Grace    time.Duration
	Interval time.Duration
	Batch    int
	Timeout  time.Duration
	Log      *slog.Logger
}

// NewReconciler reconciles the audit rows em writes into pool's outbox, talking over nc.
func NewReconciler(pool *pgxpool.Pool, nc *nats.Conn, em *Emitter) *Reconciler {
	return &Reconciler{pool: pool, nc: nc, producer: serviceToken(em.producer), subject: em.Subject(), SubjectPrefix: ReconcileSubjectPrefix,
		Grace: 30 * time.Second, Interval: time.Minute, Batch: 500, Timeout: 10 * time.Second, Log: slog.Default()}
}

// ErrAuditBusy is returned by RunOnce when the audit service is still consuming.
var ErrAuditBusy = errors.New("auditlog: audit service is busy consuming; reconcile later")

// Run reconciles every Interval until ctx ends.
func (r *Reconciler) Run(ctx context.Context) {
	for {
		n, err := r.RunOnce(ctx)
		if err != nil && !errors.Is(err, ErrAuditBusy) && ctx.Err() == nil {
			r.Log.Warn("audit reconciliation failed", "error", err)
		}
		if n > 0 {
			r.Log.Warn("audit records missing from the audit log; republishing", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(r.Interval):
		}
	}
}

func (r *Reconciler) ask(ctx context.Context, req ReconcileRequest) (ReconcileReply, error) {
	var rep ReconcileReply
	b, err := json.Marshal(req)
	if err != nil {
		return rep, err
	}
	rctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	msg, err := r.nc.RequestWithContext(rctx, r.SubjectPrefix+"."+r.producer, b)
	if err != nil {
		return rep, fmt.Errorf("auditlog: reconcile request: %w", err)
	}
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		return rep, fmt.Errorf("auditlog: reconcile reply: %w", err)
	}
	if rep.Error != "" {
		return rep, fmt.Errorf("auditlog: audit service: %s", rep.Error)
	}
	if rep.Busy {
		return rep, ErrAuditBusy
	}
	return rep, nil
}

// RunOnce reconciles up to the newest published audit row older than Grace and returns how
// many rows it marked for republishing. Rows after the first unpublished one wait for the
// relay, so the mark only ever covers a prefix of the outbox.
func (r *Reconciler) RunOnce(ctx context.Context) (int, error) {
	rep, err := r.ask(ctx, ReconcileRequest{Producer: r.producer})
	if err != nil {
		return 0, err
	}
	mark := rep.Mark
	for {
		rows, err := r.pool.Query(ctx, `SELECT seq, id FROM outbox
			WHERE subject = $1 AND seq > $2 AND published_at IS NOT NULL AND published_at < now() - $3::interval
			  AND seq < coalesce((SELECT min(seq) FROM outbox WHERE subject = $1 AND published_at IS NULL), 9223372036854775807)
			ORDER BY seq LIMIT $4`, r.subject, mark, r.Grace.String(), r.Batch)
		if err != nil {
			return 0, fmt.Errorf("auditlog: read outbox for reconciliation: %w", err)
		}
		var entries []ReconcileEntry
		for rows.Next() {
			var e ReconcileEntry
			if err := rows.Scan(&e.Seq, &e.ID); err != nil {
				rows.Close()
				return 0, err
			}
			entries = append(entries, e)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return 0, err
		}
		if len(entries) == 0 {
			return 0, nil
		}
		rep, err := r.ask(ctx, ReconcileRequest{Producer: r.producer, Entries: entries})
		if err != nil {
			return 0, err
		}
		if len(rep.Missing) > 0 {
			tag, err := r.pool.Exec(ctx, `UPDATE outbox SET published_at = NULL, attempts = 0, last_error = 'reconcile: missing from audit log'
				WHERE id = ANY($1) AND subject = $2`, rep.Missing, r.subject)
			if err != nil {
				return 0, fmt.Errorf("auditlog: mark rows for republishing: %w", err)
			}
			return int(tag.RowsAffected()), nil
		}
		if rep.Mark <= mark {
			return 0, nil
		}
		mark = rep.Mark
	}
}

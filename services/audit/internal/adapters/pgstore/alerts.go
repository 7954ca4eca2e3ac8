package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/audit/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
)

var _ domain.Alerts = (*Store)(nil)

var alertColumns = []string{"id", "rule_id", "actor", "severity", "window_start", "window_end", "match_count",
	"threshold", "first_sequence", "last_sequence", "raised_at"}

// insertAlerts stores the alerts an append raised, in the append's transaction. A repeated id
// (an append retried after a lost commit answer raises nothing new: its entries are skipped)
// cannot occur, so COPY is enough.
func insertAlerts(ctx context.Context, tx pgx.Tx, alerts []domain.RaisedAlert) error {
	if len(alerts) == 0 {
		return nil
	}
	rows := make([][]any, len(alerts))
	for i, a := range alerts {
		severity := int16(a.Severity) //nolint:gosec // G115: a proto enum of a few values
		actor, err := proto.Marshal(a.Actor)
		if err != nil {
			return fmt.Errorf("encode alert actor: %w", err)
		}
		rows[i] = []any{a.ID, a.RuleID, actor, severity, a.WindowStart.Round(time.Microsecond), a.WindowEnd.Round(time.Microsecond), a.Count, a.Threshold,
			pgBigint(a.FirstSeq), pgBigint(a.LastSeq), a.RaisedAt.Round(time.Microsecond)}
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"alerts"}, alertColumns, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("store %d alerts: %w", len(rows), err)
	}
	return nil
}

const selectAlert = `SELECT id, rule_id, actor, severity, window_start, window_end, match_count, threshold,
	first_sequence, last_sequence, raised_at, acknowledged_at, coalesce(acknowledged_by, ''), coalesce(note, '') FROM alerts`

func scanAlert(row pgx.CollectableRow) (domain.RaisedAlert, error) {
	var a domain.RaisedAlert
	var actor []byte
	var severity int16
	var first, last int64
	var ackAt *time.Time
	if err := row.Scan(&a.ID, &a.RuleID, &actor, &severity, &a.WindowStart, &a.WindowEnd, &a.Count, &a.Threshold,
		&first, &last, &a.RaisedAt, &ackAt, &a.AcknowledgedBy, &a.Note); err != nil {
		return a, err
	}
	a.Actor = &eventsv1.AuditActor{}
	if err := proto.Unmarshal(actor, a.Actor); err != nil {
		return a, fmt.Errorf("decode actor of alert %s: %w", a.ID, err)
	}
	a.Severity, a.FirstSeq, a.LastSeq = eventsv1.Severity(severity), fromPgBigint(first), fromPgBigint(last)
	if ackAt != nil {
		a.AcknowledgedAt = *ackAt
	}
	return a, nil
}

// ListAlerts implements domain.Alerts (index alerts_raised, or alerts_open for open ones).
func (s *Store) ListAlerts(ctx context.Context, f domain.AlertFilter, after *domain.AlertCursor, limit int) ([]domain.RaisedAlert, error) {
	sql := selectAlert + ` WHERE ($1 = '' OR rule_id = $1)`
	args := []any{f.RuleID}
	if f.OpenOnly {
		sql += ` AND acknowledged_at IS NULL`
	}
	if after != nil {
		sql += ` AND (raised_at, id) < ($2, $3)`
		args = append(args, after.RaisedAt, after.ID)
	}
	sql += fmt.Sprintf(` ORDER BY raised_at DESC, id DESC LIMIT %d`, limit)
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("list alerts: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanAlert)
	if err != nil {
		return nil, fmt.Errorf("list alerts: %w", err)
	}
	return out, nil
}

// AcknowledgeAlert implements domain.Alerts: the row is locked, changed if still open, and the
// audit record written, in one commit.
func (s *Store) AcknowledgeAlert(ctx context.Context, id, by, note string, at time.Time, audit func(domain.RaisedAlert) ([]outbox.Event, error)) (domain.RaisedAlert, bool, error) {
	var out domain.RaisedAlert
	var changed bool
	at = at.Round(time.Microsecond) // what timestamptz keeps, so the answer equals what is read later
	err := pg.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, selectAlert+` WHERE id = $1 FOR UPDATE`, id)
		if err != nil {
			return err
		}
		found, err := pgx.CollectRows(rows, scanAlert)
		if err != nil {
			return err
		}
		if len(found) == 0 {
			return domain.ErrAlertNotFound
		}
		out = found[0]
		if !out.Open() {
			return nil
		}
		out.AcknowledgedAt, out.AcknowledgedBy, out.Note = at, by, note
		if _, err := tx.Exec(ctx, `UPDATE alerts SET acknowledged_at = $2, acknowledged_by = $3, note = $4 WHERE id = $1`,
			id, at, by, note); err != nil {
			return err
		}
		events, err := audit(out)
		if err != nil {
			return err
		}
		changed = true
		return outbox.Add(ctx, tx, events...)
	})
	if errors.Is(err, domain.ErrAlertNotFound) {
		return domain.RaisedAlert{}, false, err
	}
	if err != nil {
		return domain.RaisedAlert{}, false, fmt.Errorf("acknowledge alert: %w", err)
	}
	return out, changed, nil
}

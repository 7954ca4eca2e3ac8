package pgstore

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// ListThreads implements domain.InboxRepository.
func (s *Store) ListThreads(ctx context.Context, q domain.ListQuery) ([]domain.ListedThread, error) {
	args := []any{q.Viewer}
	arg := func(v any) string { args = append(args, v); return "$" + strconv.Itoa(len(args)) }
	var vis []string
	if q.OwnPatientID != "" {
		vis = append(vis, "t.patient_id = "+arg(q.OwnPatientID))
	}
	if len(q.ProxyPatientIDs) > 0 {
		vis = append(vis, "(t.patient_id = ANY("+arg(q.ProxyPatientIDs)+") AND t.sensitivity <> 3)")
	}
	if len(q.PoolIDs) > 0 {
		vis = append(vis, "t.pool_id = ANY("+arg(q.PoolIDs)+")")
	}
	if len(vis) == 0 {
		return nil, nil
	}
	where := []string{"(" + strings.Join(vis, " OR ") + ")"}
	if q.FilterPatientID != "" {
		where = append(where, "t.patient_id = "+arg(q.FilterPatientID))
	}
	if len(q.FilterPoolIDs) > 0 {
		where = append(where, "t.pool_id = ANY("+arg(q.FilterPoolIDs)+")")
	}
	switch q.Box {
	case domain.BoxArchived:
		where = append(where, "vs.archived_at IS NOT NULL")
	case domain.BoxSent:
		where = append(where, "vs.archived_at IS NULL")
		sent := "t.created_by_subject = $1"
		if len(q.PoolIDs) > 0 {
			sent = "(" + sent + " OR (t.created_by_role IN (3, 4) AND t.pool_id = ANY(" + arg(q.PoolIDs) + ")))"
		}
		where = append(where, sent)
	default:
		where = append(where, "vs.archived_at IS NULL")
	}
	if q.UnreadOnly {
		where = append(where, "u.unread > 0")
	}
	if q.AfterID != "" {
		where = append(where, "(t.last_message_at, t.id) < ("+arg(q.AfterTime)+", "+arg(q.AfterID)+"::uuid)")
	}
	sql := `SELECT ` + threadCols + `, coalesce(vs.read_seq, 0), vs.archived_at, u.unread
		FROM threads t
		LEFT JOIN viewer_state vs ON vs.thread_id = t.id AND vs.subject = $1
		CROSS JOIN LATERAL (SELECT count(*)::int AS unread FROM messages m
			WHERE m.thread_id = t.id AND m.seq > coalesce(vs.read_seq, 0) AND m.sender_subject <> $1) u
		WHERE ` + strings.Join(where, " AND ") + `
		ORDER BY t.last_message_at DESC, t.id DESC LIMIT ` + arg(q.Limit)
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, dbError(err)
	}
	defer rows.Close()
	var out []domain.ListedThread
	for rows.Next() {
		var lt domain.ListedThread
		var archived *time.Time
		t, err := scanThread(rows, &lt.Viewer.ReadSeq, &archived, &lt.Viewer.Unread)
		if err != nil {
			return nil, dbError(err)
		}
		if archived != nil {
			lt.Viewer.ArchivedAt = *archived
		}
		lt.Thread = t
		out = append(out, lt)
	}
	return out, dbError(rows.Err())
}

const viewerSQL = `SELECT coalesce(vs.read_seq, 0), vs.archived_at,
	(SELECT count(*) FROM messages m WHERE m.thread_id = $1 AND m.seq > coalesce(vs.read_seq, 0) AND m.sender_subject <> $2)
	FROM (SELECT 1) one LEFT JOIN viewer_state vs ON vs.thread_id = $1 AND vs.subject = $2`

func scanViewer(row pgx.Row) (domain.Viewer, error) {
	var v domain.Viewer
	var archived *time.Time
	err := row.Scan(&v.ReadSeq, &archived, &v.Unread)
	if archived != nil {
		v.ArchivedAt = *archived
	}
	return v, err
}

// ReadThreadPage implements domain.InboxRepository in one round trip: a batch without BEGIN,
// which Postgres runs as one implicit transaction.
func (s *Store) ReadThreadPage(ctx context.Context, t *domain.Thread, viewer string, afterSeq int32, limit int, bg *domain.BreakGlass, audit []outbox.Event) (domain.ThreadPage, error) {
	rows, err := outbox.NewRows(audit...)
	if err != nil {
		return domain.ThreadPage{}, domain.NotRecorded(err)
	}
	var page domain.ThreadPage
	b := &pgx.Batch{}
	if bg != nil {
		b.Queue(insertBreakGlassSQL, bg.ID, t.ID, bg.Subject, bg.ReasonSealed, bg.At)
	}
	rows.Queue(b)
	b.Queue(messagesSQL, t.ID, afterSeq, limit).Query(func(rows pgx.Rows) (err error) {
		page.Messages, err = collectMessages(rows)
		return err
	})
	b.Queue(viewerSQL, t.ID, viewer).QueryRow(func(row pgx.Row) (err error) {
		page.Viewer, err = scanViewer(row)
		return err
	})
	b.Queue(poolSettingsSQL, t.PoolID).QueryRow(func(row pgx.Row) (err error) {
		page.Settings, err = scanPoolSettings(row, t.PoolID)
		return err
	})
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return domain.ThreadPage{}, dbError(err)
	}
	return page, nil
}

const insertBreakGlassSQL = `INSERT INTO break_glass_access (id, thread_id, subject, reason_sealed, created_at)
	VALUES ($1, $2, $3, $4, $5)`

// RecordBreakGlass implements domain.InboxRepository.
func (s *Store) RecordBreakGlass(ctx context.Context, threadID string, bg domain.BreakGlass) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, insertBreakGlassSQL, bg.ID, threadID, bg.Subject, bg.ReasonSealed, bg.At)
		return err
	})
}

// MarkRead implements domain.InboxRepository.
func (s *Store) MarkRead(ctx context.Context, threadID, subject string, seq int32, effects func(domain.Viewer) ([]outbox.Event, error)) (domain.Viewer, error) {
	var v domain.Viewer
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO viewer_state (thread_id, subject, read_seq) VALUES ($1, $2, $3)
			ON CONFLICT (thread_id, subject) DO UPDATE SET read_seq = greatest(viewer_state.read_seq, excluded.read_seq)`,
			threadID, subject, seq); err != nil {
			return err
		}
		var err error
		if v, err = scanViewer(tx.QueryRow(ctx, viewerSQL, threadID, subject)); err != nil {
			return err
		}
		rows, err := effects(v)
		if err != nil {
			return err
		}
		return addOutbox(ctx, tx, rows)
	})
	return v, err
}

// SetArchived implements domain.InboxRepository.
func (s *Store) SetArchived(ctx context.Context, threadID, subject string, on bool, at time.Time, rows []outbox.Event) (time.Time, error) {
	var archived *time.Time
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		if on {
			err = tx.QueryRow(ctx, `INSERT INTO viewer_state (thread_id, subject, archived_at) VALUES ($1, $2, $3)
				ON CONFLICT (thread_id, subject) DO UPDATE SET archived_at = coalesce(viewer_state.archived_at, excluded.archived_at)
				RETURNING archived_at`, threadID, subject, at).Scan(&archived)
		} else {
			_, err = tx.Exec(ctx, `UPDATE viewer_state SET archived_at = NULL WHERE thread_id = $1 AND subject = $2`, threadID, subject)
		}
		if err != nil {
			return err
		}
		return addOutbox(ctx, tx, rows)
	})
	if err != nil || archived == nil {
		return time.Time{}, err
	}
	return *archived, nil
}

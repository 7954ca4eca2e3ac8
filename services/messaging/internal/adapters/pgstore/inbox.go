package pgstore

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// listSQL is one ListQuery's FROM and WHERE clauses and their arguments ($1 is the viewer).
type listSQL struct {
	args []any
}

func (l *listSQL) arg(v any) string {
	l.args = append(l.args, v)
	return "$" + strconv.Itoa(len(l.args))
}

// poolIn matches a set of pools; a single pool is named with "=" so that the planner can walk
// the pool's ordered index (threads_pool_*) and stop after a page: with "= ANY" Postgres 15
// sorts the whole pool.
func (l *listSQL) poolIn(pools []string) string {
	if len(pools) == 1 {
		return "t.pool_id = " + l.arg(pools[0])
	}
	return "t.pool_id = ANY(" + l.arg(pools) + ")"
}

// unreadSQL is the viewer's unread messages in a thread: writing counts as reading
// (domain.ReadMark), so it is the messages past the viewer's mark.
const unreadSQL = `greatest(t.message_count - coalesce(vs.read_seq, 0), 0)`

// from builds the FROM and WHERE of q; queues says whether the assignee, unread and keyset
// filters apply (the list) or not (the counts). ok is false when q can see nothing.
func (l *listSQL) from(q domain.ListQuery, queues bool) (sql string, ok bool) {
	l.args = []any{q.Viewer}
	var vis []string
	if q.OwnPatientID != "" {
		vis = append(vis, "t.patient_id = "+l.arg(q.OwnPatientID))
	}
	if len(q.ProxyPatientIDs) > 0 {
		vis = append(vis, "(t.patient_id = ANY("+l.arg(q.ProxyPatientIDs)+") AND t.sensitivity <> 3)")
	}
	if len(q.PoolIDs) > 0 {
		vis = append(vis, l.poolIn(q.PoolIDs))
	}
	if len(vis) == 0 {
		return "", false
	}
	where := []string{"(" + strings.Join(vis, " OR ") + ")"}
	if q.FilterPatientID != "" {
		where = append(where, "t.patient_id = "+l.arg(q.FilterPatientID))
	}
	if len(q.FilterPoolIDs) > 0 {
		where = append(where, l.poolIn(q.FilterPoolIDs))
	}
	switch len(q.Statuses) {
	case 0:
	case 1:
		where = append(where, "t.status = "+l.arg(int16(q.Statuses[0])))
	default:
		st := make([]int16, len(q.Statuses))
		for i, v := range q.Statuses {
			st[i] = int16(v)
		}
		where = append(where, "t.status = ANY("+l.arg(st)+"::smallint[])")
	}
	if len(q.Categories) > 0 {
		cs := make([]int16, len(q.Categories))
		for i, v := range q.Categories {
			cs[i] = smallint(v)
		}
		where = append(where, "t.category = ANY("+l.arg(cs)+"::smallint[])")
	}
	switch q.Box {
	case domain.BoxArchived:
		where = append(where, "vs.archived_at IS NOT NULL")
	case domain.BoxSent:
		where = append(where, "vs.archived_at IS NULL")
		sent := "t.created_by_subject = $1"
		if len(q.PoolIDs) > 0 {
			sent = "(" + sent + " OR (t.created_by_role IN (3, 4) AND " + l.poolIn(q.PoolIDs) + "))"
		}
		where = append(where, sent)
	default:
		where = append(where, "vs.archived_at IS NULL")
	}
	if queues {
		switch q.Assignee {
		case domain.AssigneeMe:
			where = append(where, "t.assignee_subject = $1")
		case domain.AssigneeUnassigned:
			where = append(where, "t.assignee_subject = ''")
		case domain.AssigneeMember:
			where = append(where, "t.assignee_subject = "+l.arg(q.AssigneeSubject))
		}
		if q.UnreadOnly {
			where = append(where, "t.message_count > coalesce(vs.read_seq, 0)")
		}
		if q.AfterID != "" {
			where = append(where, "(t.last_message_at, t.id) < ("+l.arg(q.AfterTime)+", "+l.arg(q.AfterID)+"::uuid)")
		}
	}
	return `FROM threads t
		LEFT JOIN viewer_state vs ON vs.thread_id = t.id AND vs.subject = $1
		WHERE ` + strings.Join(where, " AND "), true
}

// listThreadsSQL is ListThreads' query for q; ok is false when q can see nothing.
func listThreadsSQL(q domain.ListQuery) (sql string, args []any, ok bool) {
	var l listSQL
	from, ok := l.from(q, true)
	if !ok {
		return "", nil, false
	}
	return `SELECT ` + threadCols + `, coalesce(vs.read_seq, 0), vs.archived_at, ` + unreadSQL + `::int
		` + from + `
		ORDER BY t.last_message_at DESC, t.id DESC LIMIT ` + l.arg(q.Limit), l.args, true
}

// countThreadsSQL is CountThreads' query for q; ok is false when q can see nothing.
func countThreadsSQL(q domain.ListQuery) (sql string, args []any, ok bool) {
	var l listSQL
	from, ok := l.from(q, false)
	if !ok {
		return "", nil, false
	}
	return `SELECT count(*)::int,
		count(*) FILTER (WHERE t.message_count > coalesce(vs.read_seq, 0))::int,
		coalesce(sum(` + unreadSQL + `), 0)::bigint,
		count(*) FILTER (WHERE t.assignee_subject = '')::int,
		count(*) FILTER (WHERE t.assignee_subject = $1)::int
		` + from, l.args, true
}

// ListThreads implements domain.InboxRepository.
func (s *Store) ListThreads(ctx context.Context, q domain.ListQuery) ([]domain.ListedThread, error) {
	sql, args, ok := listThreadsSQL(q)
	if !ok {
		return nil, nil
	}
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

// CountThreads implements domain.InboxRepository.
func (s *Store) CountThreads(ctx context.Context, q domain.ListQuery) (domain.ThreadCounts, error) {
	var c domain.ThreadCounts
	sql, args, ok := countThreadsSQL(q)
	if !ok {
		return c, nil
	}
	err := s.pool.QueryRow(ctx, sql, args...).Scan(&c.Total, &c.Unread, &c.UnreadMessages, &c.Unassigned, &c.AssignedToMe)
	return c, dbError(err)
}

const viewerSQL = `SELECT coalesce(vs.read_seq, 0), vs.archived_at, ` + unreadSQL + `::int
	FROM threads t LEFT JOIN viewer_state vs ON vs.thread_id = t.id AND vs.subject = $2
	WHERE t.id = $1`

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
	rows, err := outbox.NewRows(ctx, audit...)
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
	b.Queue(receiptsSQL, t.ID, afterSeq).Query(func(rows pgx.Rows) (err error) {
		page.Receipts, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (domain.ReadReceipt, error) {
			var r domain.ReadReceipt
			var role int16
			err := row.Scan(&r.Subject, &role, &r.OnBehalfOf, &r.Seq, &r.At)
			r.Role = commonv1.Role(role)
			return r, err
		})
		return err
	})
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return domain.ThreadPage{}, dbError(err)
	}
	return page, nil
}

// receiptsSQL reads a thread's receipts past a seq: a message's receipt for a person is their
// first at or past it (domain.FirstReads).
const receiptsSQL = `SELECT subject, role, on_behalf_of, seq, read_at FROM read_receipts
	WHERE thread_id = $1 AND seq > $2 ORDER BY subject, seq`

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
func (s *Store) MarkRead(ctx context.Context, threadID string, mark domain.ReadMark, effects func(domain.Viewer) ([]outbox.Event, error)) (domain.Viewer, error) {
	var v domain.Viewer
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		// The receipt is written only when the mark rose: the upsert returns no row otherwise.
		if _, err := tx.Exec(ctx, `WITH mark AS (
				INSERT INTO viewer_state (thread_id, subject, read_seq) VALUES ($1, $2, $3)
				ON CONFLICT (thread_id, subject) DO UPDATE SET read_seq = excluded.read_seq
					WHERE viewer_state.read_seq < excluded.read_seq
				RETURNING read_seq)
			INSERT INTO read_receipts (thread_id, subject, role, on_behalf_of, seq, read_at)
			SELECT $1, $2, $4, $5, read_seq, $6 FROM mark`,
			threadID, mark.Subject, mark.Seq, smallint(mark.Role), mark.OnBehalfOf, mark.At); err != nil {
			return err
		}
		var err error
		if v, err = scanViewer(tx.QueryRow(ctx, viewerSQL, threadID, mark.Subject)); err != nil {
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

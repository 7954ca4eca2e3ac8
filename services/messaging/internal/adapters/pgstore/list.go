package pgstore

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// Box values for ListQuery (match messagingv1.Box).
const (
	BoxInbox    = 1
	BoxSent     = 2
	BoxArchived = 3
)

// ListQuery selects the threads one viewer may see. The visibility fields (OwnPatientID,
// ProxyPatientIDs, PoolIDs) come from the caller's verified principal, never from the request.
type ListQuery struct {
	Viewer string
	// OwnPatientID: the viewer's own threads as a patient (every sensitivity).
	OwnPatientID string
	// ProxyPatientIDs: patients the viewer holds an active read grant for; adolescent-
	// confidential threads are never selected through them.
	ProxyPatientIDs []string
	// PoolIDs: the care pools whose threads the viewer works.
	PoolIDs []string
	// Filters from the request, already checked against the visibility above.
	FilterPatientID string
	FilterPoolIDs   []string
	Box             int
	UnreadOnly      bool
	// Keyset: only threads strictly after (AfterTime, AfterID) in (last_message_at DESC, id DESC).
	AfterTime time.Time
	AfterID   string
	Limit     int
}

// ListedThread is a thread with the viewer's state in it.
type ListedThread struct {
	Thread *domain.Thread
	Viewer Viewer
}

// ListThreads runs q. Ordering is stable (last_message_at DESC, id DESC), so keyset pages
// never skip or repeat a thread that did not move.
func ListThreads(ctx context.Context, db DB, q ListQuery) ([]ListedThread, error) {
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
	case BoxArchived:
		where = append(where, "vs.archived_at IS NOT NULL")
	case BoxSent:
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
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ListedThread
	for rows.Next() {
		var lt ListedThread
		var archived *time.Time
		t, err := scanThread(rows, &lt.Viewer.ReadSeq, &archived, &lt.Viewer.Unread)
		if err != nil {
			return nil, err
		}
		if archived != nil {
			lt.Viewer.ArchivedAt = *archived
		}
		lt.Thread = t
		out = append(out, lt)
	}
	return out, rows.Err()
}

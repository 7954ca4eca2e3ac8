// Package pgstore is the messaging service's Postgres adapter: plain pgx queries over the
// tables of migrations/. Every function takes the DB (a transaction or the pool) it runs on,
// so the use cases decide transaction boundaries and put audit records and events in the same
// transaction as the change. Only sealed PHI ever reaches these tables.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// DB is what queries run on: a pgx.Tx, a *pgxpool.Pool or a *pgx.Conn.
type DB = pg.Querier

// ErrNoRows is returned when a looked-up row does not exist.
var ErrNoRows = errors.New("pgstore: no such row")

// ErrThreadClosed is returned by AppendMessage when the thread is closed (or gone).
var ErrThreadClosed = errors.New("pgstore: thread closed or missing")

// WrappedDEKStore names the column holding wrapped DEKs, for `securemsgctl keys rewrap --store`
// (pg:<schema>.threads.id.wrapped_dek).
const (
	DEKTable  = "threads"
	DEKID     = "id"
	DEKColumn = "wrapped_dek"
)

const threadCols = `t.id::text, t.pool_id, t.patient_id, t.category, t.sensitivity, t.status,
	coalesce(t.wrapped_dek, ''), t.subject_sealed, t.created_by_subject, t.created_by_role,
	t.created_on_behalf_of, t.assignee_subject, t.participants, t.created_at, t.updated_at,
	t.last_message_at, t.last_sender_role, t.closed_at, t.message_count, t.has_attachments,
	t.auto_replied, t.legal_hold, t.legal_hold_case,
	EXISTS (SELECT 1 FROM patient_holds h WHERE h.patient_id = t.patient_id), t.transfer_note_sealed`

func scanThread(row pgx.Row, extra ...any) (*domain.Thread, error) {
	var t domain.Thread
	var category, sensitivity, status, createdRole, lastRole int16
	var closed *time.Time
	dest := []any{&t.ID, &t.PoolID, &t.PatientID, &category, &sensitivity, &status,
		&t.WrappedDEK, &t.SubjectSealed, &t.CreatedBySubject, &createdRole,
		&t.CreatedOnBehalfOf, &t.AssigneeSubject, &t.Participants, &t.CreatedAt, &t.UpdatedAt,
		&t.LastMessageAt, &lastRole, &closed, &t.MessageCount, &t.HasAttachments,
		&t.AutoReplied, &t.LegalHold, &t.LegalHoldCase, &t.PatientLegalHold, &t.TransferNoteSealed}
	if err := row.Scan(append(dest, extra...)...); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, ErrNoRows
		}
		return nil, err
	}
	t.Category, t.Sensitivity, t.Status = commonv1.ThreadCategory(category), commonv1.Sensitivity(sensitivity), domain.Status(status)
	t.CreatedByRole, t.LastSenderRole = commonv1.Role(createdRole), commonv1.Role(lastRole)
	if closed != nil {
		t.ClosedAt = *closed
	}
	return &t, nil
}

// Thread loads a thread by id; ErrNoRows when there is none.
func Thread(ctx context.Context, db DB, id string) (*domain.Thread, error) {
	return scanThread(db.QueryRow(ctx, `SELECT `+threadCols+` FROM threads t WHERE t.id = $1`, id))
}

// ThreadAndRequest loads a thread and, in the same statement, whether sender's client request
// id was used before (by a message or a retraction: what MessageByRequest would find). t is nil
// when the thread does not exist; used is false when the request id is new.
func ThreadAndRequest(ctx context.Context, db DB, threadID, sender, requestID string) (t *domain.Thread, used bool, err error) {
	t, err = scanThread(db.QueryRow(ctx, `SELECT `+threadCols+`,
		EXISTS (SELECT 1 FROM messages m WHERE m.sender_subject = $2 AND m.client_request_id = $3)
		OR EXISTS (SELECT 1 FROM messages m WHERE m.retracted_by_subject = $2 AND m.retract_request_id = $3)
		FROM threads t WHERE t.id = $1`, threadID, sender, requestID), &used)
	return t, used, noRowsIsNil(err)
}

func noRowsIsNil(err error) error {
	if errors.Is(err, ErrNoRows) {
		return nil
	}
	return err
}

// ThreadForUpdate loads a thread and locks its row until the transaction ends.
func ThreadForUpdate(ctx context.Context, tx pgx.Tx, id string) (*domain.Thread, error) {
	return scanThread(tx.QueryRow(ctx, `SELECT `+threadCols+` FROM threads t WHERE t.id = $1 FOR UPDATE OF t`, id))
}

// InsertThread stores a new thread with no messages yet.
func InsertThread(ctx context.Context, tx pgx.Tx, t *domain.Thread) error {
	_, err := tx.Exec(ctx, `INSERT INTO threads (id, pool_id, patient_id, category, sensitivity, status,
		wrapped_dek, subject_sealed, created_by_subject, created_by_role, created_on_behalf_of,
		created_at, updated_at, last_message_at, last_sender_role)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$12,$12,$10)`,
		t.ID, t.PoolID, t.PatientID, int16(t.Category), int16(t.Sensitivity), int16(t.Status),
		t.WrappedDEK, t.SubjectSealed, t.CreatedBySubject, int16(t.CreatedByRole), t.CreatedOnBehalfOf,
		t.CreatedAt)
	return err
}

// Appended is what AppendMessage reports about the thread after the append.
type Appended struct {
	Seq          int32
	Participants []string
	Assignee     string
}

// appendSQL appends a message: the thread's counters and participants change and the message is
// inserted in one statement, which assigns the message its seq. guard adds conditions on the
// thread row (from $14 on); outbox adds a data-modifying clause (see outbox.InsertSQL).
func appendSQL(guard, outboxCTE string) string {
	return `
WITH t AS (
	UPDATE threads SET message_count = message_count + 1, last_message_at = $8, updated_at = $8,
		last_sender_role = $4,
		participants = CASE WHEN $3 = '' OR $3 = ANY(participants) THEN participants ELSE participants || $3::text END,
		has_attachments = has_attachments OR cardinality($7::text[]) > 0,
		auto_replied = auto_replied OR $13
	WHERE id = $2 AND status <> 3` + guard + `
	RETURNING message_count, participants, assignee_subject
), m AS (
	INSERT INTO messages (id, thread_id, seq, sender_subject, sender_role, on_behalf_of, body_sealed,
		attachment_ids, created_at, auto_reply, corrects_message_id, client_request_id, request_fp_sealed)
	SELECT $1, $2, t.message_count, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 FROM t
	RETURNING seq
)` + outboxCTE + `
SELECT m.seq, t.participants, t.assignee_subject FROM m, t`
}

var (
	appendInTxSQL = appendSQL("", "")
	// appendIfUnchangedSQL writes only while the thread still has the pool, sensitivity,
	// assignee and participants the send was authorised against and its events were built
	// from, and writes the events exactly when the message was inserted.
	appendIfUnchangedSQL = appendSQL(`
		AND pool_id = $14 AND sensitivity = $15 AND assignee_subject = $16 AND participants = $17::text[]`,
		`, o AS (`+outbox.InsertSQL(18, `EXISTS (SELECT 1 FROM m)`)+`)`)
)

func appendArgs(m *domain.Message, markAutoReplied bool) []any {
	return []any{m.ID, m.ThreadID, m.SenderSubject, int16(m.SenderRole),
		m.OnBehalfOf, m.BodySealed, nonNil(m.AttachmentIDs), m.CreatedAt, m.AutoReply,
		nullUUID(m.CorrectsMessageID), nullUUID(m.ClientRequestID), m.RequestFPSealed, markAutoReplied}
}

// AppendMessage adds m as the thread's next message (its Seq is assigned here), updating the
// thread's counters and participants in the same statement. markAutoReplied records that the
// pool's auto-reply has been sent. ErrThreadClosed when the thread is closed or gone; a unique
// violation on messages_request when the sender's request id was used concurrently.
func AppendMessage(ctx context.Context, tx pgx.Tx, m *domain.Message, markAutoReplied bool) (Appended, error) {
	return scanAppended(tx.QueryRow(ctx, appendInTxSQL, appendArgs(m, markAutoReplied)...), m, ErrThreadClosed)
}

// ErrThreadChanged is returned by AppendMessageIfUnchanged when the thread was closed, deleted
// or changed since it was loaded; nothing was written.
var ErrThreadChanged = errors.New("pgstore: thread changed since it was loaded")

// AppendMessageIfUnchanged appends m to t and writes events to the outbox in one statement,
// hence one round trip and one implicit transaction, provided the thread still has the pool,
// sensitivity, assignee and participants of t; otherwise it writes nothing and returns
// ErrThreadChanged. Events built from t (recipients, pool subject) therefore describe the
// thread as it was when the message landed. The conflicts of AppendMessage apply.
func AppendMessageIfUnchanged(ctx context.Context, db DB, t *domain.Thread, m *domain.Message, events outbox.Rows) (Appended, error) {
	args := append(appendArgs(m, false), t.PoolID, int16(t.Sensitivity), t.AssigneeSubject, nonNil(t.Participants))
	return scanAppended(db.QueryRow(ctx, appendIfUnchangedSQL, append(args, events.Args()...)...), m, ErrThreadChanged)
}

func scanAppended(row pgx.Row, m *domain.Message, errNone error) (Appended, error) {
	var a Appended
	err := row.Scan(&a.Seq, &a.Participants, &a.Assignee)
	if errors.Is(err, pgx.ErrNoRows) {
		return a, errNone
	}
	if err != nil {
		return a, err
	}
	m.Seq = a.Seq
	return a, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nullUUID(s string) any {
	if s == "" {
		return nil
	}
	return s
}

const messageCols = `m.id::text, m.thread_id::text, m.seq, m.sender_subject, m.sender_role, m.on_behalf_of,
	m.body_sealed, m.attachment_ids, m.created_at, m.auto_reply, coalesce(m.corrects_message_id::text, ''),
	coalesce(m.client_request_id::text, ''), m.request_fp_sealed, m.retracted_at,
	coalesce(m.retracted_by_subject, ''), coalesce(m.retracted_by_role, 0), coalesce(m.retract_reason_code, ''),
	coalesce(m.retract_request_id::text, ''), coalesce(m.correction_message_id::text, '')`

func scanMessage(row pgx.Row, extra ...any) (*domain.Message, error) {
	var m domain.Message
	var senderRole, retractRole int16
	var retracted *time.Time
	if err := row.Scan(append([]any{&m.ID, &m.ThreadID, &m.Seq, &m.SenderSubject, &senderRole, &m.OnBehalfOf,
		&m.BodySealed, &m.AttachmentIDs, &m.CreatedAt, &m.AutoReply, &m.CorrectsMessageID,
		&m.ClientRequestID, &m.RequestFPSealed, &retracted, &m.RetractedBySubject, &retractRole,
		&m.RetractReasonCode, &m.RetractRequestID, &m.CorrectionMessageID}, extra...)...); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, ErrNoRows
		}
		return nil, err
	}
	m.SenderRole, m.RetractedByRole = commonv1.Role(senderRole), commonv1.Role(retractRole)
	if retracted != nil {
		m.RetractedAt = *retracted
	}
	return &m, nil
}

// Message loads one message of a thread; ErrNoRows when the thread has no such message.
func Message(ctx context.Context, db DB, threadID, id string) (*domain.Message, error) {
	return scanMessage(db.QueryRow(ctx, `SELECT `+messageCols+` FROM messages m WHERE m.id = $1 AND m.thread_id = $2`, id, threadID))
}

// MessageByID loads a message by id alone (CheckMessageAccess).
func MessageByID(ctx context.Context, db DB, id string) (*domain.Message, error) {
	return scanMessage(db.QueryRow(ctx, `SELECT `+messageCols+` FROM messages m WHERE m.id = $1`, id))
}

// MessageByRequest finds what sender's client request id produced: the message it created, or
// the message it retracted (retracted == true). ErrNoRows when the id is unused.
func MessageByRequest(ctx context.Context, db DB, sender, requestID string) (m *domain.Message, retracted bool, err error) {
	m, err = scanMessage(db.QueryRow(ctx, messageByRequestSQL, sender, requestID), &retracted)
	return m, retracted, err
}

// messageByRequestSQL looks in both request-id indexes in one round trip; a created message
// wins over a retracted one (one request id cannot be both unless a client reused it).
const messageByRequestSQL = `SELECT * FROM (
	(SELECT ` + messageCols + `, false AS retracted FROM messages m
		WHERE m.sender_subject = $1 AND m.client_request_id = $2)
	UNION ALL
	(SELECT ` + messageCols + `, true FROM messages m
		WHERE m.retracted_by_subject = $1 AND m.retract_request_id = $2 LIMIT 1)
) r ORDER BY r.retracted LIMIT 1`

// Messages returns up to limit messages of a thread after seq afterSeq, oldest first.
func Messages(ctx context.Context, db DB, threadID string, afterSeq int32, limit int) ([]*domain.Message, error) {
	rows, err := db.Query(ctx, messagesSQL, threadID, afterSeq, limit)
	if err != nil {
		return nil, err
	}
	return collectMessages(rows)
}

const messagesSQL = `SELECT ` + messageCols + ` FROM messages m
	WHERE m.thread_id = $1 AND m.seq > $2 ORDER BY m.seq LIMIT $3`

func collectMessages(rows pgx.Rows) ([]*domain.Message, error) {
	defer rows.Close()
	var out []*domain.Message
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// Viewer is one person's state in a thread.
type Viewer struct {
	ReadSeq    int32
	ArchivedAt time.Time
	Unread     int32
}

// ViewerState returns subject's read mark, archive time and unread count in a thread. Messages
// the subject wrote count as read.
func ViewerState(ctx context.Context, db DB, threadID, subject string) (Viewer, error) {
	return scanViewer(db.QueryRow(ctx, viewerSQL, threadID, subject))
}

const viewerSQL = `SELECT coalesce(vs.read_seq, 0), vs.archived_at,
	(SELECT count(*) FROM messages m WHERE m.thread_id = $1 AND m.seq > coalesce(vs.read_seq, 0) AND m.sender_subject <> $2)
	FROM (SELECT 1) one LEFT JOIN viewer_state vs ON vs.thread_id = $1 AND vs.subject = $2`

func scanViewer(row pgx.Row) (Viewer, error) {
	var v Viewer
	var archived *time.Time
	err := row.Scan(&v.ReadSeq, &archived, &v.Unread)
	if archived != nil {
		v.ArchivedAt = *archived
	}
	return v, err
}

// BreakGlass is a break-the-glass access to record with a read.
type BreakGlass struct {
	ID           string
	Subject      string
	ReasonSealed []byte
	At           time.Time
}

// ThreadPage is what a thread read returns.
type ThreadPage struct {
	Messages []*domain.Message
	Viewer   Viewer
	Settings domain.PoolSettings
}

// ReadThreadPage reads up to limit messages of t after seq afterSeq, subject's viewer state and
// the pool's settings, and writes the read's audit events (and break-glass row, when bg is not
// nil), all in one round trip: a batch without BEGIN, which Postgres runs as one implicit
// transaction. The page is returned only when that transaction committed, so nothing is read
// unless its audit record is stored (fail closed).
func ReadThreadPage(ctx context.Context, db DB, t *domain.Thread, subject string, afterSeq int32, limit int, bg *BreakGlass, audit outbox.Rows) (ThreadPage, error) {
	var page ThreadPage
	b := &pgx.Batch{}
	if bg != nil {
		b.Queue(insertBreakGlassSQL, bg.ID, t.ID, bg.Subject, bg.ReasonSealed, bg.At)
	}
	audit.Queue(b)
	b.Queue(messagesSQL, t.ID, afterSeq, limit).Query(func(rows pgx.Rows) (err error) {
		page.Messages, err = collectMessages(rows)
		return err
	})
	b.Queue(viewerSQL, t.ID, subject).QueryRow(func(row pgx.Row) (err error) {
		page.Viewer, err = scanViewer(row)
		return err
	})
	b.Queue(poolSettingsSQL, t.PoolID).QueryRow(func(row pgx.Row) (err error) {
		page.Settings, err = scanPoolSettings(row, t.PoolID)
		return err
	})
	if err := db.SendBatch(ctx, b).Close(); err != nil {
		return ThreadPage{}, err
	}
	return page, nil
}

// MarkRead raises subject's read mark in a thread to seq (never lowers it) and returns the
// viewer state after the change.
func MarkRead(ctx context.Context, tx pgx.Tx, threadID, subject string, seq int32) (Viewer, error) {
	if _, err := tx.Exec(ctx, `INSERT INTO viewer_state (thread_id, subject, read_seq) VALUES ($1, $2, $3)
		ON CONFLICT (thread_id, subject) DO UPDATE SET read_seq = greatest(viewer_state.read_seq, excluded.read_seq)`,
		threadID, subject, seq); err != nil {
		return Viewer{}, err
	}
	return ViewerState(ctx, tx, threadID, subject)
}

// SetArchived archives (keeping the first archive time) or unarchives a thread for subject and
// returns the archive time (zero when unarchived).
func SetArchived(ctx context.Context, tx pgx.Tx, threadID, subject string, on bool, now time.Time) (time.Time, error) {
	var at *time.Time
	var err error
	if on {
		err = tx.QueryRow(ctx, `INSERT INTO viewer_state (thread_id, subject, archived_at) VALUES ($1, $2, $3)
			ON CONFLICT (thread_id, subject) DO UPDATE SET archived_at = coalesce(viewer_state.archived_at, excluded.archived_at)
			RETURNING archived_at`, threadID, subject, now).Scan(&at)
	} else {
		_, err = tx.Exec(ctx, `UPDATE viewer_state SET archived_at = NULL WHERE thread_id = $1 AND subject = $2`, threadID, subject)
	}
	if err != nil || at == nil {
		return time.Time{}, err
	}
	return *at, nil
}

// Triage is a change of a thread's routing state.
type Triage struct {
	Status             domain.Status
	Assignee           string
	PoolID             string
	ClosedAt           time.Time
	TransferNoteSealed []byte // nil keeps the current note
}

// UpdateTriage writes a thread's status, assignee, pool and close time and returns the thread.
func UpdateTriage(ctx context.Context, tx pgx.Tx, id string, c Triage, now time.Time) (*domain.Thread, error) {
	var closed *time.Time
	if !c.ClosedAt.IsZero() {
		closed = &c.ClosedAt
	}
	return scanThread(tx.QueryRow(ctx, `UPDATE threads t SET status = $2, assignee_subject = $3, pool_id = $4,
		closed_at = $5, transfer_note_sealed = coalesce($6, t.transfer_note_sealed), updated_at = $7
		WHERE t.id = $1 RETURNING `+threadCols, id, int16(c.Status), c.Assignee, c.PoolID, closed, c.TransferNoteSealed, now))
}

// Retract marks a message retracted. It reports false when it already was.
func Retract(ctx context.Context, tx pgx.Tx, m *domain.Message) (bool, error) {
	tag, err := tx.Exec(ctx, `UPDATE messages SET retracted_at = $3, retracted_by_subject = $4, retracted_by_role = $5,
		retract_reason_code = $6, retract_request_id = $7, correction_message_id = $8
		WHERE id = $1 AND thread_id = $2 AND retracted_at IS NULL`,
		m.ID, m.ThreadID, m.RetractedAt, m.RetractedBySubject, int16(m.RetractedByRole), m.RetractReasonCode,
		nullUUID(m.RetractRequestID), nullUUID(m.CorrectionMessageID))
	return tag.RowsAffected() == 1, err
}

// InsertBreakGlass stores a sealed break-the-glass reason.
func InsertBreakGlass(ctx context.Context, tx pgx.Tx, id, threadID, subject string, sealed []byte, now time.Time) error {
	_, err := tx.Exec(ctx, insertBreakGlassSQL, id, threadID, subject, sealed, now)
	return err
}

const insertBreakGlassSQL = `INSERT INTO break_glass_access (id, thread_id, subject, reason_sealed, created_at)
	VALUES ($1, $2, $3, $4, $5)`

// PoolSettings loads a pool's settings; the zero settings (Version 0) when never stored.
func PoolSettings(ctx context.Context, db DB, poolID string) (domain.PoolSettings, error) {
	return scanPoolSettings(db.QueryRow(ctx, poolSettingsSQL, poolID), poolID)
}

const poolSettingsSQL = `SELECT auto_reply_enabled, auto_reply_text, turnaround_seconds, emergency_disclaimer,
	updated_at, updated_by_subject, version FROM pool_settings WHERE pool_id = $1`

func scanPoolSettings(row pgx.Row, poolID string) (domain.PoolSettings, error) {
	s := domain.PoolSettings{PoolID: poolID}
	var turnaround *int64
	err := row.Scan(&s.AutoReplyEnabled, &s.AutoReplyText, &turnaround, &s.EmergencyDisclaimer, &s.UpdatedAt, &s.UpdatedBySubject, &s.Version)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, nil
	}
	if turnaround != nil {
		s.Turnaround = time.Duration(*turnaround) * time.Second
	}
	return s, err
}

// SavePoolSettings stores s if the stored version still equals expectVersion (0: never stored)
// and returns the new version; ok is false when another writer changed them first.
func SavePoolSettings(ctx context.Context, tx pgx.Tx, s domain.PoolSettings, expectVersion int64) (int64, bool, error) {
	var turnaround *int64
	if s.Turnaround > 0 {
		v := int64(s.Turnaround / time.Second)
		turnaround = &v
	}
	var version int64
	var err error
	if expectVersion == 0 {
		err = tx.QueryRow(ctx, `INSERT INTO pool_settings (pool_id, auto_reply_enabled, auto_reply_text, turnaround_seconds,
			emergency_disclaimer, updated_at, updated_by_subject, version) VALUES ($1,$2,$3,$4,$5,$6,$7,1)
			ON CONFLICT (pool_id) DO NOTHING RETURNING version`,
			s.PoolID, s.AutoReplyEnabled, s.AutoReplyText, turnaround, s.EmergencyDisclaimer, s.UpdatedAt, s.UpdatedBySubject).Scan(&version)
	} else {
		err = tx.QueryRow(ctx, `UPDATE pool_settings SET auto_reply_enabled = $2, auto_reply_text = $3, turnaround_seconds = $4,
			emergency_disclaimer = $5, updated_at = $6, updated_by_subject = $7, version = version + 1
			WHERE pool_id = $1 AND version = $8 RETURNING version`,
			s.PoolID, s.AutoReplyEnabled, s.AutoReplyText, turnaround, s.EmergencyDisclaimer, s.UpdatedAt, s.UpdatedBySubject, expectVersion).Scan(&version)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	return version, err == nil, err
}

// SetThreadHold places or lifts a thread's own legal hold; changed reports whether it flipped.
func SetThreadHold(ctx context.Context, tx pgx.Tx, threadID string, on bool, caseRef string) (changed bool, err error) {
	tag, err := tx.Exec(ctx, `UPDATE threads SET legal_hold = $2, legal_hold_case = $3 WHERE id = $1 AND legal_hold <> $2`,
		threadID, on, caseRef)
	return tag.RowsAffected() == 1, err
}

// SetPatientHold places or lifts the hold over all of a patient's threads. It returns how many
// of the patient's threads changed effective state (those without a hold of their own), 0 when
// the patient hold was already in the requested state.
func SetPatientHold(ctx context.Context, tx pgx.Tx, patientID string, on bool, caseRef string, now time.Time) (int64, error) {
	var tag pgconn.CommandTag
	var err error
	if on {
		tag, err = tx.Exec(ctx, `INSERT INTO patient_holds (patient_id, case_reference, created_at) VALUES ($1, $2, $3)
			ON CONFLICT (patient_id) DO NOTHING`, patientID, caseRef, now)
	} else {
		tag, err = tx.Exec(ctx, `DELETE FROM patient_holds WHERE patient_id = $1`, patientID)
	}
	if err != nil || tag.RowsAffected() == 0 {
		return 0, err
	}
	var n int64
	err = tx.QueryRow(ctx, `SELECT count(*) FROM threads WHERE patient_id = $1 AND NOT legal_hold`, patientID).Scan(&n)
	return n, err
}

// PurgeCandidate is a thread past retention.
type PurgeCandidate struct {
	ID          string
	PatientID   string
	PoolID      string
	Category    commonv1.ThreadCategory
	Sensitivity commonv1.Sensitivity
	WrappedDEK  string
	Messages    int64
	Attachments int64
}

// ExpiredThreads lists up to limit threads of category whose last message is before cutoff and
// that no legal hold covers, oldest first.
func ExpiredThreads(ctx context.Context, db DB, category commonv1.ThreadCategory, cutoff time.Time, limit int) ([]PurgeCandidate, error) {
	rows, err := db.Query(ctx, `SELECT t.id::text, t.patient_id, t.pool_id, t.sensitivity, coalesce(t.wrapped_dek, ''), t.message_count,
		(SELECT coalesce(sum(cardinality(m.attachment_ids)), 0) FROM messages m WHERE m.thread_id = t.id)
		FROM threads t WHERE t.category = $1 AND t.last_message_at < $2 AND NOT t.legal_hold
		AND NOT EXISTS (SELECT 1 FROM patient_holds h WHERE h.patient_id = t.patient_id)
		ORDER BY t.last_message_at, t.id LIMIT $3`, int16(category), cutoff, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []PurgeCandidate
	for rows.Next() {
		c := PurgeCandidate{Category: category}
		var sens int16
		if err := rows.Scan(&c.ID, &c.PatientID, &c.PoolID, &sens, &c.WrappedDEK, &c.Messages, &c.Attachments); err != nil {
			return nil, err
		}
		c.Sensitivity = commonv1.Sensitivity(sens)
		out = append(out, c)
	}
	return out, rows.Err()
}

// CountHeldExpired counts threads of category past cutoff that a legal hold keeps.
func CountHeldExpired(ctx context.Context, db DB, category commonv1.ThreadCategory, cutoff time.Time) (int64, error) {
	var n int64
	err := db.QueryRow(ctx, `SELECT count(*) FROM threads t WHERE t.category = $1 AND t.last_message_at < $2
		AND (t.legal_hold OR EXISTS (SELECT 1 FROM patient_holds h WHERE h.patient_id = t.patient_id))`,
		int16(category), cutoff).Scan(&n)
	return n, err
}

// DeleteExpiredThread crypto-shreds and deletes a thread (its messages, viewer state and
// break-glass rows cascade) if it is still past cutoff and not held; deleted reports whether
// it did. The wrapped DEK is cleared first so that no copy of it survives in the row's last
// version either.
func DeleteExpiredThread(ctx context.Context, tx pgx.Tx, id string, cutoff time.Time) (bool, error) {
	tag, err := tx.Exec(ctx, `UPDATE threads t SET wrapped_dek = NULL WHERE t.id = $1 AND t.last_message_at < $2 AND NOT t.legal_hold
		AND NOT EXISTS (SELECT 1 FROM patient_holds h WHERE h.patient_id = t.patient_id)`, id, cutoff)
	if err != nil || tag.RowsAffected() == 0 {
		return false, err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM threads WHERE id = $1`, id); err != nil {
		return false, err
	}
	return true, nil
}

// IsRequestConflict reports whether err is a concurrent use of the same client request id.
func IsRequestConflict(err error) bool {
	return pg.IsUniqueViolation(err, "messages_request") || pg.IsUniqueViolation(err, "messages_retract_request") ||
		pg.IsUniqueViolation(err, "messages_pkey") || pg.IsUniqueViolation(err, "threads_pkey")
}

// Wrap annotates a query error with what was being done, keeping it matchable.
func Wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Package pgstore is the messaging service's Postgres adapter: it implements the domain
// repositories with plain pgx queries over the tables of migrations/. Each method owns its
// transaction — a single statement, a batch without BEGIN, or an explicit transaction — so
// that a change and its outbox rows (events and audit records) commit together or not at all.
// The hot paths keep to two round trips: a send loads the thread (ThreadAndRequest) and then
// appends the message with its event and audit record in one statement
// (AppendMessageIfUnchanged); a thread read loads the thread and then reads the page and
// commits its audit record in one batch (ReadThreadPage). Only sealed PHI reaches these tables.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
	"github.com/securemsg/securemsg/services/internal/platform/protoenum"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// Store implements every messaging repository of the domain (repotest.Store, which the
// contract tests hold it to) over one pool, whose search_path is the service's schema.
type Store struct {
	pool *pgxpool.Pool
	// directoryBucket is where directory changes put their entries, and applyLocal what
	// applies them to this process's snapshot once they are committed (WithDirectory).
	directoryBucket string
	applyLocal      func(proto.Message)
}

// New returns a Store over pool.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// WithDirectory names the key-value bucket directory changes put their entries into
// (natsx.Topology.DirectoryBucket), and apply, which gets each entry a change committed at
// once: this process need not wait for the outbox and its own watch to see what it wrote.
// Without a bucket, directory writes fail; apply may be nil.
func (s *Store) WithDirectory(bucket string, apply func(proto.Message)) *Store {
	s.directoryBucket, s.applyLocal = bucket, apply
	return s
}

// applyDirectory hands committed directory entries to applyLocal.
func (s *Store) applyDirectory(entries []proto.Message) {
	if s.applyLocal == nil {
		return
	}
	for _, e := range entries {
		s.applyLocal(e)
	}
}

// The column holding wrapped DEKs, for `securemsgctl keys rewrap --store`
// (pg:<schema>.threads.id.wrapped_dek).
const (
	DEKTable  = "threads"
	DEKID     = "id"
	DEKColumn = "wrapped_dek"
)

// errNoRows is what the scanners return for a missing row; each method turns it into its
// domain answer.
var errNoRows = errors.New("pgstore: no such row")

// dbError is the one place a database error becomes what the use cases see: refusals from
// the domain pass through, a concurrent use of the same request id is ErrRequestConflict, an
// unreachable database is DatabaseUnavailable, anything else stays an internal error.
func dbError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, domain.ErrThreadChanged) || errors.Is(err, domain.ErrRequestConflict):
		return err
	}
	if k, _ := usererr.KindOf(err); k != 0 {
		return err
	}
	switch {
	case isRequestConflict(err):
		return fmt.Errorf("%w: %w", domain.ErrRequestConflict, err)
	case pg.IsUnavailable(err):
		return domain.DatabaseUnavailable(err)
	}
	return err
}

// isRequestConflict reports whether err is a concurrent use of the same client request id, or
// of the thread or message id derived from it.
func isRequestConflict(err error) bool {
	return pg.IsUniqueViolation(err, "messages_request") || pg.IsUniqueViolation(err, "messages_retract_request") ||
		pg.IsUniqueViolation(err, "messages_pkey") || pg.IsUniqueViolation(err, "threads_pkey")
}

// inTx runs fn in a transaction and maps its error.
func (s *Store) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return dbError(pg.WithTx(ctx, s.pool, fn))
}

// addOutbox writes rows in tx; a failure means the change could not be recorded and must
// roll back.
func addOutbox(ctx context.Context, tx pgx.Tx, rows []outbox.Event) error {
	if err := outbox.Add(ctx, tx, rows...); err != nil {
		return domain.NotRecorded(err)
	}
	return nil
}

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
			return nil, errNoRows
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

// threadNotFound turns a missing row into ErrThreadNotFound.
func threadNotFound(t *domain.Thread, err error) (*domain.Thread, error) {
	if errors.Is(err, errNoRows) {
		return nil, domain.ErrThreadNotFound
	}
	return t, dbError(err)
}

// Thread implements domain.ThreadRepository.
func (s *Store) Thread(ctx context.Context, id string) (*domain.Thread, error) {
	return threadNotFound(scanThread(s.pool.QueryRow(ctx, `SELECT `+threadCols+` FROM threads t WHERE t.id = $1`, id)))
}

// Threads implements domain.ThreadRepository.
func (s *Store) Threads(ctx context.Context, ids []string) (map[string]*domain.Thread, error) {
	valid := make([]string, 0, len(ids))
	for _, id := range ids {
		// Only UUIDs reach the uuid[] cast: one malformed id must not fail the whole batch.
		if _, err := uuid.Parse(id); err == nil {
			valid = append(valid, id)
		}
	}
	out := make(map[string]*domain.Thread, len(valid))
	if len(valid) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT `+threadCols+` FROM threads t WHERE t.id = ANY($1::uuid[])`, valid)
	if err != nil {
		return nil, dbError(err)
	}
	defer rows.Close()
	for rows.Next() {
		t, err := scanThread(rows)
		if err != nil {
			return nil, dbError(err)
		}
		out[t.ID] = t
	}
	return out, dbError(rows.Err())
}

// ThreadAndRequest implements domain.ThreadRepository.
func (s *Store) ThreadAndRequest(ctx context.Context, threadID, sender, requestID string) (t *domain.Thread, used bool, err error) {
	t, err = scanThread(s.pool.QueryRow(ctx, `SELECT `+threadCols+`,
		EXISTS (SELECT 1 FROM messages m WHERE m.sender_subject = $2 AND m.client_request_id = $3)
		OR EXISTS (SELECT 1 FROM messages m WHERE m.retracted_by_subject = $2 AND m.retract_request_id = $3)
		FROM threads t WHERE t.id = $1`, threadID, sender, requestID), &used)
	if errors.Is(err, errNoRows) {
		return nil, false, nil
	}
	return t, used, dbError(err)
}

func threadForUpdate(ctx context.Context, tx pgx.Tx, id string) (*domain.Thread, error) {
	return threadNotFound(scanThread(tx.QueryRow(ctx, `SELECT `+threadCols+` FROM threads t WHERE t.id = $1 FOR UPDATE OF t`, id)))
}

// CreateThread implements domain.ThreadRepository.
func (s *Store) CreateThread(ctx context.Context, t *domain.Thread, rows []outbox.Event, appends domain.Appends) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO threads (id, pool_id, patient_id, category, sensitivity, status,
			wrapped_dek, subject_sealed, created_by_subject, created_by_role, created_on_behalf_of,
			created_at, updated_at, last_message_at, last_sender_role)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$12,$12,$10)`,
			t.ID, t.PoolID, t.PatientID, smallint(t.Category), smallint(t.Sensitivity), int16(t.Status),
			t.WrappedDEK, t.SubjectSealed, t.CreatedBySubject, smallint(t.CreatedByRole), t.CreatedOnBehalfOf,
			t.CreatedAt); err != nil {
			return err
		}
		rows, err := appendMessages(ctx, tx, rows, appends)
		if err != nil {
			return err
		}
		return addOutbox(ctx, tx, rows)
	})
}

// appendMessages appends each message in tx and returns rows followed by each appended
// message's rows.
func appendMessages(ctx context.Context, tx pgx.Tx, rows []outbox.Event, appends domain.Appends) ([]outbox.Event, error) {
	return appends.Apply(rows, func(m *domain.Message, markAutoReplied bool) (domain.Appended, error) {
		return scanAppended(tx.QueryRow(ctx, appendInTxSQL, appendArgs(m, markAutoReplied)...), m, domain.ErrThreadClosed)
	})
}

// appendWith appends a message: the thread's counters and participants change and the message
// is inserted in one statement, which assigns the message its seq (domain.Thread.Append states
// the same rule). guard adds conditions on the thread row (from $14 on). appendResult closes it.
func appendWith(guard string) string {
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
), mark AS (
	-- Writing counts as reading up to one's own message (domain.ReadMark).
	INSERT INTO viewer_state (thread_id, subject, read_seq)
	SELECT $2, $3, m.seq FROM m WHERE $3 <> '' AND NOT $9
	ON CONFLICT (thread_id, subject) DO UPDATE SET read_seq = excluded.read_seq
		WHERE viewer_state.read_seq < excluded.read_seq
	RETURNING read_seq
), receipt AS (
	INSERT INTO read_receipts (thread_id, subject, role, on_behalf_of, seq, read_at)
	SELECT $2, $3, $4, $5, mark.read_seq, $8 FROM mark
)`
}

const appendResult = `
SELECT m.seq, t.participants, t.assignee_subject FROM m, t`

var (
	appendInTxSQL = appendWith("") + appendResult
	// appendIfUnchanged writes only while the thread still has the pool, sensitivity, assignee
	// and participants the send was authorised against and its events were built from, and
	// writes the events (the outbox's own clause) exactly when the message was inserted.
	appendIfUnchanged = outbox.NewStatement(appendWith(`
		AND pool_id = $14 AND sensitivity = $15 AND assignee_subject = $16 AND participants = $17::text[]`),
		`EXISTS (SELECT 1 FROM m)`, appendResult)
)

func appendArgs(m *domain.Message, markAutoReplied bool) []any {
	return []any{m.ID, m.ThreadID, m.SenderSubject, smallint(m.SenderRole),
		m.OnBehalfOf, m.BodySealed, nonNil(m.AttachmentIDs), m.CreatedAt, m.AutoReply,
		nullUUID(m.CorrectsMessageID), nullUUID(m.ClientRequestID), m.RequestFPSealed, markAutoReplied}
}

// AppendMessageIfUnchanged implements domain.ThreadRepository in one statement, hence one
// round trip and one implicit transaction.
func (s *Store) AppendMessageIfUnchanged(ctx context.Context, t *domain.Thread, m *domain.Message, rows []outbox.Event) error {
	events, err := outbox.NewRows(ctx, rows...)
	if err != nil {
		return domain.NotRecorded(err)
	}
	args := append(appendArgs(m, false), t.PoolID, smallint(t.Sensitivity), t.AssigneeSubject, nonNil(t.Participants))
	_, err = scanAppended(s.pool.QueryRow(ctx, appendIfUnchanged.SQL(), appendIfUnchanged.Args(events, args...)...), m, domain.ErrThreadChanged)
	return dbError(err)
}

// scanAppended reads an append's result into m.Seq; errNone when nothing was appended.
func scanAppended(row pgx.Row, m *domain.Message, errNone error) (domain.Appended, error) {
	var a domain.Appended
	var seq int32
	err := row.Scan(&seq, &a.Participants, &a.Assignee)
	if errors.Is(err, pgx.ErrNoRows) {
		return a, errNone
	}
	if err != nil {
		return a, err
	}
	m.Seq = seq
	return a, nil
}

// UpdateThread implements domain.ThreadRepository.
func (s *Store) UpdateThread(ctx context.Context, id string, change func(*domain.Thread, domain.PoolSettingsReader) (domain.ThreadChange, error)) (*domain.Thread, error) {
	var out *domain.Thread
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		cur, err := threadForUpdate(ctx, tx, id)
		if err != nil {
			return err
		}
		c, err := change(cur, settingsIn{tx})
		if err != nil {
			return err
		}
		out = cur
		if c.Triage != nil {
			if out, err = updateTriage(ctx, tx, cur.ID, *c.Triage); err != nil {
				return err
			}
		}
		rows, err := appendMessages(ctx, tx, c.Rows, c.Appends)
		if err != nil {
			return err
		}
		return addOutbox(ctx, tx, rows)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// settingsIn reads pool settings in a transaction.
type settingsIn struct{ tx pgx.Tx }

func (r settingsIn) PoolSettings(ctx context.Context, poolID string) (domain.PoolSettings, error) {
	st, err := poolSettings(ctx, r.tx, poolID)
	return st, dbError(err)
}

func updateTriage(ctx context.Context, tx pgx.Tx, id string, c domain.Triage) (*domain.Thread, error) {
	var closed *time.Time
	if !c.ClosedAt.IsZero() {
		closed = &c.ClosedAt
	}
	return scanThread(tx.QueryRow(ctx, `UPDATE threads t SET status = $2, assignee_subject = $3, pool_id = $4,
		closed_at = $5, transfer_note_sealed = coalesce($6, t.transfer_note_sealed), updated_at = $7
		WHERE t.id = $1 RETURNING `+threadCols, id, int16(c.Status), c.Assignee, c.PoolID, closed, c.TransferNoteSealed, c.UpdatedAt))
}

// SetThreadHold implements domain.ThreadRepository.
func (s *Store) SetThreadHold(ctx context.Context, threadID string, on bool, caseRef, by string, at time.Time, rows []outbox.Event) (changed bool, err error) {
	if !on {
		by, at = "", time.Time{}
	}
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE threads SET legal_hold = $2, legal_hold_case = $3, legal_hold_by = $4, legal_hold_at = $5
			WHERE id = $1 AND legal_hold <> $2`, threadID, on, caseRef, by, nullTime(at))
		if err != nil {
			return err
		}
		changed = tag.RowsAffected() == 1
		return addOutbox(ctx, tx, rows)
	})
	return changed, err
}

// SetPatientHold implements domain.ThreadRepository.
func (s *Store) SetPatientHold(ctx context.Context, patientID string, on bool, caseRef, by string, at time.Time, rows []outbox.Event) (n int64, err error) {
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		n = 0
		var sql string
		args := []any{patientID}
		if on {
			sql, args = `INSERT INTO patient_holds (patient_id, case_reference, created_at, created_by_subject) VALUES ($1, $2, $3, $4)
				ON CONFLICT (patient_id) DO NOTHING`, append(args, caseRef, at, by)
		} else {
			sql = `DELETE FROM patient_holds WHERE patient_id = $1`
		}
		tag, err := tx.Exec(ctx, sql, args...)
		if err != nil {
			return err
		}
		if tag.RowsAffected() > 0 {
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM threads WHERE patient_id = $1 AND NOT legal_hold`, patientID).Scan(&n); err != nil {
				return err
			}
		}
		return addOutbox(ctx, tx, rows)
	})
	return n, err
}

// WriteAudit implements domain.AuditWriter: one statement, one implicit transaction.
func (s *Store) WriteAudit(ctx context.Context, rows []outbox.Event) error {
	r, err := outbox.NewRows(ctx, rows...)
	if err != nil {
		return domain.NotRecorded(err)
	}
	if err := r.Insert(ctx, s.pool); err != nil {
		if pg.IsUnavailable(err) {
			return domain.DatabaseUnavailable(err)
		}
		return domain.NotRecorded(err)
	}
	return nil
}

// smallint is an enum as its smallint column stores it. Proto enums are int32, and every value
// this service stores is a declared one (a handful each), so the conversion is exact; a value no
// int16 holds is no value of the enum, and is stored as 0, UNSPECIFIED, rather than wrapped onto
// a real one.
func smallint[E ~int32](e E) int16 { return protoenum.Code(e, 0) }

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

// Package pgstore keeps attachment metadata in the service's Postgres schema with pgx: one row
// per attachment holding the wrapped per-object key, the sealed file name, sizes, the
// plaintext SHA-256 and the scan state. Store implements domain.AttachmentRepository and
// domain.AuditWriter. The outbox rows a change commits with are written in its transaction, or
// in its very statement where the change is one statement (an upload's completion, an audit
// record on its own): no BEGIN and COMMIT round trips on the upload and download paths. The
// pool's search_path is the service's schema, so statements are unqualified.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/securemsg/securemsg/services/attachment/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// Table and columns the key-rewrap job walks: securemsgctl keys rewrap --store
// pg:attachment.attachments.id.wrapped_dek (rows with a NULL key, crypto-shredded, are skipped).
const (
	Table         = "attachments"
	IDColumn      = "id"
	WrappedColumn = "wrapped_dek"
)

// Store is the attachment repository over a pool whose search_path is the service's schema.
type Store struct {
	pool *pgxpool.Pool
}

// New returns the store over pool.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

var (
	_ domain.AttachmentRepository = (*Store)(nil)
	_ domain.AuditWriter          = (*Store)(nil)
)

const columns = `id::text, uploader_subject, coalesce(client_request_id, ''), aad_thread_id, thread_id,
	message_id, patient_id, pool_id, state, object_name, coalesce(wrapped_dek, ''), file_name_sealed,
	declared_media_type, media_type, size_bytes, object_size, sha256, signature_name, scan_attempts,
	scan_time, create_time, bind_time, delete_time`

func scan(row pgx.Row) (*domain.Attachment, error) {
	var a domain.Attachment
	var state string
	var scanTime, bindTime, deleteTime *time.Time
	err := row.Scan(&a.ID, &a.UploaderSubject, &a.ClientRequestID, &a.AADThreadID, &a.ThreadID,
		&a.MessageID, &a.PatientID, &a.PoolID, &state, &a.ObjectName, &a.WrappedDEK, &a.FileNameSealed,
		&a.DeclaredMediaType, &a.MediaType, &a.SizeBytes, &a.ObjectSize, &a.SHA256, &a.SignatureName,
		&a.ScanAttempts, &scanTime, &a.CreateTime, &bindTime, &deleteTime)
	if err != nil {
		return nil, err
	}
	a.State = domain.State(state)
	a.ScanTime, a.BindTime, a.DeleteTime = deref(scanTime), deref(bindTime), deref(deleteTime)
	return &a, nil
}

func deref(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

// nullTime is t, or NULL for the zero time.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// nullString is s, or NULL for "".
func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (s *Store) list(ctx context.Context, sql string, args ...any) ([]*domain.Attachment, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, dbErr("list attachments", err)
	}
	defer rows.Close()
	var out []*domain.Attachment
	for rows.Next() {
		a, err := scan(rows)
		if err != nil {
			return nil, dbErr("scan attachment", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, dbErr("list attachments", err)
	}
	return out, nil
}

// dbErr maps a database failure: unreachable is Unavailable, anything else is internal.
func dbErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if pg.IsUnavailable(err) {
		return usererr.Wrap(usererr.Unavailable, "DATABASE_UNAVAILABLE", "database unavailable", fmt.Errorf("%s: %w", op, err))
	}
	return fmt.Errorf("%s: %w", op, err)
}

// get loads the attachment with id; forUpdate locks the row (in a transaction).
func get(ctx context.Context, q pg.Querier, id string, forUpdate bool) (*domain.Attachment, error) {
	sql := `SELECT ` + columns + ` FROM attachments WHERE id = $1::uuid`
	if forUpdate {
		sql += ` FOR UPDATE`
	}
	a, err := scan(q.QueryRow(ctx, sql, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, domain.ErrAttachmentNotFound
	}
	if err != nil {
		return nil, dbErr("get attachment", err)
	}
	return a, nil
}

// Attachment returns the attachment with id, or ErrAttachmentNotFound.
func (s *Store) Attachment(ctx context.Context, id string) (*domain.Attachment, error) {
	return get(ctx, s.pool, id, false)
}

// AttachmentByRequest returns the uploader's attachment made with client request id
// requestID, or nil when there is none.
func (s *Store) AttachmentByRequest(ctx context.Context, uploader, requestID string) (*domain.Attachment, error) {
	a, err := scan(s.pool.QueryRow(ctx, `SELECT `+columns+` FROM attachments
		WHERE uploader_subject = $1 AND client_request_id = $2`, uploader, requestID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, dbErr("find client request", err)
	}
	return a, nil
}

// InsertUploading adds a new attachment row (state Uploading) unless the bytes its uploader
// holds (uploads in progress at their declared size, pending and clean files) plus its declared
// size would exceed quota (quota <= 0: no quota). Concurrent uploads of one uploader are
// serialised by a lock on the uploader, so they cannot together overrun the quota.
//
// It is one round trip: the lock and the insert go as one batch, which runs in one implicit
// transaction (the lock is held until it commits), and the insert, a statement after the lock,
// sees every upload committed before the lock was granted.
func (s *Store) InsertUploading(ctx context.Context, a *domain.Attachment, quota int64) error {
	b := &pgx.Batch{}
	queueInsert(b, a, quota)
	br := s.pool.SendBatch(ctx, b)
	_, err := br.Exec()
	if err == nil {
		err = br.QueryRow().Scan(&a.CreateTime)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return insertErr(err)
}

// queueInsert queues the uploader's quota lock and the insert of a (returning its create_time)
// on b. A batch runs in one implicit transaction, so the lock is held until it commits.
func queueInsert(b *pgx.Batch, a *domain.Attachment, quota int64) {
	b.Queue(`SELECT pg_advisory_xact_lock(hashtextextended('attachment-quota:' || $1, 0))`, a.UploaderSubject)
	b.Queue(`INSERT INTO attachments (id, uploader_subject, client_request_id,
		aad_thread_id, thread_id, patient_id, pool_id, state, object_name, wrapped_dek,
		declared_media_type, size_bytes, object_size, file_name_sealed)
		SELECT $1::uuid, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::bigint, $13, $15
		WHERE $14::bigint <= 0 OR (SELECT coalesce(sum(size_bytes), 0) FROM attachments
			WHERE uploader_subject = $2 AND state IN ('uploading', 'pending', 'clean')) + $12::bigint <= $14::bigint
		RETURNING create_time`,
		a.ID, a.UploaderSubject, nullString(a.ClientRequestID), a.AADThreadID, a.ThreadID, a.PatientID, a.PoolID, string(a.State),
		a.ObjectName, a.WrappedDEK, a.DeclaredMediaType, a.SizeBytes, a.ObjectSize, quota, a.FileNameSealed)
}

// insertErr maps the insert's failure: no row returned means the quota said no.
func insertErr(err error) error {
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return usererr.New(usererr.ResourceExhausted, "QUOTA_EXCEEDED", "upload would exceed the storage quota")
	case pg.IsUniqueViolation(err, "attachments_client_request"):
		return usererr.New(usererr.AlreadyExists, "CLIENT_REQUEST_ID_REUSED", "client_request_id was already used")
	}
	return dbErr("insert attachment", err)
}

// CompleteUpload records a finished upload (content facts, the sealed name and the scan
// outcome) and, in the same statement, its rows (audit record, scan event): one round trip, in
// one implicit transaction, so the rows exist exactly when the attachment was updated.
func (s *Store) CompleteUpload(ctx context.Context, a *domain.Attachment, rows []outbox.Event) error {
	ob, err := outbox.NewRows(ctx, rows...)
	if err != nil {
		return domain.NotRecorded(err)
	}
	var n int
	err = s.pool.QueryRow(ctx, complete.SQL(), complete.Args(ob,
		a.ID, string(a.State), a.MediaType, a.SizeBytes, a.ObjectSize, a.SHA256, a.FileNameSealed,
		a.SignatureName, nullTime(a.ScanTime), a.ScanAttempts, nullString(a.WrappedDEK), nullTime(a.CreateTime))...).Scan(&n)
	if err != nil {
		return dbErr("complete attachment", err)
	}
	if n == 0 {
		return domain.ErrAttachmentNotFound
	}
	return nil
}

// complete updates the row and writes the outbox rows only if it did, in one statement.
var complete = outbox.NewStatement(`WITH c AS (
	UPDATE attachments SET state = $2, media_type = $3, size_bytes = $4,
		object_size = $5, sha256 = $6, file_name_sealed = $7, signature_name = $8, scan_time = $9,
		scan_attempts = $10, wrapped_dek = $11, create_time = coalesce($12, create_time)
	WHERE id = $1::uuid
	RETURNING 1
)`, `EXISTS (SELECT 1 FROM c)`, `SELECT count(*) FROM c`)

// UpdateAttachment loads the row under lock, lets change decide, and writes back what it
// changed with its rows, in one transaction.
func (s *Store) UpdateAttachment(ctx context.Context, id string, change func(*domain.Attachment) (domain.Effects, error)) error {
	return pg.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		a, err := get(ctx, tx, id, true)
		if err != nil {
			return err
		}
		eff, err := change(a)
		if err != nil {
			return err
		}
		return commitEffects(ctx, tx, a, eff)
	})
}

// BindAttachment is UpdateAttachment with the count of attachments bound to messageID, read
// in the same transaction.
func (s *Store) BindAttachment(ctx context.Context, id, messageID string, change func(*domain.Attachment, int) (domain.Effects, error)) error {
	return pg.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		a, err := get(ctx, tx, id, true)
		if err != nil {
			return err
		}
		var bound int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM attachments WHERE message_id = $1`, messageID).Scan(&bound); err != nil {
			return dbErr("count message attachments", err)
		}
		eff, err := change(a, bound)
		if err != nil {
			return err
		}
		return commitEffects(ctx, tx, a, eff)
	})
}

// commitEffects writes a back when eff says it changed, then eff's rows, in tx.
func commitEffects(ctx context.Context, tx pgx.Tx, a *domain.Attachment, eff domain.Effects) error {
	if eff.Changed {
		// The row is locked and a was loaded from it, so writing every mutable column back
		// changes exactly what the use case changed.
		_, err := tx.Exec(ctx, `UPDATE attachments SET state = $2, thread_id = $3, message_id = $4,
			patient_id = $5, pool_id = $6, wrapped_dek = $7, file_name_sealed = $8, sha256 = $9,
			signature_name = $10, scan_attempts = $11, scan_time = $12, bind_time = $13, delete_time = $14
			WHERE id = $1::uuid`,
			a.ID, string(a.State), a.ThreadID, a.MessageID, a.PatientID, a.PoolID, nullString(a.WrappedDEK),
			a.FileNameSealed, a.SHA256, a.SignatureName, a.ScanAttempts, nullTime(a.ScanTime),
			nullTime(a.BindTime), nullTime(a.DeleteTime))
		if err != nil {
			return dbErr("update attachment", err)
		}
	}
	if err := outbox.Add(ctx, tx, eff.Rows...); err != nil {
		return domain.NotRecorded(err)
	}
	return nil
}

// DeleteAttachment removes the row and writes rows, in one transaction.
func (s *Store) DeleteAttachment(ctx context.Context, id string, rows []outbox.Event) error {
	return pg.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM attachments WHERE id = $1::uuid`, id); err != nil {
			return dbErr("delete attachment", err)
		}
		if err := outbox.Add(ctx, tx, rows...); err != nil {
			return domain.NotRecorded(err)
		}
		return nil
	})
}

// WriteAudit writes rows by themselves: one INSERT in its own implicit transaction, committed
// when it returns, as a transaction around it would be, without BEGIN's and COMMIT's round
// trips.
func (s *Store) WriteAudit(ctx context.Context, rows []outbox.Event) error {
	ob, err := outbox.NewRows(ctx, rows...)
	if err != nil {
		return domain.NotRecorded(err)
	}
	if err := ob.Insert(ctx, s.pool); err != nil {
		return domain.NotRecorded(err)
	}
	return nil
}

// SetScanAttempts records a failed scan attempt of a pending attachment.
func (s *Store) SetScanAttempts(ctx context.Context, id string, attempts int) error {
	_, err := s.pool.Exec(ctx, `UPDATE attachments SET scan_attempts = $2 WHERE id = $1::uuid`, id, attempts)
	return dbErr("set scan attempts", err)
}

// AttachmentsOfThreads returns every row of the given threads (bound or uploaded for them),
// deleted tombstones included.
func (s *Store) AttachmentsOfThreads(ctx context.Context, threadIDs []string) ([]*domain.Attachment, error) {
	return s.list(ctx, `SELECT `+columns+` FROM attachments
		WHERE thread_id = ANY($1) OR (aad_thread_id <> '' AND aad_thread_id = ANY($1)) ORDER BY id`, threadIDs)
}

// PendingAttachments returns up to limit pending attachments, oldest first.
func (s *Store) PendingAttachments(ctx context.Context, limit int) ([]*domain.Attachment, error) {
	return s.list(ctx, `SELECT `+columns+` FROM attachments WHERE state = 'pending'
		ORDER BY create_time LIMIT $1`, limit)
}

// StaleAttachments returns up to limit rows to clean up: drafts never bound created before
// draftCutoff, and streamed uploads stuck in Uploading since before uploadCutoff (their process
// died); an upload session's row waits for the session's own expiry (StaleSessions).
func (s *Store) StaleAttachments(ctx context.Context, draftCutoff, uploadCutoff time.Time, limit int) ([]*domain.Attachment, error) {
	return s.list(ctx, `SELECT `+columns+` FROM attachments
		WHERE (message_id = '' AND state IN ('pending', 'clean', 'infected', 'failed', 'deleted') AND create_time < $1)
		   OR (state = 'uploading' AND create_time < $2
		       AND NOT EXISTS (SELECT 1 FROM upload_sessions u WHERE u.attachment_id = attachments.id))
		ORDER BY create_time LIMIT $3`, draftCutoff, uploadCutoff, limit)
}

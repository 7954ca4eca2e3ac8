// Package pgstore keeps attachment metadata in the service's Postgres schema with pgx: one row
// per attachment holding the wrapped per-object key, the sealed file name, sizes, the
// plaintext SHA-256 and the scan state. The pool's search_path is the service's schema, so
// statements are unqualified.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/securemsg/securemsg/services/attachment/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// Querier is what both a pool and a transaction offer.
type Querier = pg.Querier

// Table and columns the key-rewrap job walks: securemsgctl keys rewrap --store
// pg:attachment.attachments.id.wrapped_dek (rows with a NULL key, crypto-shredded, are skipped).
const (
	Table         = "attachments"
	IDColumn      = "id"
	WrappedColumn = "wrapped_dek"
)

const columns = `id::text, uploader_subject, coalesce(client_request_id, ''), aad_thread_id, thread_id,
	message_id, patient_id, pool_id, state, object_name, coalesce(wrapped_dek, ''), file_name_sealed,
	declared_media_type, media_type, size_bytes, object_size, sha256, signature_name, scan_attempts,
	scan_time, create_time, bind_time`

func scan(row pgx.Row) (*domain.Attachment, error) {
	var a domain.Attachment
	var state string
	var scanTime, bindTime *time.Time
	err := row.Scan(&a.ID, &a.UploaderSubject, &a.ClientRequestID, &a.AADThreadID, &a.ThreadID,
		&a.MessageID, &a.PatientID, &a.PoolID, &state, &a.ObjectName, &a.WrappedDEK, &a.FileNameSealed,
		&a.DeclaredMediaType, &a.MediaType, &a.SizeBytes, &a.ObjectSize, &a.SHA256, &a.SignatureName,
		&a.ScanAttempts, &scanTime, &a.CreateTime, &bindTime)
	if err != nil {
		return nil, err
	}
	a.State = domain.State(state)
	if scanTime != nil {
		a.ScanTime = *scanTime
	}
	if bindTime != nil {
		a.BindTime = *bindTime
	}
	return &a, nil
}

func list(ctx context.Context, q Querier, sql string, args ...any) ([]*domain.Attachment, error) {
	rows, err := q.Query(ctx, sql, args...)
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

// dbErr maps a database failure: unreachable is ErrUnavailable, anything else is internal.
func dbErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if pg.IsUnavailable(err) {
		return usererr.Wrap(usererr.Unavailable, "DATABASE_UNAVAILABLE", "database unavailable", fmt.Errorf("%s: %w", op, err))
	}
	return fmt.Errorf("%s: %w", op, err)
}

// Get returns the attachment with id, or ErrNotFound. forUpdate locks the row (in a tx).
func Get(ctx context.Context, q Querier, id string, forUpdate bool) (*domain.Attachment, error) {
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

// FindByClientRequest returns the uploader's attachment made with client request id crid, or
// nil when there is none.
func FindByClientRequest(ctx context.Context, q Querier, subject, crid string) (*domain.Attachment, error) {
	a, err := scan(q.QueryRow(ctx, `SELECT `+columns+` FROM attachments
		WHERE uploader_subject = $1 AND client_request_id = $2`, subject, crid))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, dbErr("find client request", err)
	}
	return a, nil
}

// InsertWithinQuota adds a new attachment row (state Uploading) unless the bytes its uploader
// holds (uploads in progress at their declared size, pending and clean files) plus its declared
// size would exceed quota (quota <= 0: no quota), which is ErrResourceExhausted. Concurrent uploads of one uploader are serialised by a lock on the
// uploader, so they cannot together overrun the quota.
//
// It is one round trip: the lock and the insert go as one batch, which runs in one implicit
// transaction (the lock is held until it commits), and the insert, a statement after the lock,
// sees every upload committed before the lock was granted.
func InsertWithinQuota(ctx context.Context, q Querier, a *domain.Attachment, quota int64) error {
	var crid *string
	if a.ClientRequestID != "" {
		crid = &a.ClientRequestID
	}
	b := &pgx.Batch{}
	b.Queue(`SELECT pg_advisory_xact_lock(hashtextextended('attachment-quota:' || $1, 0))`, a.UploaderSubject)
	b.Queue(`INSERT INTO attachments (id, uploader_subject, client_request_id,
		aad_thread_id, thread_id, patient_id, pool_id, state, object_name, wrapped_dek,
		declared_media_type, size_bytes, object_size)
		SELECT $1::uuid, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::bigint, $13
		WHERE $14::bigint <= 0 OR (SELECT coalesce(sum(size_bytes), 0) FROM attachments
			WHERE uploader_subject = $2 AND state IN ('uploading', 'pending', 'clean')) + $12::bigint <= $14::bigint
		RETURNING create_time`,
		a.ID, a.UploaderSubject, crid, a.AADThreadID, a.ThreadID, a.PatientID, a.PoolID, string(a.State),
		a.ObjectName, a.WrappedDEK, a.DeclaredMediaType, a.SizeBytes, a.ObjectSize, quota)
	br := q.SendBatch(ctx, b)
	_, err := br.Exec()
	if err == nil {
		err = br.QueryRow().Scan(&a.CreateTime)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return usererr.New(usererr.ResourceExhausted, "QUOTA_EXCEEDED", "upload would exceed the storage quota")
	case pg.IsUniqueViolation(err, "attachments_client_request"):
		return usererr.New(usererr.AlreadyExists, "CLIENT_REQUEST_ID_REUSED", "client_request_id was already used")
	}
	return dbErr("insert attachment", err)
}

// Complete records a finished upload (content facts, the sealed name and the scan outcome)
// and, in the same statement, its events (audit record, scan event): one round trip, in one
// implicit transaction, so the events exist exactly when the row was updated. A row that is
// gone (removed by the clean-up meanwhile) is ErrNotFound, and no event is written.
func Complete(ctx context.Context, q Querier, a *domain.Attachment, events outbox.Rows) error {
	var scanTime *time.Time
	if !a.ScanTime.IsZero() {
		scanTime = &a.ScanTime
	}
	var wrapped *string
	if a.WrappedDEK != "" {
		wrapped = &a.WrappedDEK
	}
	var n int
	err := q.QueryRow(ctx, completeSQL,
		append([]any{a.ID, string(a.State), a.MediaType, a.SizeBytes, a.ObjectSize, a.SHA256, a.FileNameSealed,
			a.SignatureName, scanTime, a.ScanAttempts, wrapped}, events.Args()...)...).Scan(&n)
	if err != nil {
		return dbErr("complete attachment", err)
	}
	if n == 0 {
		return domain.ErrAttachmentNotFound
	}
	return nil
}

// completeSQL updates the row and writes the events only if it did, in one statement.
var completeSQL = `WITH c AS (
	UPDATE attachments SET state = $2, media_type = $3, size_bytes = $4,
		object_size = $5, sha256 = $6, file_name_sealed = $7, signature_name = $8, scan_time = $9,
		scan_attempts = $10, wrapped_dek = $11
	WHERE id = $1::uuid
	RETURNING 1
), o AS (` + outbox.InsertSQL(12, `EXISTS (SELECT 1 FROM c)`) + `)
SELECT count(*) FROM c`

// SetScan records a (re)scan's outcome. An infected or failed attachment loses its key: its
// object is deleted and it can never be served.
func SetScan(ctx context.Context, tx pgx.Tx, id string, state domain.State, signature string, at time.Time, attempts int) error {
	_, err := tx.Exec(ctx, `UPDATE attachments SET state = $2, signature_name = $3, scan_time = $4,
		scan_attempts = $5,
		wrapped_dek = CASE WHEN $2 IN ('infected', 'failed') THEN NULL ELSE wrapped_dek END,
		file_name_sealed = CASE WHEN $2 IN ('infected', 'failed') THEN NULL ELSE file_name_sealed END
		WHERE id = $1::uuid`, id, string(state), signature, at, attempts)
	return dbErr("set scan state", err)
}

// SetScanAttempts records a failed scan attempt of a pending attachment.
func SetScanAttempts(ctx context.Context, q Querier, id string, attempts int) error {
	_, err := q.Exec(ctx, `UPDATE attachments SET scan_attempts = $2 WHERE id = $1::uuid`, id, attempts)
	return dbErr("set scan attempts", err)
}

// Bind binds the attachment to a message.
func Bind(ctx context.Context, tx pgx.Tx, id, threadID, messageID, patientID, poolID string, at time.Time) error {
	_, err := tx.Exec(ctx, `UPDATE attachments SET thread_id = $2, message_id = $3,
		patient_id = CASE WHEN $4 = '' THEN patient_id ELSE $4 END,
		pool_id = CASE WHEN $5 = '' THEN pool_id ELSE $5 END, bind_time = $6
		WHERE id = $1::uuid`, id, threadID, messageID, patientID, poolID, at)
	return dbErr("bind attachment", err)
}

// CountForMessage counts the attachments bound to a message.
func CountForMessage(ctx context.Context, q Querier, messageID string) (int, error) {
	var n int
	err := q.QueryRow(ctx, `SELECT count(*) FROM attachments WHERE message_id = $1`, messageID).Scan(&n)
	return n, dbErr("count message attachments", err)
}

// MarkDeleted turns the row into a tombstone: no key, no name; the object is deleted by the
// caller.
func MarkDeleted(ctx context.Context, tx pgx.Tx, id string, at time.Time) error {
	_, err := tx.Exec(ctx, `UPDATE attachments SET state = 'deleted', wrapped_dek = NULL,
		file_name_sealed = NULL, sha256 = NULL, delete_time = $2 WHERE id = $1::uuid`, id, at)
	return dbErr("mark attachment deleted", err)
}

// Delete removes the row.
func Delete(ctx context.Context, tx pgx.Tx, id string) error {
	_, err := tx.Exec(ctx, `DELETE FROM attachments WHERE id = $1::uuid`, id)
	return dbErr("delete attachment", err)
}

// ListByThreads returns every row of the given threads (bound or uploaded for them), deleted
// tombstones included.
func ListByThreads(ctx context.Context, q Querier, threadIDs []string) ([]*domain.Attachment, error) {
	return list(ctx, q, `SELECT `+columns+` FROM attachments
		WHERE thread_id = ANY($1) OR (aad_thread_id <> '' AND aad_thread_id = ANY($1)) ORDER BY id`, threadIDs)
}

// ListPending returns up to limit pending attachments, oldest first.
func ListPending(ctx context.Context, q Querier, limit int) ([]*domain.Attachment, error) {
	return list(ctx, q, `SELECT `+columns+` FROM attachments WHERE state = 'pending'
		ORDER BY create_time LIMIT $1`, limit)
}

// ListStale returns up to limit rows to clean up: drafts never bound created before
// draftCutoff, and uploads stuck in Uploading since before uploadCutoff (their process died).
func ListStale(ctx context.Context, q Querier, draftCutoff, uploadCutoff time.Time, limit int) ([]*domain.Attachment, error) {
	return list(ctx, q, `SELECT `+columns+` FROM attachments
		WHERE (message_id = '' AND state IN ('pending', 'clean', 'infected', 'failed', 'deleted') AND create_time < $1)
		   OR (state = 'uploading' AND create_time < $2)
		ORDER BY create_time LIMIT $3`, draftCutoff, uploadCutoff, limit)
}

package pgstore

import (
	"context"
	"hash/fnv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// lockKey is the advisory lock key of a lock name.
func lockKey(name string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(name)) // a hash.Hash never returns an error
	return int64(h.Sum64())      //nolint:gosec // a hash reinterpreted as a signed key: wrapping is the intent
}

// WithPurgeLock implements domain.RetentionRepository with a session advisory lock on a
// connection of its own, which the reads of purge also use.
func (s *Store) WithPurgeLock(ctx context.Context, name string, purge func(context.Context, domain.ExpiredThreads) error) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return dbError(err)
	}
	defer conn.Release()
	key := lockKey(name)
	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&locked); err != nil {
		return dbError(err)
	}
	if !locked {
		return domain.ErrPurgeRunning
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, key)
	}()
	return purge(ctx, expiredOn{conn})
}

// expiredOn reads expired threads on one connection.
type expiredOn struct{ conn *pgxpool.Conn }

func (e expiredOn) CountHeldExpired(ctx context.Context, category commonv1.ThreadCategory, cutoff time.Time) (int64, error) {
	var n int64
	err := e.conn.QueryRow(ctx, `SELECT count(*) FROM threads t WHERE t.category = $1 AND t.last_message_at < $2
		AND (t.legal_hold OR EXISTS (SELECT 1 FROM patient_holds h WHERE h.patient_id = t.patient_id))`,
		smallint(category), cutoff).Scan(&n)
	return n, dbError(err)
}

func (e expiredOn) ExpiredThreads(ctx context.Context, category commonv1.ThreadCategory, cutoff time.Time, limit int) ([]domain.PurgeCandidate, error) {
	rows, err := e.conn.Query(ctx, `SELECT t.id::text, t.patient_id, t.pool_id, t.sensitivity, coalesce(t.wrapped_dek, ''), t.message_count,
		(SELECT coalesce(sum(cardinality(m.attachment_ids)), 0) FROM messages m WHERE m.thread_id = t.id)
		FROM threads t WHERE t.category = $1 AND t.last_message_at < $2 AND NOT t.legal_hold
		AND NOT EXISTS (SELECT 1 FROM patient_holds h WHERE h.patient_id = t.patient_id)
		ORDER BY t.last_message_at, t.id LIMIT $3`, smallint(category), cutoff, limit)
	if err != nil {
		return nil, dbError(err)
	}
	defer rows.Close()
	var out []domain.PurgeCandidate
	for rows.Next() {
		c := domain.PurgeCandidate{Category: category}
		var sens int16
		if err := rows.Scan(&c.ID, &c.PatientID, &c.PoolID, &sens, &c.WrappedDEK, &c.Messages, &c.Attachments); err != nil {
			return nil, dbError(err)
		}
		c.Sensitivity = commonv1.Sensitivity(sens)
		out = append(out, c)
	}
	return out, dbError(rows.Err())
}

// DeleteExpiredThread implements domain.RetentionRepository.
func (s *Store) DeleteExpiredThread(ctx context.Context, id string, cutoff time.Time, rows []outbox.Event) (deleted bool, err error) {
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		deleted = false
		tag, err := tx.Exec(ctx, `UPDATE threads t SET wrapped_dek = NULL WHERE t.id = $1 AND t.last_message_at < $2 AND NOT t.legal_hold
			AND NOT EXISTS (SELECT 1 FROM patient_holds h WHERE h.patient_id = t.patient_id)`, id, cutoff)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM threads WHERE id = $1`, id); err != nil {
			return err
		}
		deleted = true
		return addOutbox(ctx, tx, rows)
	})
	if err != nil {
		return false, err
	}
	return deleted, nil
}

// nullTime is t as a nullable timestamptz: the zero time is NULL.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// LegalHolds implements domain.RetentionRepository: patient holds by patient id, then held
// threads by id, in one keyset query. Keys compare bytewise (COLLATE "C"), whatever the
// database's collation, so that the order is the same everywhere.
func (s *Store) LegalHolds(ctx context.Context, after domain.LegalHoldCursor, limit int) ([]domain.LegalHold, error) {
	rows, err := s.pool.Query(ctx, `SELECT kind, key, case_reference, created_by, created_at FROM (
			SELECT 0 AS kind, patient_id COLLATE "C" AS key, case_reference, created_by_subject AS created_by, created_at FROM patient_holds
			UNION ALL
			SELECT 1, id::text COLLATE "C", legal_hold_case, legal_hold_by, legal_hold_at FROM threads WHERE legal_hold
		) h WHERE (kind, key) > ($1, $2::text COLLATE "C") ORDER BY kind, key LIMIT $3`, holdKind(after.Thread), after.Key, limit)
	if err != nil {
		return nil, dbError(err)
	}
	defer rows.Close()
	var out []domain.LegalHold
	for rows.Next() {
		var (
			kind int
			key  string
			at   *time.Time
			h    domain.LegalHold
		)
		if err := rows.Scan(&kind, &key, &h.CaseReference, &h.CreatedBySubject, &at); err != nil {
			return nil, dbError(err)
		}
		if kind == 1 {
			h.ThreadID = key
		} else {
			h.PatientID = key
		}
		if at != nil {
			h.CreatedAt = *at
		}
		out = append(out, h)
	}
	return out, dbError(rows.Err())
}

func holdKind(thread bool) int {
	if thread {
		return 1
	}
	return 0
}

// CountLegalHolds implements domain.RetentionRepository.
func (s *Store) CountLegalHolds(ctx context.Context) (domain.LegalHoldCounts, error) {
	var c domain.LegalHoldCounts
	err := s.pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM threads t WHERE t.legal_hold OR EXISTS (SELECT 1 FROM patient_holds h WHERE h.patient_id = t.patient_id)),
		(SELECT count(*) FROM patient_holds),
		(SELECT count(*) FROM threads WHERE legal_hold)`).Scan(&c.ThreadsHeld, &c.PatientHolds, &c.ThreadHolds)
	return c, dbError(err)
}

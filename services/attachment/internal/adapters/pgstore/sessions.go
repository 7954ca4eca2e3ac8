package pgstore

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/securemsg/securemsg/services/attachment/internal/domain"
)

var _ domain.UploadSessionRepository = (*Store)(nil)

const sessionColumns = `attachment_id::text, uploader_subject, state, next_offset, stage_prefix, create_time, update_time`

func scanSession(row pgx.Row) (*domain.UploadSession, error) {
	var u domain.UploadSession
	var state string
	if err := row.Scan(&u.ID, &u.UploaderSubject, &state, &u.NextOffset, &u.StagePrefix, &u.CreateTime, &u.UpdateTime); err != nil {
		return nil, err
	}
	u.State = domain.SessionState(state)
	return &u, nil
}

// CreateSession inserts the Uploading row (within the quota, as InsertUploading) and its open
// session in one batch: one round trip, one implicit transaction. The session's insert is
// conditional on the row's, so a refused row leaves no session.
func (s *Store) CreateSession(ctx context.Context, a *domain.Attachment, u *domain.UploadSession, quota int64) error {
	b := &pgx.Batch{}
	queueInsert(b, a, quota)
	b.Queue(`INSERT INTO upload_sessions (attachment_id, uploader_subject, state, stage_prefix)
		SELECT $1::uuid, $2, 'open', $3 WHERE EXISTS (SELECT 1 FROM attachments WHERE id = $1::uuid)
		RETURNING create_time, update_time`, u.ID, u.UploaderSubject, u.StagePrefix)
	br := s.pool.SendBatch(ctx, b)
	_, err := br.Exec()
	if err == nil {
		err = br.QueryRow().Scan(&a.CreateTime)
	}
	if err == nil {
		err = br.QueryRow().Scan(&u.CreateTime, &u.UpdateTime)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return insertErr(err)
	}
	u.State, u.NextOffset = domain.SessionOpen, 0
	return nil
}

// Session loads session id.
func (s *Store) Session(ctx context.Context, id string) (*domain.UploadSession, error) {
	u, err := scanSession(s.pool.QueryRow(ctx, `SELECT `+sessionColumns+` FROM upload_sessions WHERE attachment_id = $1::uuid`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, domain.ErrUploadNotFound
	}
	if err != nil {
		return nil, dbErr("get upload session", err)
	}
	return u, nil
}

// ChunkAt returns the chunk of session id starting at offset, nil when none does.
func (s *Store) ChunkAt(ctx context.Context, id string, offset int64) (*domain.Chunk, error) {
	c := domain.Chunk{Offset: offset}
	err := s.pool.QueryRow(ctx, `SELECT length, sha256, object_name FROM upload_chunks
		WHERE attachment_id = $1::uuid AND byte_offset = $2`, id, offset).Scan(&c.Length, &c.SHA256, &c.ObjectName)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, dbErr("get upload chunk", err)
	}
	return &c, nil
}

// Chunks returns session id's chunks in offset order.
func (s *Store) Chunks(ctx context.Context, id string) ([]domain.Chunk, error) {
	rows, err := s.pool.Query(ctx, `SELECT byte_offset, length, sha256, object_name FROM upload_chunks
		WHERE attachment_id = $1::uuid ORDER BY byte_offset`, id)
	if err != nil {
		return nil, dbErr("list upload chunks", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (domain.Chunk, error) {
		var c domain.Chunk
		err := r.Scan(&c.Offset, &c.Length, &c.SHA256, &c.ObjectName)
		return c, err
	})
	if err != nil {
		return nil, dbErr("list upload chunks", err)
	}
	return out, nil
}

// AppendChunk advances the session and records the chunk in one statement: the update matches
// only an open session whose next offset is the chunk's, and the chunk's insert runs only if
// it did, so two appends at one offset cannot both succeed.
func (s *Store) AppendChunk(ctx context.Context, id string, c domain.Chunk, at time.Time) (bool, error) {
	var n int
	err := s.pool.QueryRow(ctx, `WITH u AS (
			UPDATE upload_sessions SET next_offset = next_offset + $3, update_time = $6
			WHERE attachment_id = $1::uuid AND state = 'open' AND next_offset = $2
			RETURNING attachment_id
		), c AS (
			INSERT INTO upload_chunks (attachment_id, byte_offset, length, sha256, object_name)
			SELECT attachment_id, $2, $3, $4, $5 FROM u
			RETURNING 1
		)
		SELECT count(*) FROM c`, id, c.Offset, c.Length, c.SHA256, c.ObjectName, at).Scan(&n)
	if err != nil {
		return false, dbErr("append upload chunk", err)
	}
	return n == 1, nil
}

// ClaimFinish moves the session to finishing when it is open or its finish claim is stale.
func (s *Store) ClaimFinish(ctx context.Context, id string, at, staleBefore time.Time) (bool, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE upload_sessions SET state = 'finishing', update_time = $2
		WHERE attachment_id = $1::uuid AND (state = 'open' OR (state = 'finishing' AND update_time < $3))`, id, at, staleBefore)
	if err != nil {
		return false, dbErr("claim upload finish", err)
	}
	return tag.RowsAffected() == 1, nil
}

// ReleaseFinish moves a finishing session back to open.
func (s *Store) ReleaseFinish(ctx context.Context, id string) error {
	_, err := s.pool.Exec(ctx, `UPDATE upload_sessions SET state = 'open' WHERE attachment_id = $1::uuid AND state = 'finishing'`, id)
	return dbErr("release upload finish", err)
}

// CloseSession closes the session, when idleBefore is set only if it was idle since then.
func (s *Store) CloseSession(ctx context.Context, id string, idleBefore time.Time) (bool, error) {
	var closed bool
	err := s.pool.QueryRow(ctx, `WITH c AS (
			UPDATE upload_sessions SET state = 'closed'
			WHERE attachment_id = $1::uuid AND ($2::timestamptz IS NULL OR state = 'closed' OR update_time < $2)
			RETURNING 1
		)
		SELECT EXISTS (SELECT 1 FROM c) OR NOT EXISTS (SELECT 1 FROM upload_sessions WHERE attachment_id = $1::uuid)`,
		id, nullTime(idleBefore)).Scan(&closed)
	if err != nil {
		return false, dbErr("close upload session", err)
	}
	return closed, nil
}

// DeleteSession removes the session; its chunks' rows go with it (ON DELETE CASCADE).
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM upload_sessions WHERE attachment_id = $1::uuid`, id)
	return dbErr("delete upload session", err)
}

// StaleSessions returns closed sessions and those idle since before idleCutoff, oldest first.
func (s *Store) StaleSessions(ctx context.Context, idleCutoff time.Time, limit int) ([]*domain.UploadSession, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+sessionColumns+` FROM upload_sessions
		WHERE state = 'closed' OR update_time < $1 ORDER BY update_time, attachment_id LIMIT $2`, idleCutoff, limit)
	if err != nil {
		return nil, dbErr("list stale upload sessions", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*domain.UploadSession, error) { return scanSession(r) })
	if err != nil {
		return nil, dbErr("list stale upload sessions", err)
	}
	return out, nil
}

package pgstore

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

const poolSettingsSQL = `SELECT auto_reply_enabled, auto_reply_text, turnaround_seconds, emergency_disclaimer,
	updated_at, updated_by_subject, version FROM pool_settings WHERE pool_id = $1`

func poolSettings(ctx context.Context, db pg.Querier, poolID string) (domain.PoolSettings, error) {
	return scanPoolSettings(db.QueryRow(ctx, poolSettingsSQL, poolID), poolID)
}

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

// PoolSettings implements domain.PoolSettingsReader.
func (s *Store) PoolSettings(ctx context.Context, poolID string) (domain.PoolSettings, error) {
	st, err := poolSettings(ctx, s.pool, poolID)
	return st, dbError(err)
}

// UpdatePoolSettings implements domain.PoolSettingsRepository: the version check makes it
// optimistic, so the read takes no lock.
func (s *Store) UpdatePoolSettings(ctx context.Context, poolID string, change func(domain.PoolSettings) (domain.PoolSettings, []outbox.Event, error)) (domain.PoolSettings, error) {
	var out domain.PoolSettings
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		cur, err := poolSettings(ctx, tx, poolID)
		if err != nil {
			return err
		}
		next, rows, err := change(cur)
		if err != nil {
			return err
		}
		next.PoolID = poolID
		version, ok, err := savePoolSettings(ctx, tx, next, cur.Version)
		if err != nil {
			return err
		}
		if !ok {
			return domain.ErrSettingsChanged
		}
		next.Version = version
		out = next
		return addOutbox(ctx, tx, rows)
	})
	if err != nil {
		return domain.PoolSettings{}, err
	}
	return out, nil
}

// savePoolSettings stores st if the stored version still equals expectVersion (0: never
// stored) and returns the new version; ok is false when another writer changed them first.
func savePoolSettings(ctx context.Context, tx pgx.Tx, st domain.PoolSettings, expectVersion int64) (int64, bool, error) {
	var turnaround *int64
	if st.Turnaround > 0 {
		v := int64(st.Turnaround / time.Second)
		turnaround = &v
	}
	var version int64
	var err error
	if expectVersion == 0 {
		err = tx.QueryRow(ctx, `INSERT INTO pool_settings (pool_id, auto_reply_enabled, auto_reply_text, turnaround_seconds,
			emergency_disclaimer, updated_at, updated_by_subject, version) VALUES ($1,$2,$3,$4,$5,$6,$7,1)
			ON CONFLICT (pool_id) DO NOTHING RETURNING version`,
			st.PoolID, st.AutoReplyEnabled, st.AutoReplyText, turnaround, st.EmergencyDisclaimer, st.UpdatedAt, st.UpdatedBySubject).Scan(&version)
	} else {
		err = tx.QueryRow(ctx, `UPDATE pool_settings SET auto_reply_enabled = $2, auto_reply_text = $3, turnaround_seconds = $4,
			emergency_disclaimer = $5, updated_at = $6, updated_by_subject = $7, version = version + 1
			WHERE pool_id = $1 AND version = $8 RETURNING version`,
			st.PoolID, st.AutoReplyEnabled, st.AutoReplyText, turnaround, st.EmergencyDisclaimer, st.UpdatedAt, st.UpdatedBySubject, expectVersion).Scan(&version)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	return version, err == nil, err
}

package pgstore

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

const grantCols = `id, proxy_subject, patient_id, scopes, expires_at, created_at, revoked_at, granted_by`

func scanGrant(row pgx.Row) (domain.ProxyGrant, error) {
	var g domain.ProxyGrant
	var revoked *time.Time
	err := row.Scan(&g.ID, &g.ProxySubject, &g.PatientID, &g.Scopes, &g.ExpiresAt, &g.CreatedAt, &revoked, &g.GrantedBy)
	if errors.Is(err, pgx.ErrNoRows) {
		return g, domain.ErrGrantNotFound
	}
	if revoked != nil {
		g.RevokedAt = *revoked
	}
	return g, err
}

// ProxyGrants implements domain.GrantRepository.
func (s *Store) ProxyGrants(ctx context.Context, q domain.GrantQuery) ([]domain.ProxyGrant, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+grantCols+` FROM proxy_grants
		WHERE ($1 = '' OR patient_id = $1) AND ($2 = '' OR proxy_subject = $2)
		ORDER BY created_at DESC, id DESC LIMIT $3`, q.PatientID, q.ProxySubject, q.Limit)
	if err != nil {
		return nil, dbError(err)
	}
	defer rows.Close()
	var out []domain.ProxyGrant
	for rows.Next() {
		g, err := scanGrant(rows)
		if err != nil {
			return nil, dbError(err)
		}
		out = append(out, g)
	}
	return out, dbError(rows.Err())
}

// CreateProxyGrant implements domain.GrantRepository.
func (s *Store) CreateProxyGrant(ctx context.Context, g domain.ProxyGrant, rows []outbox.Event) error {
	return s.inDirectoryTx(ctx, func(tx pgx.Tx, d *directoryChange) error {
		if _, err := tx.Exec(ctx, `INSERT INTO proxy_grants (id, proxy_subject, patient_id, scopes, expires_at, created_at, granted_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, g.ID, g.ProxySubject, g.PatientID, g.Scopes, g.ExpiresAt, g.CreatedAt, g.GrantedBy); err != nil {
			return err
		}
		d.publish(changes{grants: []string{g.ProxySubject}}, g.CreatedAt)
		d.outbox(rows)
		return nil
	})
}

// RevokeProxyGrant implements domain.GrantRepository.
func (s *Store) RevokeProxyGrant(ctx context.Context, id string, at time.Time, decide func(domain.ProxyGrant) ([]outbox.Event, error)) (domain.ProxyGrant, error) {
	var out domain.ProxyGrant
	err := s.inDirectoryTx(ctx, func(tx pgx.Tx, d *directoryChange) error {
		g, err := scanGrant(tx.QueryRow(ctx, `SELECT `+grantCols+` FROM proxy_grants WHERE id = $1 FOR UPDATE`, id))
		if err != nil {
			return err
		}
		rows, err := decide(g)
		if err != nil {
			return err
		}
		out = g
		if rows == nil {
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE proxy_grants SET revoked_at = $2 WHERE id = $1`, id, at); err != nil {
			return err
		}
		out.RevokedAt = at
		d.publish(changes{grants: []string{g.ProxySubject}}, at)
		d.outbox(rows)
		return nil
	})
	if err != nil {
		return domain.ProxyGrant{}, err
	}
	return out, nil
}

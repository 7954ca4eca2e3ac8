package pgstore

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

const appCols = `client_id, kind, display_name, allowed_scopes, pool_ids, active, updated_at`

func scanApp(row pgx.Row) (domain.ClientApp, error) {
	var a domain.ClientApp
	var kind int16
	err := row.Scan(&a.ClientID, &kind, &a.DisplayName, &a.AllowedScopes, &a.PoolIDs, &a.Active, &a.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return a, domain.ErrAppNotFound
	}
	a.Kind = directoryv1.ClientAppKind(kind)
	return a, err
}

// ClientApps implements domain.AppRepository.
func (s *Store) ClientApps(ctx context.Context, afterID string, limit int) ([]domain.ClientApp, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+appCols+` FROM client_apps WHERE client_id > $1 ORDER BY client_id LIMIT $2`, afterID, limit)
	if err != nil {
		return nil, dbError(err)
	}
	defer rows.Close()
	var out []domain.ClientApp
	for rows.Next() {
		a, err := scanApp(rows)
		if err != nil {
			return nil, dbError(err)
		}
		out = append(out, a)
	}
	return out, dbError(rows.Err())
}

// poolsExist fails with ErrPoolNotFound unless every pool exists.
func poolsExist(ctx context.Context, tx pgx.Tx, ids []string) error {
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM care_pools WHERE id = ANY($1)`, nonNil(ids)).Scan(&n); err != nil {
		return err
	}
	if n != len(unique(ids)) {
		return domain.ErrPoolNotFound
	}
	return nil
}

// RegisterClientApp implements domain.AppRepository.
func (s *Store) RegisterClientApp(ctx context.Context, a domain.ClientApp, rows []outbox.Event) (domain.ClientApp, error) {
	a.Active = true
	err := s.inDirectoryTx(ctx, func(tx pgx.Tx, d *directoryChange) error {
		if err := poolsExist(ctx, tx, a.PoolIDs); err != nil {
			return err
		}
		added, err := insertIfAbsent(ctx, tx, `INSERT INTO client_apps (`+appCols+`) VALUES ($1, $2, $3, $4, $5, true, $6) ON CONFLICT DO NOTHING`,
			a.ClientID, smallint(a.Kind), a.DisplayName, nonNil(a.AllowedScopes), nonNil(a.PoolIDs), a.UpdatedAt)
		if err != nil {
			return err
		}
		if !added {
			return domain.ErrAppExists
		}
		d.publish(changes{apps: []string{a.ClientID}}, a.UpdatedAt)
		d.outbox(rows)
		return nil
	})
	if err != nil {
		return domain.ClientApp{}, err
	}
	return a, nil
}

// UpdateClientApp implements domain.AppRepository.
func (s *Store) UpdateClientApp(ctx context.Context, clientID string, change func(domain.ClientApp) (domain.ClientApp, []outbox.Event, error)) (domain.ClientApp, error) {
	var out domain.ClientApp
	err := s.inDirectoryTx(ctx, func(tx pgx.Tx, d *directoryChange) error {
		cur, err := scanApp(tx.QueryRow(ctx, `SELECT `+appCols+` FROM client_apps WHERE client_id = $1 FOR UPDATE`, clientID))
		if err != nil {
			return err
		}
		next, rows, err := change(cur)
		if err != nil {
			return err
		}
		if err := poolsExist(ctx, tx, next.PoolIDs); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE client_apps SET display_name = $2, allowed_scopes = $3, pool_ids = $4, active = $5, updated_at = $6
			WHERE client_id = $1`, clientID, next.DisplayName, nonNil(next.AllowedScopes), nonNil(next.PoolIDs), next.Active, next.UpdatedAt); err != nil {
			return err
		}
		d.publish(changes{apps: []string{clientID}}, next.UpdatedAt)
		out = next
		d.outbox(rows)
		return nil
	})
	if err != nil {
		return domain.ClientApp{}, err
	}
	return out, nil
}

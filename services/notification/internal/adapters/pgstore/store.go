// Package pgstore keeps the notification service's state in Postgres (schema notification):
// preferences with sealed contact points, proxy notification grants, templates, deliveries with
// their attempt log, and reminders. It implements the repositories of package domain; each
// method is its own transaction, and rows a change must commit with (audit records) are added to
// the outbox in that transaction. Contact points are sealed and opened here, through the sealer,
// so no plaintext address ever reaches a row.
package pgstore

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/securemsg/securemsg/services/internal/platform/pg"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/notification/internal/adapters/sealer"
	"github.com/securemsg/securemsg/services/notification/internal/domain"
)

// Store is the Postgres adapter: a domain.PreferencesRepository, domain.DeliveryRepository and
// domain.TemplateRepository.
type Store struct {
	pool   *pgxpool.Pool
	sealer *sealer.Sealer
}

var (
	_ domain.PreferencesRepository = (*Store)(nil)
	_ domain.DeliveryRepository    = (*Store)(nil)
	_ domain.TemplateRepository    = (*Store)(nil)
)

// New returns a store over pool (search_path = the service schema) sealing with s.
func New(pool *pgxpool.Pool, s *sealer.Sealer) *Store { return &Store{pool: pool, sealer: s} }

// inTx runs fn in a transaction of its own.
func (s *Store) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pg.WithTx(ctx, s.pool, fn)
}

// queryer is what reads need: the pool, or a transaction.
type queryer interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// refuse replaces *err with domain.ErrDatabaseUnavailable when it means the database is down,
// so the caller is told so (and may retry); other errors, refusals among them, stay as they are.
// Every exported method defers it.
func refuse(err *error) {
	var ue *usererr.Error
	if *err != nil && !errors.As(*err, &ue) && pg.IsUnavailable(*err) {
		*err = domain.ErrDatabaseUnavailable(*err)
	}
}

func collectStrings(rows pgx.Rows, err error) ([]string, error) {
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

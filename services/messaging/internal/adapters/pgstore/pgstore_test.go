package pgstore_test

import (
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/securemsg/securemsg/services/internal/platform/migrate"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
	"github.com/securemsg/securemsg/services/internal/testkit"
	"github.com/securemsg/securemsg/services/messaging/internal/adapters/pgstore"
	"github.com/securemsg/securemsg/services/messaging/internal/adapters/repotest"
	"github.com/securemsg/securemsg/services/messaging/migrations"
)

// TestRepositories runs the repository contract against Postgres: each suite gets a schema of
// its own with the service's migrations applied, as the service runs them at start.
func TestRepositories(t *testing.T) {
	t.Parallel()
	repotest.Run(t, func(t *testing.T) repotest.Subject {
		admin := testkit.Postgres(t)
		schema := testkit.NewSchema(t, admin)
		pool, err := pg.NewPool(t.Context(), pg.Config{URL: testkit.LoadStack().PostgresURL, Schema: schema, MaxConns: 4})
		if err != nil {
			t.Fatalf("pg.NewPool() = %v", err)
		}
		t.Cleanup(pool.Close)
		if err := migrate.Up(t.Context(), pool, schema, migrations.FS, nil); err != nil {
			t.Fatalf("migrate.Up() = %v", err)
		}
		return repotest.Subject{Store: pgstore.New(pool), Outbox: func(t *testing.T) []string {
			rows, err := pool.Query(t.Context(), `SELECT id FROM outbox ORDER BY seq`)
			if err != nil {
				t.Fatalf("read outbox: %v", err)
			}
			ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatalf("read outbox: %v", err)
			}
			return ids
		}}
	})
}

package pgstore_test

import (
	"log/slog"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/securemsg/securemsg/services/attachment/internal/adapters/pgstore"
	"github.com/securemsg/securemsg/services/attachment/internal/adapters/repotest"
	"github.com/securemsg/securemsg/services/attachment/migrations"
	"github.com/securemsg/securemsg/services/internal/platform/migrate"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
	"github.com/securemsg/securemsg/services/internal/testkit"
)

// TestRepositoryContract runs the repository contract against Postgres: each subtest gets a
// schema of its own with the service's migrations (and the outbox's) applied.
func TestRepositoryContract(t *testing.T) {
	t.Parallel()
	admin := testkit.Postgres(t)
	repotest.Run(t, func(t *testing.T) repotest.Subject {
		schema := testkit.NewSchema(t, admin)
		pool, err := pg.NewPool(t.Context(), pg.Config{URL: testkit.LoadStack().PostgresURL, Schema: schema, MaxConns: 4})
		if err != nil {
			testkit.Unavailable(t, "postgres", err)
		}
		t.Cleanup(pool.Close)
		if err := migrate.Up(t.Context(), pool, schema, migrations.FS, slog.New(slog.DiscardHandler)); err != nil {
			t.Fatalf("migrate.Up(%s) = %v", schema, err)
		}
		store := pgstore.New(pool)
		return repotest.Subject{Repo: store, Audit: store, RowIDs: func(t *testing.T) []string {
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

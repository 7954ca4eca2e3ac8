package servicetest

import (
	"io/fs"
	"log/slog"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/securemsg/securemsg/services/internal/platform/migrate"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
	"github.com/securemsg/securemsg/services/internal/testkit"
)

// MigratedPool is a pool on a new schema of the stack's Postgres with a service's migrations
// (and the outbox's) applied, as the service applies them at start: what a repository contract
// test runs each case on. The schema is dropped when the test ends.
func MigratedPool(t testing.TB, migrations fs.FS) *pgxpool.Pool {
	t.Helper()
	schema := testkit.NewSchema(t, testkit.Postgres(t))
	pool, err := pg.NewPool(t.Context(), pg.Config{URL: testkit.LoadStack().PostgresURL, Schema: schema, MaxConns: 4})
	if err != nil {
		testkit.Unavailable(t, "postgres", err)
	}
	t.Cleanup(pool.Close)
	if err := migrate.Up(t.Context(), pool, schema, migrations, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("migrate.Up(%s) = %v", schema, err)
	}
	return pool
}

// OutboxIDs lists the ids of the outbox rows in pool's schema, oldest first: what a contract
// test compares with the events a change promised to commit.
func OutboxIDs(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(t.Context(), `SELECT id FROM outbox ORDER BY seq`)
	if err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	return ids
}

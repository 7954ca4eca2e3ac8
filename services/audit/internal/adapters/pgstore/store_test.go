package pgstore_test

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/securemsg/securemsg/services/audit/internal/adapters/pgstore"
	"github.com/securemsg/securemsg/services/audit/internal/adapters/repotest"
	"github.com/securemsg/securemsg/services/audit/internal/domain"
	"github.com/securemsg/securemsg/services/audit/migrations"
	"github.com/securemsg/securemsg/services/internal/platform/migrate"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
	"github.com/securemsg/securemsg/services/internal/testkit"
)

// newStore returns a store on a fresh, migrated schema of the dev stack's Postgres.
func newStore(tb testing.TB) (*pgstore.Store, *pgxpool.Pool) {
	tb.Helper()
	admin := testkit.Postgres(tb)
	schema := testkit.NewSchema(tb, admin)
	if err := migrate.Up(tb.Context(), admin, schema, migrations.FS, nil); err != nil {
		tb.Fatalf("migrate.Up() error = %v", err)
	}
	pool, err := pg.NewPool(tb.Context(), pg.Config{URL: testkit.LoadStack().PostgresURL, Schema: schema, MaxConns: 4})
	if err != nil {
		tb.Fatalf("NewPool() error = %v", err)
	}
	tb.Cleanup(pool.Close)
	return pgstore.NewStore(pool), pool
}

// written reads the schema's outbox table.
func written(pool *pgxpool.Pool) repotest.Written {
	return func(t *testing.T) []outbox.Event {
		t.Helper()
		rows, err := pool.Query(t.Context(), `SELECT id, subject, payload FROM outbox ORDER BY seq`)
		if err != nil {
			t.Fatal(err)
		}
		events, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (outbox.Event, error) {
			var e outbox.Event
			return e, row.Scan(&e.ID, &e.Subject, &e.Payload)
		})
		if err != nil {
			t.Fatal(err)
		}
		return events
	}
}

func TestLogContract(t *testing.T) {
	t.Parallel()
	repotest.RunLog(t, func(t *testing.T) repotest.LogUnderTest {
		s, pool := newStore(t)
		return repotest.LogUnderTest{Log: s, Written: written(pool)}
	})
}

func TestCheckpointsContract(t *testing.T) {
	t.Parallel()
	repotest.RunCheckpoints(t, func(t *testing.T) domain.Checkpoints { s, _ := newStore(t); return s })
}

func TestReconcileMarksContract(t *testing.T) {
	t.Parallel()
	repotest.RunReconcileMarks(t, func(t *testing.T) repotest.MarksUnderTest {
		s, _ := newStore(t)
		return repotest.MarksUnderTest{Marks: s, Log: s}
	})
}

func TestOutboxContract(t *testing.T) {
	t.Parallel()
	repotest.RunOutbox(t, func(t *testing.T) repotest.OutboxUnderTest {
		s, pool := newStore(t)
		return repotest.OutboxUnderTest{Outbox: s, Written: written(pool)}
	})
}

func TestAlertsContract(t *testing.T) {
	t.Parallel()
	repotest.RunAlerts(t, func(t *testing.T) repotest.AlertsUnderTest {
		s, pool := newStore(t)
		return repotest.AlertsUnderTest{Alerts: s, Log: s, Written: written(pool)}
	})
}

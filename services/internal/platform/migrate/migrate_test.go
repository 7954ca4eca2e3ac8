package migrate_test

import (
	"context"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/securemsg/securemsg/services/internal/platform/migrate"
	"github.com/securemsg/securemsg/services/internal/testkit"
)

// serviceMigrations stands in for a service's embedded migrations, in the usual
// `//go:embed migrations/*.sql` shape.
var serviceMigrations = fstest.MapFS{
	"migrations/00001_widgets.sql": {Data: []byte(`-- +goose Up
CREATE TABLE widgets (id bigint PRIMARY KEY, name text NOT NULL);
-- +goose Down
DROP TABLE widgets;
`)},
	"migrations/00002_gadgets.sql": {Data: []byte(`-- +goose Up
CREATE TABLE gadgets (id bigint PRIMARY KEY, widget_id bigint REFERENCES widgets (id));
-- +goose Down
DROP TABLE gadgets;
`)},
}

func tablesIn(t *testing.T, pool *pgxpool.Pool, schema string) map[string]bool {
	t.Helper()
	rows, err := pool.Query(t.Context(), `SELECT tablename FROM pg_tables WHERE schemaname = $1`, schema)
	if err != nil {
		t.Fatalf("list tables: %v", err)
	}
	defer rows.Close()
	got := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatalf("scan: %v", err)
		}
		got[name] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("rows: %v", err)
	}
	return got
}

func TestUpDownUp(t *testing.T) {
	t.Parallel()
	pool := testkit.Postgres(t)
	// A schema name the test owns but does not create: Up must create it.
	schema := testkit.UniqueName(t, "t_", 40)
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
	})
	ctx := t.Context()

	m, err := migrate.New(ctx, pool, schema, serviceMigrations, nil)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })

	wantUp := []string{"outbox", "widgets", "gadgets", "goose_outbox_version", "goose_service_version"}
	checkVersions := func(step string, outboxV, serviceV int64) {
		t.Helper()
		v, err := m.Versions(ctx)
		if err != nil {
			t.Fatalf("%s: Versions() error = %v", step, err)
		}
		if v["outbox"] != outboxV || v["service"] != serviceV {
			t.Errorf("%s: Versions() = %v, want outbox=%d service=%d", step, v, outboxV, serviceV)
		}
	}

	for i, step := range []string{"first up", "second up after down"} {
		if err := m.Up(ctx); err != nil {
			t.Fatalf("%s: Up() error = %v", step, err)
		}
		got := tablesIn(t, pool, schema)
		for _, name := range wantUp {
			if !got[name] {
				t.Errorf("%s: table %s.%s missing after Up; have %v", step, schema, name, got)
			}
		}
		if got["goose_db_version"] {
			t.Errorf("%s: goose's default version table was created; want per-set tables only", step)
		}
		checkVersions(step, 2, 2)
		// No trigger on the outbox: a NOTIFY would serialise every event-writing commit on the
		// server (see outbox.CommitWatch).
		var triggers int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
			JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND t.tgname = 'outbox_notify'`, schema).Scan(&triggers); err != nil {
			t.Fatalf("count triggers: %v", err)
		}
		if triggers != 0 {
			t.Errorf("%s: outbox_notify triggers = %d, want 0", step, triggers)
		}
		if i == 1 {
			break
		}
		// Up is idempotent.
		if err := m.Up(ctx); err != nil {
			t.Fatalf("repeated Up() error = %v", err)
		}
		if err := m.Down(ctx); err != nil {
			t.Fatalf("Down() error = %v", err)
		}
		got = tablesIn(t, pool, schema)
		for _, name := range []string{"outbox", "widgets", "gadgets"} {
			if got[name] {
				t.Errorf("table %s.%s still there after Down", schema, name)
			}
		}
		checkVersions("after down", 0, 0)
	}
}

// TestConcurrentUp runs Up from several "replicas" at once: the advisory lock must make exactly
// one of them apply each migration and the others succeed without doing anything.
func TestConcurrentUp(t *testing.T) {
	t.Parallel()
	pool := testkit.Postgres(t)
	schema := testkit.NewSchema(t, pool)
	g, ctx := errgroup.WithContext(t.Context())
	for range 3 {
		g.Go(func() error { return migrate.Up(ctx, pool, schema, serviceMigrations, nil) })
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("concurrent Up() error = %v", err)
	}
	var applied int
	if err := pool.QueryRow(t.Context(),
		`SELECT count(*) FROM `+schema+`.goose_service_version WHERE version_id > 0 AND is_applied`).Scan(&applied); err != nil {
		t.Fatalf("count applied: %v", err)
	}
	if applied != 2 {
		t.Errorf("applied service migrations = %d, want 2 (each exactly once)", applied)
	}
}

func TestRejectsBadSchema(t *testing.T) {
	t.Parallel()
	pool := testkit.Postgres(t)
	for _, name := range []string{"", "Upper", "semi;colon", "1digit", "has-dash"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := migrate.New(t.Context(), pool, name, nil, nil); err == nil {
				t.Errorf("New(schema %q) error = nil, want an invalid-schema error", name)
			}
		})
	}
}

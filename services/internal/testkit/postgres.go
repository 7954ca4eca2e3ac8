package testkit

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/securemsg/securemsg/services/internal/testkit/internal/supervisor"
)

// Postgres connects to the stack's Postgres (LoadStack().PostgresURL) and returns a small pool
// closed when the test ends. If the target database does not exist yet it is created through
// the `postgres` maintenance database. When Postgres does not answer, the test ends through
// Unavailable (skip locally, fail in CI).
//
// The pool has no search_path of its own: pair it with NewSchema and open the code under test's
// own pool (pg.NewPool) on that schema.
func Postgres(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	url := LoadStack().PostgresURL
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		tb.Fatalf("testkit: parse SECUREMSG_TEST_PG_URL: %v", err)
	}
	cfg.MaxConns = 4
	cfg.ConnConfig.ConnectTimeout = 3 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()

	pool, err := connectPool(ctx, cfg)
	if isMissingDatabase(err) {
		if cerr := createDatabase(ctx, cfg.ConnConfig); cerr != nil {
			Unavailable(tb, "postgres", cerr)
			return nil
		}
		pool, err = connectPool(ctx, cfg)
	}
	if err != nil {
		Unavailable(tb, "postgres", err)
		return nil
	}
	tb.Cleanup(pool.Close)
	return pool
}

func connectPool(ctx context.Context, cfg *pgxpool.Config) (*pgxpool.Pool, error) {
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

func isMissingDatabase(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "3D000" // invalid_catalog_name
}

// createDatabase creates cfg's database by connecting to the `postgres` database on the same
// server. A concurrent creation by another test process is fine.
func createDatabase(ctx context.Context, cfg *pgx.ConnConfig) error {
	admin := cfg.Copy()
	admin.Database = "postgres"
	return supervisor.CreateDatabase(ctx, admin, cfg.Database)
}

// NewSchema creates a uniquely named, empty schema ("t_" + the test's name, shortened, + a random
// suffix) and drops it with everything in it when the test ends. The name is a plain lower-case
// identifier, so it is accepted by pg.ValidateSchema.
func NewSchema(tb testing.TB, pool *pgxpool.Pool) string {
	tb.Helper()
	name := UniqueName(tb, "t_", 40)
	if _, err := pool.Exec(tb.Context(), "CREATE SCHEMA "+name); err != nil {
		tb.Fatalf("testkit: create schema %s: %v", name, err)
	}
	tb.Cleanup(func() {
		// t.Context() is already cancelled during cleanup.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+name+" CASCADE"); err != nil {
			tb.Errorf("testkit: drop schema %s: %v", name, err)
		}
	})
	return name
}

// UniqueName returns prefix + a lower-case form of the test's name + "_" + 8 random hex digits,
// at most maxLen bytes, using only [a-z0-9_]: usable as a schema, key or bucket-suffix name.
func UniqueName(tb testing.TB, prefix string, maxLen int) string {
	tb.Helper()
	var b strings.Builder
	for _, r := range strings.ToLower(tb.Name()) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	suffix := "_" + supervisor.RandomHex(4)
	base := prefix + b.String()
	if keep := maxLen - len(suffix); len(base) > keep {
		base = base[:max(keep, 0)]
	}
	return base + suffix
}

// Package migrate applies a service's embedded SQL migrations to its Postgres schema with goose.
//
// A service schema holds two kinds of tables: the platform's shared ones (the transactional
// outbox, whose migrations live in the outbox package) and the service's own. Each set is
// tracked in its own goose version table inside the schema (goose_outbox_version,
// goose_service_version), so platform and service migrations number themselves independently
// and schemas never share version state. Up runs the platform sets first, then the service's;
// Down undoes them in the reverse order, all the way to version zero.
//
// Several replicas may start at once: each set runs under a Postgres advisory lock (goose's
// session locker) whose id is derived from the schema and set name, so one replica migrates
// and the others wait, then find nothing to do.
package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
)

// Set is one group of migrations with its own version table, goose_<Name>_version.
type Set struct {
	// Name is a short lower-case identifier ("outbox", "service").
	Name string
	// FS holds goose SQL files (00001_x.sql, …) at its root, or in a "migrations" folder.
	FS fs.FS
}

// PlatformSets are the shared migrations every service schema gets, in the order they run.
func PlatformSets() []Set {
	return []Set{{Name: "outbox", FS: outbox.Migrations()}}
}

// Up creates schema if missing, then applies the platform sets and the service's migrations
// (service may be nil for a service without tables of its own). It is idempotent.
func Up(ctx context.Context, pool *pgxpool.Pool, schema string, service fs.FS, logger *slog.Logger) error {
	return runOnce(ctx, pool, schema, service, logger, (*Migrator).Up)
}

// Down rolls the service's migrations and then the platform sets back to version zero. The
// schema itself and the empty version tables stay.
func Down(ctx context.Context, pool *pgxpool.Pool, schema string, service fs.FS, logger *slog.Logger) error {
	return runOnce(ctx, pool, schema, service, logger, (*Migrator).Down)
}

// runOnce runs step (Up or Down) on a Migrator made for this call and closed after it.
func runOnce(ctx context.Context, pool *pgxpool.Pool, schema string, service fs.FS, logger *slog.Logger, step func(*Migrator, context.Context) error) error {
	m, err := New(ctx, pool, schema, service, logger)
	if err != nil {
		return err
	}
	defer func() { _ = m.Close() }()
	return step(m, ctx)
}

// Migrator holds the goose providers for one schema. Close releases its connections.
type Migrator struct {
	schema    string
	pool      *pgxpool.Pool
	db        *sql.DB
	providers []namedProvider // in Up order
}

type namedProvider struct {
	name string
	p    *goose.Provider
}

// New prepares the migrations for schema without touching the database except to open a
// database/sql handle whose connections use schema as search_path (so migrations stay
// unqualified and land in the service's schema). logger may be nil to discard goose's output.
func New(ctx context.Context, pool *pgxpool.Pool, schema string, service fs.FS, logger *slog.Logger) (*Migrator, error) {
	if err := pg.ValidateSchema(schema); err != nil {
		return nil, err
	}
	sets := PlatformSets()
	if service != nil {
		sets = append(sets, Set{Name: "service", FS: service})
	}
	cc := pool.Config().ConnConfig.Copy()
	cc.RuntimeParams["search_path"] = schema
	db := stdlib.OpenDB(*cc)
	m := &Migrator{schema: schema, pool: pool, db: db}
	for _, set := range sets {
		p, err := newProvider(db, schema, set, logger)
		if err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("migrate %s/%s: %w", schema, set.Name, err)
		}
		m.providers = append(m.providers, namedProvider{name: set.Name, p: p})
	}
	return m, nil
}

func newProvider(db *sql.DB, schema string, set Set, logger *slog.Logger) (*goose.Provider, error) {
	if err := pg.ValidateSchema(set.Name); err != nil {
		return nil, fmt.Errorf("set name: %w", err)
	}
	fsys, err := migrationRoot(set.FS)
	if err != nil {
		return nil, err
	}
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(lockID(schema, set.Name)))
	if err != nil {
		return nil, err
	}
	opts := []goose.ProviderOption{
		// Qualified so goose's "does the table exist" check looks in this schema only.
		goose.WithTableName(schema + ".goose_" + set.Name + "_version"),
		goose.WithSessionLocker(locker),
		// Go migrations registered globally by some other package must never leak in.
		goose.WithDisableGlobalRegistry(true),
	}
	if logger != nil {
		opts = append(opts, goose.WithSlog(logger.With("schema", schema, "migration_set", set.Name)))
	} else {
		opts = append(opts, goose.WithLogger(goose.NopLogger()))
	}
	return goose.NewProvider(goose.DialectPostgres, db, fsys, opts...)
}

// migrationRoot accepts both an fs whose root holds the .sql files and the common
// `//go:embed migrations/*.sql` shape, where they sit in a "migrations" folder.
func migrationRoot(fsys fs.FS) (fs.FS, error) {
	if fsys == nil {
		return nil, errors.New("nil migrations fs")
	}
	if found, _ := fs.Glob(fsys, "*.sql"); len(found) > 0 {
		return fsys, nil
	}
	if st, err := fs.Stat(fsys, "migrations"); err == nil && st.IsDir() {
		return fs.Sub(fsys, "migrations")
	}
	return fsys, nil
}

// lockID gives each (schema, set) its own advisory lock, so migrating one schema never waits
// for another (parallel tests each migrate a schema of their own).
func lockID(schema, set string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("securemsg/migrate/" + schema + "/" + set))
	return int64(h.Sum64() >> 1) // keep it positive: nicer in pg_locks
}

// Up creates the schema if needed and applies every pending migration, set by set.
func (m *Migrator) Up(ctx context.Context) error {
	if _, err := m.pool.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+m.schema); err != nil && !isDuplicateSchema(err) {
		return fmt.Errorf("migrate: create schema %s: %w", m.schema, err)
	}
	for _, np := range m.providers {
		if _, err := np.p.Up(ctx); err != nil {
			return fmt.Errorf("migrate %s/%s up: %w", m.schema, np.name, err)
		}
	}
	return nil
}

// Down rolls every set back to version zero, the service's first.
func (m *Migrator) Down(ctx context.Context) error {
	for i := len(m.providers) - 1; i >= 0; i-- {
		np := m.providers[i]
		if _, err := np.p.DownTo(ctx, 0); err != nil {
			return fmt.Errorf("migrate %s/%s down: %w", m.schema, np.name, err)
		}
	}
	return nil
}

// Versions returns each set's current database version, keyed by set name.
func (m *Migrator) Versions(ctx context.Context) (map[string]int64, error) {
	out := make(map[string]int64, len(m.providers))
	for _, np := range m.providers {
		v, err := np.p.GetDBVersion(ctx)
		if err != nil {
			return nil, fmt.Errorf("migrate %s/%s version: %w", m.schema, np.name, err)
		}
		out[np.name] = v
	}
	return out, nil
}

// Close releases the migrator's database/sql handle; the pool stays open.
func (m *Migrator) Close() error {
	return m.db.Close()
}

// isDuplicateSchema covers the race of two replicas creating the schema at once, where
// IF NOT EXISTS can still fail on the catalog's unique index.
func isDuplicateSchema(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "42P06" || pgErr.Code == "23505")
}

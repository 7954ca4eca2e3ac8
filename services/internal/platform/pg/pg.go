// Package pg opens the services' Postgres connection pools and runs their transactions.
//
// Each service owns one schema (messaging, attachment, notification, audit) and never reads
// another's tables. The pool pins search_path to that schema through the connection's startup
// parameters, so SQL stays unqualified and a test can point a service at a throw-away schema.
package pg

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/multitracer"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Config says how to reach Postgres. Zero durations and counts fall back to the defaults below,
// which suit a service replica on a small node: Postgres' own connection limit (100 by default)
// is shared by every replica of every service, so each pool stays small.
type Config struct {
	// URL is a libpq-style URL or key/value DSN (postgres://user@host:5432/db?sslmode=...).
	URL string
	// Schema is the service's schema; it becomes the connections' search_path. Required.
	Schema string
	// ApplicationName shows up in pg_stat_activity (for example "securemsg-messaging").
	ApplicationName string
	// MaxConns caps open connections (default 10).
	MaxConns int32
	// MinConns keeps this many connections open while idle (default 1).
	MinConns int32
	// MaxConnLifetime recycles connections so that load spreads after a failover (default 30m).
	MaxConnLifetime time.Duration
	// MaxConnIdleTime closes idle connections beyond MinConns (default 5m).
	MaxConnIdleTime time.Duration
	// HealthCheckPeriod is how often idle connections are checked (default 30s).
	HealthCheckPeriod time.Duration
	// ConnectTimeout bounds each dial (default 5s), so an unreachable database fails fast.
	ConnectTimeout time.Duration
	// StatementTimeout, when positive, is set as statement_timeout on every connection so a
	// runaway query cannot hold a connection forever.
	StatementTimeout time.Duration
	// Tracer, when set, sees every statement the pool's connections run (the outbox's
	// CommitWatch wakes the relay with it).
	Tracer pgx.QueryTracer
}

// Defaults applied by NewPool when a Config field is zero.
const (
	DefaultMaxConns          = 10
	DefaultMinConns          = 1
	DefaultMaxConnLifetime   = 30 * time.Minute
	DefaultMaxConnIdleTime   = 5 * time.Minute
	DefaultHealthCheckPeriod = 30 * time.Second
	DefaultConnectTimeout    = 5 * time.Second
)

// schemaName accepts plain lower-case identifiers only: they need no quoting in search_path,
// in goose's version-table names or in NOTIFY channel names.
var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// ErrInvalidSchema is returned when a schema name is not a plain lower-case identifier
// (letters, digits, underscores; at most 63 bytes; not starting with a digit).
var ErrInvalidSchema = errors.New("pg: schema must match ^[a-z_][a-z0-9_]{0,62}$")

// ValidateSchema returns ErrInvalidSchema unless name is a plain lower-case identifier.
func ValidateSchema(name string) error {
	if !schemaName.MatchString(name) {
		return fmt.Errorf("%w (got %q)", ErrInvalidSchema, name)
	}
	return nil
}

// PoolConfig turns cfg into a pgxpool configuration without connecting. The URL's password
// never appears in the returned error.
func PoolConfig(cfg Config) (*pgxpool.Config, error) {
	if err := ValidateSchema(cfg.Schema); err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		// pgconn redacts passwords in parse errors only on a best-effort basis, and a mistyped
		// URL is exactly where that can fail, so the message stays static.
		return nil, errors.New("pg: parse database URL: invalid connection string")
	}
	pc.MaxConns = orDefault(cfg.MaxConns, DefaultMaxConns)
	pc.MinConns = min(orDefault(cfg.MinConns, DefaultMinConns), pc.MaxConns)
	pc.MaxConnLifetime = orDefault(cfg.MaxConnLifetime, DefaultMaxConnLifetime)
	pc.MaxConnLifetimeJitter = pc.MaxConnLifetime / 10
	pc.MaxConnIdleTime = orDefault(cfg.MaxConnIdleTime, DefaultMaxConnIdleTime)
	pc.HealthCheckPeriod = orDefault(cfg.HealthCheckPeriod, DefaultHealthCheckPeriod)
	pc.ConnConfig.ConnectTimeout = orDefault(cfg.ConnectTimeout, DefaultConnectTimeout)
	// Spans for traced work always; the caller's tracer (the outbox's CommitWatch) beside them.
	pc.ConnConfig.Tracer = newSpanTracer(cfg.Schema)
	if cfg.Tracer != nil {
		pc.ConnConfig.Tracer = multitracer.New(pc.ConnConfig.Tracer, cfg.Tracer)
	}
	rp := pc.ConnConfig.RuntimeParams
	rp["search_path"] = cfg.Schema
	if cfg.ApplicationName != "" {
		rp["application_name"] = cfg.ApplicationName
	}
	if cfg.StatementTimeout > 0 {
		rp["statement_timeout"] = fmt.Sprint(cfg.StatementTimeout.Milliseconds())
	}
	return pc, nil
}

// NewPool opens a pool for cfg and checks that the database answers. The pool must be closed
// by the caller. When the database cannot be reached the error satisfies IsUnavailable.
func NewPool(ctx context.Context, cfg Config) (*pgxpool.Pool, error) {
	pc, err := PoolConfig(cfg)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("pg: open pool: %w", err)
	}
	if err := Health(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// Health reports whether the pool can run a query. Readiness probes call it; a failure means
// the service should report NOT_SERVING rather than accept work it cannot store.
func Health(ctx context.Context, pool *pgxpool.Pool) error {
	if err := pool.Ping(ctx); err != nil {
		return fmt.Errorf("pg: health check: %w", err)
	}
	return nil
}

// Querier is what both a pool and a transaction offer, so a store's queries run the same inside
// and outside the caller's transaction.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// TxBeginner is what WithTx needs: *pgxpool.Pool and *pgx.Conn both fit.
type TxBeginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// WithTx runs fn in a read-committed transaction. It commits when fn returns nil and rolls back
// when fn returns an error or panics (the panic is re-raised after the rollback). The error fn
// returned comes back unchanged (wrapped only for begin/commit failures), so callers can still
// match it with errors.Is/As.
func WithTx(ctx context.Context, db TxBeginner, fn func(pgx.Tx) error) error {
	return WithTxOptions(ctx, db, pgx.TxOptions{}, fn)
}

// WithTxOptions is WithTx with explicit isolation and access modes. WithTx never retries by
// itself, since fn may have effects outside the database; callers that choose serializable
// isolation retry while IsSerializationFailure holds.
func WithTxOptions(ctx context.Context, db TxBeginner, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	// pgx.BeginTxFunc defers the rollback, so a panic in fn also ends the transaction.
	return pgx.BeginTxFunc(ctx, beginner{db}, opts, fn)
}

// beginner adapts TxBeginner to the interface pgx.BeginTxFunc expects.
type beginner struct{ db TxBeginner }

func (b beginner) BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error) {
	tx, err := b.db.BeginTx(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("pg: begin: %w", err)
	}
	return tx, nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

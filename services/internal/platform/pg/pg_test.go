package pg_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/securemsg/securemsg/services/internal/platform/pg"
	"github.com/securemsg/securemsg/services/internal/testkit"
)

// schemaPool opens a pg pool on a fresh schema with a one-column table.
func schemaPool(t *testing.T) (*pgxpool.Pool, string) {
	t.Helper()
	admin := testkit.Postgres(t)
	schema := testkit.NewSchema(t, admin)
	pool, err := pg.NewPool(t.Context(), pg.Config{URL: testkit.LoadStack().PostgresURL, Schema: schema, ApplicationName: "pg-test"})
	if err != nil {
		t.Fatalf("NewPool() error = %v", err)
	}
	t.Cleanup(pool.Close)
	if _, err := pool.Exec(t.Context(), "CREATE TABLE items (id int PRIMARY KEY)"); err != nil {
		t.Fatalf("create table: %v", err)
	}
	return pool, schema
}

func count(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM items").Scan(&n); err != nil {
		t.Fatalf("count: %v", err)
	}
	return n
}

func TestNewPoolSetsSearchPath(t *testing.T) {
	t.Parallel()
	pool, schema := schemaPool(t)
	var got string
	if err := pool.QueryRow(t.Context(), "SELECT current_schema()").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != schema {
		t.Errorf("current_schema() = %q, want %q", got, schema)
	}
	// The unqualified table landed in the schema, not in public.
	var where string
	if err := pool.QueryRow(t.Context(), "SELECT schemaname FROM pg_tables WHERE tablename = 'items' AND schemaname = $1", schema).Scan(&where); err != nil {
		t.Errorf("table items not found in schema %s: %v", schema, err)
	}
	if err := pg.Health(t.Context(), pool); err != nil {
		t.Errorf("Health() = %v, want nil", err)
	}
}

func TestWithTx(t *testing.T) {
	t.Parallel()
	pool, _ := schemaPool(t)
	errBoom := errors.New("boom")
	tests := []struct {
		name      string
		fn        func(tx pgx.Tx) error
		wantErr   error
		wantPanic bool
		wantRows  int
	}{
		{"commit", func(tx pgx.Tx) error { _, err := tx.Exec(t.Context(), "INSERT INTO items VALUES (1)"); return err }, nil, false, 1},
		{"rollback on error", func(tx pgx.Tx) error {
			if _, err := tx.Exec(t.Context(), "INSERT INTO items VALUES (2)"); err != nil {
				return err
			}
			return errBoom
		}, errBoom, false, 1},
		{"rollback on panic", func(tx pgx.Tx) error {
			if _, err := tx.Exec(t.Context(), "INSERT INTO items VALUES (3)"); err != nil {
				return err
			}
			panic("handler bug")
		}, nil, true, 1},
	}
	for _, tt := range tests { // sequential: rows accumulate
		t.Run(tt.name, func(t *testing.T) {
			var err error
			panicked := func() (p bool) {
				defer func() { p = recover() != nil }()
				err = pg.WithTx(t.Context(), pool, tt.fn)
				return false
			}()
			if panicked != tt.wantPanic {
				t.Fatalf("WithTx(%s) panicked = %v, want %v", tt.name, panicked, tt.wantPanic)
			}
			if !tt.wantPanic && !errors.Is(err, tt.wantErr) {
				t.Errorf("WithTx(%s) error = %v, want %v", tt.name, err, tt.wantErr)
			}
			if got := count(t, pool); got != tt.wantRows {
				t.Errorf("rows after WithTx(%s) = %d, want %d", tt.name, got, tt.wantRows)
			}
		})
	}
	// The pool is healthy afterwards: no connection left inside a transaction.
	if st := pool.Stat(); st.AcquiredConns() != 0 {
		t.Errorf("acquired connections after WithTx = %d, want 0", st.AcquiredConns())
	}
}

// TestClassification raises real server errors with the SQLSTATE in question.
func TestClassification(t *testing.T) {
	t.Parallel()
	pool, _ := schemaPool(t)
	raise := func(code string) error {
		_, err := pool.Exec(t.Context(), fmt.Sprintf(`DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '%s'; END $$`, code))
		return err
	}
	if _, err := pool.Exec(t.Context(), "INSERT INTO items VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	_, dupErr := pool.Exec(t.Context(), "INSERT INTO items VALUES (1)")

	refusedCtx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, refusedErr := pg.NewPool(refusedCtx, pg.Config{URL: "postgres://postgres@127.0.0.1:1/securemsg?sslmode=disable", Schema: "x", ConnectTimeout: time.Second})

	tests := []struct {
		name                    string
		err                     error
		unique, serial, unavail bool
	}{
		{"unique violation", dupErr, true, false, false},
		{"serialization failure", raise("40001"), false, true, false},
		{"deadlock", raise("40P01"), false, true, false},
		{"admin shutdown", raise("57P01"), false, false, true},
		{"too many connections", raise("53300"), false, false, true},
		{"connection failure", raise("08006"), false, false, true},
		{"syntax error", raise("42601"), false, false, false},
		{"connection refused", refusedErr, false, false, true},
		{"cancelled", context.Canceled, false, false, false},
		{"nil", nil, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.name != "nil" && tt.err == nil {
				t.Fatalf("%s: expected an error to classify", tt.name)
			}
			if got := pg.IsUniqueViolation(tt.err); got != tt.unique {
				t.Errorf("IsUniqueViolation(%v) = %v, want %v", tt.err, got, tt.unique)
			}
			if got := pg.IsSerializationFailure(tt.err); got != tt.serial {
				t.Errorf("IsSerializationFailure(%v) = %v, want %v", tt.err, got, tt.serial)
			}
			if got := pg.IsUnavailable(tt.err); got != tt.unavail {
				t.Errorf("IsUnavailable(%v) = %v, want %v", tt.err, got, tt.unavail)
			}
		})
	}
	if !pg.IsUniqueViolation(dupErr, "items_pkey") || pg.IsUniqueViolation(dupErr, "other_key") {
		t.Errorf("IsUniqueViolation with constraint names did not match on items_pkey only")
	}
}

func TestValidateSchema(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ok   bool
	}{
		{"messaging", true}, {"t_abc_123", true}, {"_x", true},
		{"", false}, {"Messaging", false}, {"9a", false}, {"a;drop", false}, {"a b", false},
		{"a234567890123456789012345678901234567890123456789012345678901234", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := pg.ValidateSchema(tt.name); (err == nil) != tt.ok {
				t.Errorf("ValidateSchema(%q) = %v, want ok=%v", tt.name, err, tt.ok)
			}
		})
	}
}

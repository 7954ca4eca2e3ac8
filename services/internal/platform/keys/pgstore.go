package keys

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// identifier accepts plain lower-case SQL identifiers, the only ones PGStore takes: table and
// column names reach SQL text, so they are validated and then quoted.
var identifier = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// pgIDTypes are the id column types PGStore can page through; the cursor is cast to the type
// so the comparison uses the column's own order (and index).
var pgIDTypes = map[string]bool{"uuid": true, "text": true, "bigint": true, "integer": true, "character varying": true}

// PGStore is a WrappedKeyStore over any Postgres table with an id column and a wrapped-key
// column, so a service gets rewrap and coverage without writing code. Rows whose wrapped
// column is NULL (e.g. crypto-shredded threads) are skipped.
type PGStore struct {
	pool                *pgxpool.Pool
	name                string
	scanSQL, replaceSQL string
}

// PGStoreSpec names a table's wrapped-key column: "pg:<schema>.<table>.<id col>.<wrapped col>".
type PGStoreSpec struct {
	Schema, Table, IDColumn, WrappedColumn string
}

// ParsePGStoreSpec parses "pg:<schema>.<table>.<id col>.<wrapped col>".
func ParsePGStoreSpec(s string) (PGStoreSpec, error) {
	rest, ok := strings.CutPrefix(s, "pg:")
	parts := strings.Split(rest, ".")
	if !ok || len(parts) != 4 {
		return PGStoreSpec{}, fmt.Errorf("store %q: want pg:<schema>.<table>.<id column>.<wrapped column>", s)
	}
	spec := PGStoreSpec{Schema: parts[0], Table: parts[1], IDColumn: parts[2], WrappedColumn: parts[3]}
	return spec, spec.validate()
}

func (s PGStoreSpec) validate() error {
	var errs []error
	for _, id := range []string{s.Schema, s.Table, s.IDColumn, s.WrappedColumn} {
		if !identifier.MatchString(id) {
			errs = append(errs, fmt.Errorf("invalid identifier %q: want ^[a-z_][a-z0-9_]{0,62}$", id))
		}
	}
	return errors.Join(errs...)
}

// String is the spec in its flag form.
func (s PGStoreSpec) String() string {
	return "pg:" + s.Schema + "." + s.Table + "." + s.IDColumn + "." + s.WrappedColumn
}

// NewPGStore checks the spec and the table (the id column's type must be one PGStore can page
// through) and returns the store. Its name is "<schema>.<table>.<wrapped column>".
func NewPGStore(ctx context.Context, pool *pgxpool.Pool, spec PGStoreSpec) (*PGStore, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	var idType, wType string
	err := pool.QueryRow(ctx, `
		SELECT format_type(i.atttypid, NULL), format_type(w.atttypid, NULL)
		FROM pg_attribute i JOIN pg_attribute w ON w.attrelid = i.attrelid
		WHERE i.attrelid = to_regclass($1) AND i.attname = $2 AND w.attname = $3
		  AND NOT i.attisdropped AND NOT w.attisdropped`,
		pgx.Identifier{spec.Schema, spec.Table}.Sanitize(), spec.IDColumn, spec.WrappedColumn).Scan(&idType, &wType)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("store %s: no such table or columns", spec)
	}
	if err != nil {
		return nil, fmt.Errorf("store %s: inspect table: %w", spec, err)
	}
	if !pgIDTypes[idType] {
		return nil, fmt.Errorf("store %s: id column type %s is not one of uuid, text, varchar, bigint, integer", spec, idType)
	}
	if wType != "text" && wType != "character varying" {
		return nil, fmt.Errorf("store %s: wrapped column type %s is not text", spec, wType)
	}
	tbl := pgx.Identifier{spec.Schema, spec.Table}.Sanitize()
	id := pgx.Identifier{spec.IDColumn}.Sanitize()
	w := pgx.Identifier{spec.WrappedColumn}.Sanitize()
	// idType comes from the allow-list above, never from the caller.
	return &PGStore{
		pool: pool,
		name: spec.Schema + "." + spec.Table + "." + spec.WrappedColumn,
		// The output columns get aliases no input column has, so ORDER BY sorts by the typed id,
		// not by its text form (an output name would shadow the column: 10 < 2).
		scanSQL: fmt.Sprintf(`SELECT %[1]s::text AS securemsg_scan_id, %[2]s AS securemsg_scan_wrapped FROM %[3]s
			WHERE %[2]s IS NOT NULL AND ($1 = '' OR %[1]s > $1::text::%[4]s)
			ORDER BY %[1]s LIMIT $2`, id, w, tbl, idType),
		replaceSQL: fmt.Sprintf(`UPDATE %[3]s SET %[2]s = $3 WHERE %[1]s = $1::text::%[4]s AND %[2]s = $2`, id, w, tbl, idType),
	}, nil
}

// StoreName implements WrappedKeyStore.
func (s *PGStore) StoreName() string { return s.name }

// ScanWrapped implements WrappedKeyStore.
func (s *PGStore) ScanWrapped(ctx context.Context, afterID string, limit int) ([]WrappedKey, error) {
	rows, err := s.pool.Query(ctx, s.scanSQL, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("scan wrapped keys: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (WrappedKey, error) {
		var k WrappedKey
		err := row.Scan(&k.ID, &k.Wrapped)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("scan wrapped keys: %w", err)
	}
	return out, nil
}

// ReplaceWrapped implements WrappedKeyStore with a single conditional UPDATE.
func (s *PGStore) ReplaceWrapped(ctx context.Context, id, oldWrapped, newWrapped string) (bool, error) {
	tag, err := s.pool.Exec(ctx, s.replaceSQL, id, oldWrapped, newWrapped)
	if err != nil {
		return false, fmt.Errorf("replace wrapped key: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// Package pgstore implements the audit service's repositories (domain.Log, domain.Checkpoints,
// domain.ReconcileMarks, domain.Outbox) on Postgres, schema `audit`: the append-only,
// month-partitioned log with its single-writer head row, the Merkle tree's kept nodes,
// checkpoints, retention and reconciliation marks, and the service's outbox.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/transparency-dev/merkle/compact"

	"github.com/securemsg/securemsg/services/audit/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog/tlog"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
)

// Store is the Postgres log. Its pool's search_path is the audit schema.
type Store struct {
	pool *pgxpool.Pool
}

var (
	_ domain.Log            = (*Store)(nil)
	_ domain.Checkpoints    = (*Store)(nil)
	_ domain.ReconcileMarks = (*Store)(nil)
	_ domain.Outbox         = (*Store)(nil)
)

// NewStore returns a store on pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Sequences, tree sizes and tree indexes are uint64 in the domain and bigint in Postgres, tree
// levels uint and smallint. They count records, so they stay far below 2^63 (and levels at
// most 64): the conversions cannot overflow.

func pgBigint(n uint64) int64 { return int64(n) } //nolint:gosec // G115: counts of records, far below 2^63 (see above)

func fromPgBigint(n int64) uint64 { return uint64(n) } //nolint:gosec // G115: read from columns only pgBigint wrote, never negative

func pgSmallint(level uint) int16 { return int16(level) } //nolint:gosec // G115: tree levels are at most 64

// partitionName names the partition of the month holding t.
func partitionName(t time.Time) string {
	t = t.UTC()
	return fmt.Sprintf("entries_p%04d%02d", t.Year(), int(t.Month()))
}

func monthStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// EnsurePartitions creates the monthly partitions from the month of now to ahead months later.
// Safe to call concurrently and repeatedly.
func (s *Store) EnsurePartitions(ctx context.Context, now time.Time, ahead int) error {
	m := monthStart(now)
	for i := 0; i <= ahead; i++ {
		from := m.AddDate(0, i, 0)
		to := from.AddDate(0, 1, 0)
		sql := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s PARTITION OF entries FOR VALUES FROM ('%s') TO ('%s')`,
			partitionName(from), from.Format(time.RFC3339), to.Format(time.RFC3339))
		if _, err := s.pool.Exec(ctx, sql); err != nil && !pg.IsUniqueViolation(err) && !isDuplicateTable(err) {
			return fmt.Errorf("create partition %s: %w", partitionName(from), err)
		}
	}
	return nil
}

func isDuplicateTable(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "42P07") || strings.Contains(err.Error(), "already exists"))
}

const headSQL = `SELECT size, chain_hash, tree_state, first_sequence FROM log_head`

func scanHead(row pgx.Row) (domain.Head, error) {
	var size, first int64
	var chain []byte
	var state [][]byte
	if err := row.Scan(&size, &chain, &state, &first); err != nil {
		return domain.Head{}, fmt.Errorf("read log head: %w", err)
	}
	tree, err := tlog.TreeFromState(fromPgBigint(size), state)
	if err != nil {
		return domain.Head{}, err
	}
	return domain.Head{Size: fromPgBigint(size), Chain: chain, Tree: tree, FirstSequence: fromPgBigint(first)}, nil
}

// Head reads the log's end without locking it.
func (s *Store) Head(ctx context.Context) (domain.Head, error) {
	return scanHead(s.pool.QueryRow(ctx, headSQL))
}

var entryColumns = []string{"sequence", "appended_at", "event_id", "occurred_at", "producer", "actor_subject", "actor_role",
	"actor_org", "on_behalf_of", "action", "outcome", "severity", "record_type", "record_id", "patient_id", "pool_id",
	"sensitivity", "purpose", "record_bytes", "leaf_hash", "prev_chain_hash", "chain_hash"}

// Append implements domain.Log in one transaction. The head row lock makes appends from several
// replicas take turns; the entries, their event ids and the tree nodes they complete are
// written with COPY, then the head moves and effects' events go to the outbox, all before the
// one commit.
func (s *Store) Append(ctx context.Context, recs []domain.Incoming, now time.Time, effects func([]domain.Entry) (domain.AppendEffects, error)) ([]domain.Entry, error) {
	var out []domain.Entry
	err := pg.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		head, seen, err := lockHead(ctx, tx, recs)
		if err != nil {
			return err
		}
		var nodes [][]any
		out = head.Extend(recs, seen, now, func(level uint, index uint64, hash []byte) {
			if domain.KeepsTreeNode(level) {
				nodes = append(nodes, []any{pgSmallint(level), pgBigint(index), hash})
			}
		})
		if len(out) == 0 {
			return nil
		}
		rowsIn := make([][]any, len(out))
		idRows := make([][]any, len(out))
		for i, e := range out {
			p := e.Projection
			rowsIn[i] = []any{pgBigint(e.Sequence), e.AppendedAt, p.EventID, p.OccurredAt, p.Producer, p.ActorSubject, p.ActorRole,
				p.ActorOrg, p.OnBehalfOf, p.Action, p.Outcome, p.Severity, p.RecordType, p.RecordID, p.PatientID, p.PoolID,
				p.Sensitivity, p.Purpose, e.Bytes, e.Leaf, e.PrevChain, e.Chain}
			idRows[i] = []any{p.EventID, pgBigint(e.Sequence)}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"entries"}, entryColumns, pgx.CopyFromRows(rowsIn)); err != nil {
			return fmt.Errorf("append %d entries: %w", len(rowsIn), err)
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"event_ids"}, []string{"event_id", "sequence"}, pgx.CopyFromRows(idRows)); err != nil {
			return fmt.Errorf("record event ids: %w", err)
		}
		if len(nodes) > 0 {
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"tree_nodes"}, []string{"level", "idx", "hash"}, pgx.CopyFromRows(nodes)); err != nil {
				return fmt.Errorf("store tree nodes: %w", err)
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE log_head SET size = $1, chain_hash = $2, tree_state = $3, updated_at = now()`,
			pgBigint(head.Size), head.Chain, head.Tree.State()); err != nil {
			return fmt.Errorf("advance log head: %w", err)
		}
		if effects == nil {
			return nil
		}
		eff, err := effects(out)
		if err != nil {
			return err
		}
		if err := insertAlerts(ctx, tx, eff.Alerts); err != nil {
			return err
		}
		return outbox.Add(ctx, tx, eff.Events...)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// lockHead locks and reads the head and looks up which of recs' event ids the log holds, in
// one round trip. The duplicate check must probe the primary key; without statistics (a new
// table, or one that grew fast before autovacuum analysed it) the planner may scan the whole
// table for every batch, which makes ingest slow down as the log grows — hence enable_seqscan
// off for this query.
func lockHead(ctx context.Context, tx pgx.Tx, recs []domain.Incoming) (domain.Head, map[string]bool, error) {
	ids := make([]string, 0, len(recs))
	for _, r := range recs {
		ids = append(ids, r.EventID)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	var head domain.Head
	var have []string
	b := &pgx.Batch{}
	b.Queue(headSQL + " FOR UPDATE").QueryRow(func(row pgx.Row) error {
		var err error
		head, err = scanHead(row)
		return err
	})
	b.Queue("SET LOCAL enable_seqscan = off")
	b.Queue(`SELECT event_id FROM event_ids WHERE event_id = ANY($1)`, ids).Query(func(rows pgx.Rows) error {
		var err error
		have, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	b.Queue("SET LOCAL enable_seqscan = on")
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return domain.Head{}, nil, fmt.Errorf("lock head and look up event ids: %w", err)
	}
	seen := make(map[string]bool, len(have)+len(recs))
	for _, id := range have {
		seen[id] = true
	}
	return head, seen, nil
}

const selectEntry = `SELECT sequence, appended_at, record_bytes, leaf_hash, prev_chain_hash, chain_hash, event_id, occurred_at,
	producer, actor_subject, actor_role, actor_org, on_behalf_of, action, outcome, severity, record_type, record_id, patient_id,
	pool_id, sensitivity, purpose FROM entries`

func scanEntry(row pgx.CollectableRow) (domain.Entry, error) {
	var e domain.Entry
	var seq int64
	p := &e.Projection
	err := row.Scan(&seq, &e.AppendedAt, &e.Bytes, &e.Leaf, &e.PrevChain, &e.Chain, &p.EventID, &p.OccurredAt, &p.Producer,
		&p.ActorSubject, &p.ActorRole, &p.ActorOrg, &p.OnBehalfOf, &p.Action, &p.Outcome, &p.Severity, &p.RecordType,
		&p.RecordID, &p.PatientID, &p.PoolID, &p.Sensitivity, &p.Purpose)
	e.Sequence = fromPgBigint(seq)
	p.OccurredAt = p.OccurredAt.UTC()
	return e, err
}

// Range calls fn for the entries with from <= sequence <= to, in sequence order, reading in
// chunks so memory stays bounded.
func (s *Store) Range(ctx context.Context, from, to uint64, fn func(domain.Entry) error) error {
	const chunk = 2000
	for next := from; next <= to; {
		hi := min(to, next+chunk-1)
		rows, err := s.pool.Query(ctx, selectEntry+` WHERE sequence BETWEEN $1 AND $2 ORDER BY sequence`, pgBigint(next), pgBigint(hi))
		if err != nil {
			return fmt.Errorf("read entries %d..%d: %w", next, hi, err)
		}
		entries, err := pgx.CollectRows(rows, scanEntry)
		if err != nil {
			return fmt.Errorf("read entries %d..%d: %w", next, hi, err)
		}
		for _, e := range entries {
			if err := fn(e); err != nil {
				return err
			}
		}
		next = hi + 1
	}
	return nil
}

// FirstAppendedSince returns the smallest sequence appended at or after t (found false when
// none was). Only the partitions from t's month on are read.
func (s *Store) FirstAppendedSince(ctx context.Context, t time.Time) (uint64, bool, error) {
	var seq *int64
	if err := s.pool.QueryRow(ctx, `SELECT min(sequence) FROM entries WHERE appended_at >= $1`, t).Scan(&seq); err != nil {
		return 0, false, fmt.Errorf("read entries since a time: %w", err)
	}
	if seq == nil {
		return 0, false, nil
	}
	return fromPgBigint(*seq), true, nil
}

// Query returns one page of entries matching f.
func (s *Store) Query(ctx context.Context, f domain.Filter, p domain.Page) ([]domain.Entry, error) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if f.ActorSubject != "" {
		where = append(where, "actor_subject = "+arg(f.ActorSubject))
	}
	if f.PatientID != "" {
		where = append(where, "patient_id = "+arg(f.PatientID))
	}
	if f.RecordType != 0 {
		where = append(where, "record_type = "+arg(domain.EnumCode(f.RecordType)))
	}
	if f.RecordID != "" {
		where = append(where, "record_id = "+arg(f.RecordID))
	}
	if len(f.Actions) > 0 {
		where = append(where, "action = ANY("+arg(enumInts(f.Actions))+")")
	}
	if len(f.Outcomes) > 0 {
		where = append(where, "outcome = ANY("+arg(enumInts(f.Outcomes))+")")
	}
	if len(f.ExcludeRoles) > 0 {
		where = append(where, "NOT (actor_role = ANY("+arg(enumInts(f.ExcludeRoles))+"))")
	}
	if len(f.ExcludeSensitivity) > 0 {
		where = append(where, "NOT (sensitivity = ANY("+arg(enumInts(f.ExcludeSensitivity))+"))")
	}
	if !f.Start.IsZero() {
		where = append(where, "occurred_at >= "+arg(f.Start))
	}
	if !f.End.IsZero() {
		where = append(where, "occurred_at < "+arg(f.End))
	}
	if f.FromSeq > 0 {
		where = append(where, "sequence >= "+arg(pgBigint(f.FromSeq)))
	}
	if f.ToSeq > 0 {
		where = append(where, "sequence <= "+arg(pgBigint(f.ToSeq)))
	}
	if f.MinSeverity > 0 {
		where = append(where, "severity >= "+arg(domain.EnumCode(f.MinSeverity)))
	}
	order := "ASC"
	if p.Desc {
		order = "DESC"
		if p.After > 0 {
			where = append(where, "sequence < "+arg(pgBigint(p.After)))
		}
	} else if p.After > 0 {
		where = append(where, "sequence > "+arg(pgBigint(p.After)))
	}
	sql := selectEntry
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sql += " ORDER BY sequence " + order + " LIMIT " + arg(p.Limit)
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("query entries: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanEntry)
	if err != nil {
		return nil, fmt.Errorf("query entries: %w", err)
	}
	return out, nil
}

// enumInts are enum values as the smallint columns keep them.
func enumInts[E ~int32](vs []E) []int16 {
	out := make([]int16, len(vs))
	for i, v := range vs {
		out[i] = domain.EnumCode(v)
	}
	return out
}

// NodeHashes implements domain.Log: one query per subtree, over at most 2^TreeNodeStride kept
// hashes.
func (s *Store) NodeHashes(ctx context.Context, ids []compact.NodeID) ([][]byte, error) {
	out := make([][]byte, len(ids))
	for i, id := range ids {
		h, err := s.nodeHash(ctx, id.Level, id.Index)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

func (s *Store) nodeHash(ctx context.Context, level uint, index uint64) ([]byte, error) {
	kept, lo, width := domain.SubtreeSpan(level, index)
	var rows pgx.Rows
	var err error
	if kept == 0 {
		rows, err = s.pool.Query(ctx, `SELECT leaf_hash FROM entries WHERE sequence BETWEEN $1 AND $2 ORDER BY sequence`,
			pgBigint(lo+1), pgBigint(lo+width))
	} else {
		rows, err = s.pool.Query(ctx, `SELECT hash FROM tree_nodes WHERE level = $1 AND idx BETWEEN $2 AND $3 ORDER BY idx`,
			pgSmallint(kept), pgBigint(lo), pgBigint(lo+width-1))
	}
	if err != nil {
		return nil, fmt.Errorf("read tree hashes: %w", err)
	}
	hashes, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, fmt.Errorf("read tree hashes: %w", err)
	}
	if uint64(len(hashes)) != width {
		return nil, domain.Pruned("node (%d, %d) needs %d hashes, %d stored", level, index, width, len(hashes))
	}
	return tlog.PerfectRoot(hashes)
}

// LeafHash returns the stored leaf hash of sequence.
func (s *Store) LeafHash(ctx context.Context, seq uint64) ([]byte, error) {
	var h []byte
	err := s.pool.QueryRow(ctx, `SELECT leaf_hash FROM entries WHERE sequence = $1`, pgBigint(seq)).Scan(&h)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, domain.Pruned("sequence %d", seq)
	}
	if err != nil {
		return nil, fmt.Errorf("read leaf %d: %w", seq, err)
	}
	return h, nil
}

// SaveCheckpoint stores cp; saving a checkpoint of an existing size again is a no-op.
func (s *Store) SaveCheckpoint(ctx context.Context, cp domain.Checkpoint) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO checkpoints (tree_size, root_hash, signature, key_id, signed_body, created_at)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tree_size) DO NOTHING`,
		pgBigint(cp.TreeSize), cp.Root, cp.Signature, cp.KeyID, cp.SignedBody, cp.CreatedAt)
	if err != nil {
		return fmt.Errorf("save checkpoint %d: %w", cp.TreeSize, err)
	}
	return nil
}

const selectCheckpoint = `SELECT tree_size, root_hash, signature, key_id, signed_body, created_at FROM checkpoints`

func scanCheckpoint(row pgx.CollectableRow) (domain.Checkpoint, error) {
	var cp domain.Checkpoint
	var size int64
	err := row.Scan(&size, &cp.Root, &cp.Signature, &cp.KeyID, &cp.SignedBody, &cp.CreatedAt)
	cp.TreeSize = fromPgBigint(size)
	return cp, err
}

// Checkpoints returns checkpoints with from <= tree_size <= to, smallest first.
func (s *Store) Checkpoints(ctx context.Context, from, to uint64) ([]domain.Checkpoint, error) {
	rows, err := s.pool.Query(ctx, selectCheckpoint+` WHERE tree_size BETWEEN $1 AND $2 ORDER BY tree_size`, pgBigint(from), pgBigint(to))
	if err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanCheckpoint)
	if err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	return out, nil
}

// LatestCheckpoint returns the largest checkpoint, or domain.ErrNoCheckpoint.
func (s *Store) LatestCheckpoint(ctx context.Context) (domain.Checkpoint, error) {
	rows, err := s.pool.Query(ctx, selectCheckpoint+` ORDER BY tree_size DESC LIMIT 1`)
	if err != nil {
		return domain.Checkpoint{}, fmt.Errorf("read checkpoint: %w", err)
	}
	cps, err := pgx.CollectRows(rows, scanCheckpoint)
	if err != nil {
		return domain.Checkpoint{}, fmt.Errorf("read checkpoint: %w", err)
	}
	if len(cps) == 0 {
		return domain.Checkpoint{}, domain.ErrNoCheckpoint
	}
	return cps[0], nil
}

// DropExpired drops every monthly partition that ends at or before cutoff, oldest first, with
// the event ids pointing into it, and moves the log's first sequence past it. It returns the
// partitions dropped. Dropping whole partitions keeps the dropped sequences a prefix of the log.
func (s *Store) DropExpired(ctx context.Context, cutoff time.Time) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT c.relname FROM pg_inherits i
		JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
		WHERE p.relname = 'entries' AND p.relnamespace = current_schema()::regnamespace ORDER BY c.relname`)
	if err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	slices.Sort(names)
	var dropped []string
	for _, name := range names {
		var y, m int
		if _, err := fmt.Sscanf(name, "entries_p%04d%02d", &y, &m); err != nil {
			continue
		}
		end := time.Date(y, time.Month(m), 1, 0, 0, 0, 0, time.UTC).AddDate(0, 1, 0)
		if end.After(cutoff) {
			break
		}
		err := pg.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT 1 FROM log_head FOR UPDATE`); err != nil {
				return err
			}
			var maxSeq *int64
			if err := tx.QueryRow(ctx, `SELECT max(sequence) FROM `+pgx.Identifier{name}.Sanitize()).Scan(&maxSeq); err != nil {
				return err
			}
			if maxSeq != nil {
				if _, err := tx.Exec(ctx, `SET LOCAL securemsg.audit_retention = 'on'`); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `DELETE FROM event_ids WHERE sequence <= $1`, *maxSeq); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `UPDATE log_head SET first_sequence = greatest(first_sequence, $1 + 1)`, *maxSeq); err != nil {
					return err
				}
			}
			_, err := tx.Exec(ctx, `DROP TABLE `+pgx.Identifier{name}.Sanitize())
			return err
		})
		if err != nil {
			return dropped, fmt.Errorf("drop partition %s: %w", name, err)
		}
		dropped = append(dropped, name)
	}
	return dropped, nil
}

// HasEvents reports which of ids the log holds.
func (s *Store) HasEvents(ctx context.Context, ids []string) (map[string]bool, error) {
	rows, err := s.pool.Query(ctx, `SELECT event_id FROM event_ids WHERE event_id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("look up event ids: %w", err)
	}
	have, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("look up event ids: %w", err)
	}
	out := make(map[string]bool, len(have))
	for _, id := range have {
		out[id] = true
	}
	return out, nil
}

// ReconcileMark returns the producer's confirmed outbox seq (0 when none).
func (s *Store) ReconcileMark(ctx context.Context, producer string) (int64, error) {
	var seq int64
	err := s.pool.QueryRow(ctx, `SELECT outbox_seq FROM reconcile_marks WHERE producer = $1`, producer).Scan(&seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read reconcile mark: %w", err)
	}
	return seq, nil
}

// WriteEvents implements domain.Outbox: one insert, committed when it returns.
func (s *Store) WriteEvents(ctx context.Context, events ...outbox.Event) error {
	rows, err := outbox.NewRows(ctx, events...)
	if err != nil {
		return err
	}
	return rows.Insert(ctx, s.pool)
}

// SetReconcileMark raises the producer's confirmed outbox seq (never lowers it).
func (s *Store) SetReconcileMark(ctx context.Context, producer string, seq int64) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO reconcile_marks (producer, outbox_seq) VALUES ($1, $2)
		ON CONFLICT (producer) DO UPDATE SET outbox_seq = greatest(reconcile_marks.outbox_seq, excluded.outbox_seq), updated_at = now()`,
		producer, seq)
	if err != nil {
		return fmt.Errorf("write reconcile mark: %w", err)
	}
	return nil
}

package domain

import (
	"context"
	"time"

	"github.com/transparency-dev/merkle/compact"

	"github.com/securemsg/securemsg/services/internal/platform/outbox"
)

// The repositories the use cases need. adapters/pgstore implements them on Postgres (schema
// `audit`), adapters/memstore in memory for tests; adapters/repotest is the contract suite both
// pass. No method exposes a transaction: where a use case's writes must commit together with an
// append, the repository takes them as values (Log.Append's effects).

// Log is the append-only, hash-chained log with its Merkle tree, partitioned by the month of
// appending.
type Log interface {
	// Head reads the log's end without locking it.
	Head(ctx context.Context) (Head, error)
	// Append adds recs in one commit, in the order given, as appended at now: records whose
	// event id the log already holds, or that repeat within recs, are skipped; the others take
	// the next sequences and extend the chain and the tree (Head.Extend). Appends take turns
	// (one writer at a time, across replicas), so sequences have no gaps and the chain no forks.
	// When any entry was appended, effects (if not nil) is called with them before the commit;
	// the events it returns are written to the outbox and its alerts stored in the same commit,
	// and an error from it rolls the append back. Append fails when the month of now has no partition
	// (EnsurePartitions). It returns the entries appended.
	Append(ctx context.Context, recs []Incoming, now time.Time, effects func(appended []Entry) (AppendEffects, error)) ([]Entry, error)
	// Range calls fn for the stored entries with from <= sequence <= to, in sequence order,
	// with bounded memory; sequences retention dropped are not seen. An error from fn stops
	// the walk and is returned.
	Range(ctx context.Context, from, to uint64, fn func(Entry) error) error
	// FirstAppendedSince returns the smallest sequence appended at or after t (found false when
	// none was).
	FirstAppendedSince(ctx context.Context, t time.Time) (seq uint64, found bool, err error)
	// Query returns one page of the entries matching f, in sequence order (p.Desc: newest
	// first), after p.After, at most p.Limit.
	Query(ctx context.Context, f Filter, p Page) ([]Entry, error)
	// NodeHashes returns the hash of each perfect subtree ids names, from the kept leaves and
	// tree nodes (SubtreeSpan). A subtree whose kept hashes are not all there — leaves dropped
	// by retention, or beyond the log's end — is refused with Pruned.
	NodeHashes(ctx context.Context, ids []compact.NodeID) ([][]byte, error)
	// LeafHash returns the stored leaf hash of seq, or Pruned when it is not stored.
	LeafHash(ctx context.Context, seq uint64) ([]byte, error)
	// EnsurePartitions makes the monthly partitions from the month of now to ahead months
	// later exist. Safe to call concurrently and repeatedly.
	EnsurePartitions(ctx context.Context, now time.Time, ahead int) error
	// DropExpired drops, oldest first, every monthly partition that ends at or before cutoff,
	// with the event ids of its entries, and moves Head.FirstSequence past its entries; the
	// tree nodes stay. Dropping whole months keeps the dropped sequences a prefix of the log. It
	// returns the names of the partitions dropped ("entries_pYYYYMM"), also when it fails part
	// way.
	DropExpired(ctx context.Context, cutoff time.Time) ([]string, error)
}

// Alerts are the anomaly alerts Append stored, for auditors to list and acknowledge.
type Alerts interface {
	// ListAlerts returns the alerts matching f, newest first (RaisedAt, then ID, descending),
	// after the cursor when it is set, at most limit.
	ListAlerts(ctx context.Context, f AlertFilter, after *AlertCursor, limit int) ([]RaisedAlert, error)
	// AcknowledgeAlert marks the alert acknowledged by by at at with note, and writes the events
	// audit returns for it in the same commit. An alert already acknowledged is returned as it
	// is (changed false; audit is not called). An unknown id is ErrAlertNotFound.
	AcknowledgeAlert(ctx context.Context, id, by, note string, at time.Time, audit func(RaisedAlert) ([]outbox.Event, error)) (_ RaisedAlert, changed bool, _ error)
}

// Checkpoints stores the signed checkpoints.
type Checkpoints interface {
	// SaveCheckpoint stores cp; saving a checkpoint of a size already stored is a no-op.
	SaveCheckpoint(ctx context.Context, cp Checkpoint) error
	// Checkpoints returns the checkpoints with from <= tree size <= to, smallest first.
	Checkpoints(ctx context.Context, from, to uint64) ([]Checkpoint, error)
	// LatestCheckpoint returns the largest checkpoint, or ErrNoCheckpoint.
	LatestCheckpoint(ctx context.Context) (Checkpoint, error)
}

// ReconcileMarks answers reconciliation: which event ids the log holds, and each producer's
// high-water mark (see auditlog.Reconciler).
type ReconcileMarks interface {
	// HasEvents reports which of ids the log holds (ids retention dropped are not held).
	HasEvents(ctx context.Context, ids []string) (map[string]bool, error)
	// ReconcileMark returns the producer's confirmed outbox seq (0 when none).
	ReconcileMark(ctx context.Context, producer string) (int64, error)
	// SetReconcileMark raises the producer's confirmed outbox seq; it never lowers it.
	SetReconcileMark(ctx context.Context, producer string, seq int64) error
}

// Outbox writes events to the service's transactional outbox in a commit of their own: the
// audit records of the service's own reads of the log, which must exist before the data is
// returned.
type Outbox interface {
	WriteEvents(ctx context.Context, events ...outbox.Event) error
}

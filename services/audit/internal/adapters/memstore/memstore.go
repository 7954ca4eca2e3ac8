// Package memstore is an in-memory implementation of every audit repository (domain.Log,
// domain.Checkpoints, domain.ReconcileMarks, domain.Outbox), for tests of the use cases that
// need no Postgres. It keeps the rules the Postgres store keeps — monthly partitions that must
// exist before an append, whole-month retention that leaves the kept tree nodes, one writer at a
// time, effects that commit or roll back with their append, outbox events validated as the
// outbox validates them — and adapters/repotest holds both stores to the same contract.
package memstore

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/transparency-dev/merkle/compact"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/audit/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog/tlog"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
)

// Store holds one audit log in memory. It is safe for concurrent use.
type Store struct {
	mu          sync.Mutex
	head        domain.Head
	entries     []domain.Entry // stored entries, in sequence order
	eventIDs    map[string]uint64
	nodes       map[compact.NodeID][]byte // the kept tree nodes (domain.KeepsTreeNode)
	partitions  map[string]bool
	checkpoints map[uint64]domain.Checkpoint
	marks       map[string]int64
	outbox      []outbox.Event
	outboxIDs   map[string]bool
	alerts      map[string]domain.RaisedAlert
}

var (
	_ domain.Log            = (*Store)(nil)
	_ domain.Checkpoints    = (*Store)(nil)
	_ domain.ReconcileMarks = (*Store)(nil)
	_ domain.Outbox         = (*Store)(nil)
)

// New returns an empty log without partitions (call EnsurePartitions, as the service does).
func New() *Store {
	return &Store{head: domain.EmptyHead(), eventIDs: map[string]uint64{}, nodes: map[compact.NodeID][]byte{},
		partitions: map[string]bool{}, checkpoints: map[uint64]domain.Checkpoint{}, marks: map[string]int64{}, outboxIDs: map[string]bool{},
		alerts: map[string]domain.RaisedAlert{}}
}

// Events returns the events written to the outbox so far, in order: those of Append's effects
// and of WriteEvents.
func (s *Store) Events() []outbox.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.outbox)
}

// partitionName names the partition of the month holding t, as the Postgres store does.
func partitionName(t time.Time) string {
	t = t.UTC()
	return fmt.Sprintf("entries_p%04d%02d", t.Year(), int(t.Month()))
}

// Head implements domain.Log.
func (s *Store) Head(context.Context) (domain.Head, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.head.Clone(), nil
}

// Append implements domain.Log.
func (s *Store) Append(_ context.Context, recs []domain.Incoming, now time.Time, effects func([]domain.Entry) (domain.AppendEffects, error)) ([]domain.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.partitions[partitionName(now)] {
		return nil, fmt.Errorf("memstore: no partition of entries for %s", partitionName(now))
	}
	seen := map[string]bool{}
	for _, r := range recs {
		if _, ok := s.eventIDs[r.EventID]; ok {
			seen[r.EventID] = true
		}
	}
	head := s.head.Clone()
	nodes := map[compact.NodeID][]byte{}
	out := head.Extend(recs, seen, now, func(level uint, index uint64, hash []byte) {
		if domain.KeepsTreeNode(level) {
			nodes[compact.NewNodeID(level, index)] = hash
		}
	})
	if len(out) == 0 {
		return out, nil
	}
	var events []outbox.Event
	var alerts []domain.RaisedAlert
	if effects != nil {
		eff, err := effects(out)
		if err != nil {
			return nil, err
		}
		if events, err = s.checkEvents(eff.Events); err != nil {
			return nil, err
		}
		for _, a := range eff.Alerts {
			if _, dup := s.alerts[a.ID]; dup {
				return nil, fmt.Errorf("memstore: alert %s stored twice", a.ID)
			}
			a.WindowStart, a.WindowEnd, a.RaisedAt = micro(a.WindowStart), micro(a.WindowEnd), micro(a.RaisedAt)
			alerts = append(alerts, a)
		}
	}
	for _, a := range alerts {
		s.alerts[a.ID] = a
	}
	s.head = head
	s.entries = append(s.entries, out...)
	for _, e := range out {
		s.eventIDs[e.Projection.EventID] = e.Sequence
	}
	maps.Copy(s.nodes, nodes)
	s.addEvents(events)
	return out, nil
}

// Range implements domain.Log. fn runs without the store's lock, so it may call the store.
func (s *Store) Range(_ context.Context, from, to uint64, fn func(domain.Entry) error) error {
	s.mu.Lock()
	var in []domain.Entry
	for _, e := range s.entries {
		if e.Sequence >= from && e.Sequence <= to {
			in = append(in, e)
		}
	}
	s.mu.Unlock()
	for _, e := range in {
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// FirstAppendedSince implements domain.Log.
func (s *Store) FirstAppendedSince(_ context.Context, t time.Time) (uint64, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.entries {
		if !e.AppendedAt.Before(t) {
			return e.Sequence, true, nil
		}
	}
	return 0, false, nil
}

// Query implements domain.Log.
func (s *Store) Query(_ context.Context, f domain.Filter, p domain.Page) ([]domain.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := slices.Clone(s.entries)
	if p.Desc {
		slices.Reverse(in)
	}
	var out []domain.Entry
	for _, e := range in {
		if len(out) >= p.Limit {
			break
		}
		after := p.After == 0 || (!p.Desc && e.Sequence > p.After) || (p.Desc && e.Sequence < p.After)
		if after && matches(f, e) {
			out = append(out, e)
		}
	}
	return out, nil
}

// matches is Filter's meaning, as the Postgres store's WHERE clause has it.
func matches(f domain.Filter, e domain.Entry) bool {
	p := e.Projection
	switch {
	case f.ActorSubject != "" && p.ActorSubject != f.ActorSubject,
		f.PatientID != "" && p.PatientID != f.PatientID,
		f.RecordType != 0 && p.RecordType != domain.EnumCode(f.RecordType),
		f.RecordID != "" && p.RecordID != f.RecordID,
		len(f.Actions) > 0 && !slices.Contains(f.Actions, eventsv1.Action(p.Action)),
		len(f.Outcomes) > 0 && !slices.Contains(f.Outcomes, eventsv1.Outcome(p.Outcome)),
		slices.Contains(f.ExcludeRoles, commonv1.Role(p.ActorRole)),
		slices.Contains(f.ExcludeSensitivity, commonv1.Sensitivity(p.Sensitivity)),
		!f.Start.IsZero() && p.OccurredAt.Before(f.Start),
		!f.End.IsZero() && !p.OccurredAt.Before(f.End),
		f.FromSeq > 0 && e.Sequence < f.FromSeq,
		f.ToSeq > 0 && e.Sequence > f.ToSeq,
		f.MinSeverity > 0 && p.Severity < domain.EnumCode(f.MinSeverity):
		return false
	}
	return true
}

// NodeHashes implements domain.Log from the stored leaves and the kept tree nodes.
func (s *Store) NodeHashes(_ context.Context, ids []compact.NodeID) ([][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([][]byte, len(ids))
	for i, id := range ids {
		kept, lo, width := domain.SubtreeSpan(id.Level, id.Index)
		var hashes [][]byte
		for j := lo; j < lo+width; j++ {
			if kept == 0 {
				if e, ok := s.entry(j + 1); ok {
					hashes = append(hashes, e.Leaf)
				}
			} else if h, ok := s.nodes[compact.NewNodeID(kept, j)]; ok {
				hashes = append(hashes, h)
			}
		}
		if uint64(len(hashes)) != width {
			return nil, domain.Pruned("node (%d, %d) needs %d hashes, %d stored", id.Level, id.Index, width, len(hashes))
		}
		h, err := tlog.PerfectRoot(hashes)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

// LeafHash implements domain.Log.
func (s *Store) LeafHash(_ context.Context, seq uint64) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entry(seq)
	if !ok {
		return nil, domain.Pruned("sequence %d", seq)
	}
	return e.Leaf, nil
}

// entry finds the stored entry of seq (the caller holds the lock).
func (s *Store) entry(seq uint64) (domain.Entry, bool) {
	i, ok := slices.BinarySearchFunc(s.entries, seq, func(e domain.Entry, seq uint64) int { return cmp.Compare(e.Sequence, seq) })
	if !ok {
		return domain.Entry{}, false
	}
	return s.entries[i], true
}

// EnsurePartitions implements domain.Log.
func (s *Store) EnsurePartitions(_ context.Context, now time.Time, ahead int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := now.UTC()
	m = time.Date(m.Year(), m.Month(), 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i <= ahead; i++ {
		s.partitions[partitionName(m.AddDate(0, i, 0))] = true
	}
	return nil
}

// DropExpired implements domain.Log.
func (s *Store) DropExpired(_ context.Context, cutoff time.Time) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var dropped []string
	for _, name := range slices.Sorted(maps.Keys(s.partitions)) {
		var y, m int
		if _, err := fmt.Sscanf(name, "entries_p%04d%02d", &y, &m); err != nil {
			continue
		}
		if time.Date(y, time.Month(m), 1, 0, 0, 0, 0, time.UTC).AddDate(0, 1, 0).After(cutoff) {
			break
		}
		s.entries = slices.DeleteFunc(s.entries, func(e domain.Entry) bool {
			if partitionName(e.AppendedAt) != name {
				return false
			}
			delete(s.eventIDs, e.Projection.EventID)
			s.head.FirstSequence = max(s.head.FirstSequence, e.Sequence+1)
			return true
		})
		delete(s.partitions, name)
		dropped = append(dropped, name)
	}
	return dropped, nil
}

// SaveCheckpoint implements domain.Checkpoints.
func (s *Store) SaveCheckpoint(_ context.Context, cp domain.Checkpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.checkpoints[cp.TreeSize]; !ok {
		s.checkpoints[cp.TreeSize] = cp
	}
	return nil
}

// Checkpoints implements domain.Checkpoints.
func (s *Store) Checkpoints(_ context.Context, from, to uint64) ([]domain.Checkpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []domain.Checkpoint
	for _, size := range slices.Sorted(maps.Keys(s.checkpoints)) {
		if size >= from && size <= to {
			out = append(out, s.checkpoints[size])
		}
	}
	return out, nil
}

// LatestCheckpoint implements domain.Checkpoints.
func (s *Store) LatestCheckpoint(context.Context) (domain.Checkpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.checkpoints) == 0 {
		return domain.Checkpoint{}, domain.ErrNoCheckpoint
	}
	return s.checkpoints[slices.Max(slices.Collect(maps.Keys(s.checkpoints)))], nil
}

// HasEvents implements domain.ReconcileMarks.
func (s *Store) HasEvents(_ context.Context, ids []string) (map[string]bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]bool{}
	for _, id := range ids {
		if _, ok := s.eventIDs[id]; ok {
			out[id] = true
		}
	}
	return out, nil
}

// ReconcileMark implements domain.ReconcileMarks.
func (s *Store) ReconcileMark(_ context.Context, producer string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.marks[producer], nil
}

// SetReconcileMark implements domain.ReconcileMarks.
func (s *Store) SetReconcileMark(_ context.Context, producer string, seq int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.marks[producer] = max(s.marks[producer], seq)
	return nil
}

// WriteEvents implements domain.Outbox.
func (s *Store) WriteEvents(_ context.Context, events ...outbox.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	events, err := s.checkEvents(events)
	if err != nil {
		return err
	}
	s.addEvents(events)
	return nil
}

// checkEvents refuses what the outbox table would: an event outbox.NewRows rejects, or an id
// already written. Missing ids are filled in, as the outbox does.
func (s *Store) checkEvents(events []outbox.Event) ([]outbox.Event, error) {
	if _, err := outbox.NewRows(context.Background(), events...); err != nil {
		return nil, err
	}
	events = slices.Clone(events)
	ids := map[string]bool{}
	for i := range events {
		if events[i].ID == "" {
			events[i].ID = outbox.NewID()
		}
		if s.outboxIDs[events[i].ID] || ids[events[i].ID] {
			return nil, fmt.Errorf("memstore: outbox event id %s written twice", events[i].ID)
		}
		ids[events[i].ID] = true
	}
	return events, nil
}

func (s *Store) addEvents(events []outbox.Event) {
	for _, e := range events {
		s.outboxIDs[e.ID] = true
	}
	s.outbox = append(s.outbox, events...)
}

package repotest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/compact"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/audit/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog/tlog"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
)

// RunLog holds an implementation of domain.Log to its contract; newLog returns a fresh, empty
// log for each subtest.
func RunLog(t *testing.T, newLog func(t *testing.T) LogUnderTest) {
	tests := []struct {
		name string
		run  func(t *testing.T, u LogUnderTest)
	}{
		{"an empty log", testEmptyLog},
		{"an append needs its month's partition", testAppendNeedsPartition},
		{"appends chain, skip known event ids and store what they return", testAppendChains},
		{"effects commit and roll back with their append", testAppendEffects},
		{"range walks stored entries in order", testRange},
		{"first appended since", testFirstAppendedSince},
		{"query filters and pages", testQuery},
		{"node hashes rebuild the tree at any size", testNodeHashes},
		{"retention drops whole months and keeps tree nodes", testRetention},
		{"appends take turns", testConcurrentAppends},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newLog(t))
		})
	}
}

func testEmptyLog(t *testing.T, u LogUnderTest) {
	ctx := t.Context()
	head, err := u.Log.Head(ctx)
	if err != nil {
		t.Fatalf("Head() error = %v", err)
	}
	if head.Size != 0 || !bytes.Equal(head.Chain, tlog.ZeroHash()) || head.Tree.Size() != 0 || head.FirstSequence != 1 {
		t.Errorf("Head() of an empty log = size %d chain %x tree %d first %d; want 0, zero hash, 0, 1", head.Size, head.Chain, head.Tree.Size(), head.FirstSequence)
	}
	if _, found, err := u.Log.FirstAppendedSince(ctx, time.Time{}); err != nil || found {
		t.Errorf("FirstAppendedSince() of an empty log = found %v, %v; want none", found, err)
	}
	if got, err := u.Log.Query(ctx, domain.Filter{}, domain.Page{Limit: 10}); err != nil || len(got) != 0 {
		t.Errorf("Query() of an empty log = %d entries, %v; want none", len(got), err)
	}
	if _, err := u.Log.LeafHash(ctx, 1); !domain.IsPruned(err) {
		t.Errorf("LeafHash(1) of an empty log error = %v, want Pruned", err)
	}
	if _, err := u.Log.NodeHashes(ctx, tlog.CompactNodes(1)); !domain.IsPruned(err) {
		t.Errorf("NodeHashes(leaf 0) of an empty log error = %v, want Pruned", err)
	}
}

func testAppendNeedsPartition(t *testing.T, u LogUnderTest) {
	ctx := t.Context()
	if _, err := u.Log.Append(ctx, Records(t, 0, 3), time.Now(), nil); err == nil {
		t.Error("Append() without the month's partition = nil error, want an error")
	}
	if head, _ := u.Log.Head(ctx); head.Size != 0 {
		t.Errorf("Head().Size after a refused append = %d, want 0", head.Size)
	}
}

func testAppendChains(t *testing.T, u LogUnderTest) {
	ctx := t.Context()
	now := time.Now()
	recs := Records(t, 0, 10)
	first := appendAll(t, u.Log, now, recs[:6])
	again := append(slices.Clone(recs[4:]), recs[4], recs[9]) // known ids and repeats within the batch
	second, err := u.Log.Append(ctx, again, now, nil)
	if err != nil {
		t.Fatalf("Append() error = %v", err)
	}
	if len(first) != 6 || len(second) != 4 {
		t.Fatalf("Append() = %d then %d entries, want 6 then 4", len(first), len(second))
	}
	appended := append(first, second...)
	fresh := tlog.NewTree()
	prev := tlog.ZeroHash()
	for i, e := range appended {
		in := recs[i]
		fresh.Append(tlog.LeafHash(in.Bytes), nil)
		switch {
		case e.Sequence != uint64(i+1):
			t.Errorf("entry %d has sequence %d", i+1, e.Sequence)
		case !bytes.Equal(e.Bytes, in.Bytes) || !bytes.Equal(e.Leaf, tlog.LeafHash(in.Bytes)):
			t.Errorf("entry %d: bytes or leaf hash are not the record's", i+1)
		case !bytes.Equal(e.PrevChain, prev) || !bytes.Equal(e.Chain, tlog.ChainHash(prev, e.Leaf)):
			t.Errorf("entry %d: chain does not link to the entry before", i+1)
		case !e.Projection.Equal(domain.Project(in.Record)):
			t.Errorf("entry %d: projection %v, want %v", i+1, e.Projection, domain.Project(in.Record))
		case !e.AppendedAt.Equal(now.Truncate(time.Microsecond)):
			t.Errorf("entry %d appended at %v, want %v", i+1, e.AppendedAt, now.Truncate(time.Microsecond))
		}
		prev = e.Chain
	}
	head, err := u.Log.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if head.Size != 10 || !bytes.Equal(head.Chain, prev) || !bytes.Equal(head.Tree.Root(), fresh.Root()) {
		t.Errorf("Head() = size %d chain %x root %x; want 10, %x, %x", head.Size, head.Chain, head.Tree.Root(), prev, fresh.Root())
	}
	stored := rangeAll(t, u.Log, 1, 10)
	if len(stored) != 10 {
		t.Fatalf("Range(1, 10) = %d entries, want 10", len(stored))
	}
	for i, e := range stored {
		if !sameEntry(e, appended[i]) {
			t.Errorf("Range entry %d = %+v, want what Append returned %+v", i+1, e, appended[i])
		}
	}
	if got, err := u.Log.Append(ctx, recs[:3], now, nil); err != nil || len(got) != 0 {
		t.Errorf("Append(only known ids) = %d entries, %v; want none", len(got), err)
	}
}

func testAppendEffects(t *testing.T, u LogUnderTest) {
	ctx := t.Context()
	now := time.Now()
	if err := u.Log.EnsurePartitions(ctx, now, 0); err != nil {
		t.Fatal(err)
	}
	recs := Records(t, 0, 5)
	alert := event("securemsg.events.anomaly.raised", "alert")
	var saw []uint64
	got, err := u.Log.Append(ctx, recs, now, func(appended []domain.Entry) (domain.AppendEffects, error) {
		for _, e := range appended {
			saw = append(saw, e.Sequence)
		}
		return domain.AppendEffects{Events: []outbox.Event{alert}}, nil
	})
	if err != nil || len(got) != 5 {
		t.Fatalf("Append() = %d entries, %v; want 5", len(got), err)
	}
	if fmt.Sprint(saw) != "[1 2 3 4 5]" {
		t.Errorf("effects saw sequences %v, want [1 2 3 4 5]", saw)
	}
	if w := u.Written(t); len(w) != 1 || w[0].ID != alert.ID || w[0].Subject != alert.Subject || !bytes.Equal(w[0].Payload, alert.Payload) {
		t.Errorf("outbox after Append = %v, want the effect's event", w)
	}

	// A failing effect, or an event the outbox refuses, rolls the whole append back.
	failure := errors.New("effect failed")
	more := Records(t, 5, 3)
	for _, effects := range []func([]domain.Entry) (domain.AppendEffects, error){
		func([]domain.Entry) (domain.AppendEffects, error) { return domain.AppendEffects{}, failure },
		func([]domain.Entry) (domain.AppendEffects, error) {
			return domain.AppendEffects{Events: []outbox.Event{event("bad subject", "x")}}, nil
		},
	} {
		if _, err := u.Log.Append(ctx, more, now, effects); err == nil {
			t.Error("Append() with a failing effect = nil error, want the failure")
		}
		if head, _ := u.Log.Head(ctx); head.Size != 5 {
			t.Errorf("Head().Size after a rolled-back append = %d, want 5", head.Size)
		}
		if n := len(u.Written(t)); n != 1 {
			t.Errorf("outbox after a rolled-back append holds %d events, want 1", n)
		}
	}
	if _, err := u.Log.Append(ctx, more, now, func([]domain.Entry) (domain.AppendEffects, error) { return domain.AppendEffects{}, failure }); !errors.Is(err, failure) {
		t.Errorf("Append() error = %v, want the effect's error", err)
	}
	// The rolled-back records' ids were not taken; effects are not called when nothing is new.
	if got, err := u.Log.Append(ctx, more, now, nil); err != nil || len(got) != 3 || got[0].Sequence != 6 {
		t.Fatalf("Append(after roll-backs) = %v, %v; want sequences 6..8", got, err)
	}
	called := false
	if _, err := u.Log.Append(ctx, more, now, func([]domain.Entry) (domain.AppendEffects, error) { called = true; return domain.AppendEffects{}, nil }); err != nil || called {
		t.Errorf("Append(only known ids) called effects %v (%v), want not called", called, err)
	}
}

func testRange(t *testing.T, u LogUnderTest) {
	appendAll(t, u.Log, time.Now(), Records(t, 0, 30))
	if got := sequences(rangeAll(t, u.Log, 5, 9)); fmt.Sprint(got) != "[5 6 7 8 9]" {
		t.Errorf("Range(5, 9) = %v", got)
	}
	if got := sequences(rangeAll(t, u.Log, 28, 100)); fmt.Sprint(got) != "[28 29 30]" {
		t.Errorf("Range(28, 100) = %v, want [28 29 30]", got)
	}
	stop := errors.New("stop")
	calls := 0
	err := u.Log.Range(t.Context(), 1, 30, func(domain.Entry) error {
		calls++
		if calls == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 3 {
		t.Errorf("Range() with fn failing at the third entry = %v after %d calls, want stop after 3", err, calls)
	}
}

func testFirstAppendedSince(t *testing.T, u LogUnderTest) {
	ctx := t.Context()
	earlier, later := time.Now().Add(-2*time.Hour), time.Now()
	appendAll(t, u.Log, earlier, Records(t, 0, 3))
	appendAll(t, u.Log, later, Records(t, 3, 2))
	tests := []struct {
		since     time.Time
		want      uint64
		wantFound bool
	}{
		{earlier.Add(-time.Minute), 1, true},
		{earlier.Truncate(time.Microsecond), 1, true},
		{earlier.Add(time.Minute), 4, true},
		{later.Add(time.Minute), 0, false},
	}
	for _, tt := range tests {
		got, found, err := u.Log.FirstAppendedSince(ctx, tt.since)
		if err != nil || got != tt.want || found != tt.wantFound {
			t.Errorf("FirstAppendedSince(%v) = %d, %v, %v; want %d, %v", tt.since, got, found, err, tt.want, tt.wantFound)
		}
	}
}

func testQuery(t *testing.T, u LogUnderTest) {
	recs := Records(t, 0, 30) // actors clin-0..2 (i%3), patients patient-0..4 (i%5)
	denied := withRecord(t, 1000, "proxy-9", "patient-1", func(r *eventsv1.AuditRecord) {
		r.Action, r.Outcome, r.Severity = eventsv1.Action_ACTION_DENY, eventsv1.Outcome_OUTCOME_DENIED, eventsv1.Severity_SEVERITY_MEDIUM
		r.Actor.Role = commonv1.Role_ROLE_PROXY
	})
	confidential := withRecord(t, 1001, "clin-9", "patient-9", func(r *eventsv1.AuditRecord) {
		r.Sensitivity = commonv1.Sensitivity_SENSITIVITY_ADOLESCENT_CONFIDENTIAL
	})
	appendAll(t, u.Log, time.Now(), append(recs, denied, confidential))
	at := func(sec int) time.Time { return Base.Add(time.Duration(sec) * time.Second) }
	tests := []struct {
		name   string
		filter domain.Filter
		want   int
	}{
		{"all", domain.Filter{}, 32},
		{"actor", domain.Filter{ActorSubject: "clin-1"}, 10},
		{"patient", domain.Filter{PatientID: "patient-2"}, 6},
		{"actor and patient", domain.Filter{ActorSubject: "clin-0", PatientID: "patient-0"}, 2},
		{"record", domain.Filter{RecordType: eventsv1.RecordType_RECORD_TYPE_THREAD, RecordID: "thread-7"}, 1},
		{"action", domain.Filter{Actions: []eventsv1.Action{eventsv1.Action_ACTION_DENY, eventsv1.Action_ACTION_EXPORT}}, 1},
		{"outcome", domain.Filter{Outcomes: []eventsv1.Outcome{eventsv1.Outcome_OUTCOME_SUCCESS}}, 31},
		{"time range", domain.Filter{Start: at(10), End: at(20)}, 10},
		{"sequence range", domain.Filter{FromSeq: 5, ToSeq: 14}, 10},
		{"severity", domain.Filter{MinSeverity: eventsv1.Severity_SEVERITY_MEDIUM}, 1},
		{"excluded roles", domain.Filter{ExcludeRoles: []commonv1.Role{commonv1.Role_ROLE_CLINICIAN}}, 1},
		{"excluded sensitivity", domain.Filter{ExcludeSensitivity: []commonv1.Sensitivity{commonv1.Sensitivity_SENSITIVITY_ADOLESCENT_CONFIDENTIAL}}, 31},
	}
	for _, tt := range tests {
		asc := queryAll(t, u.Log, tt.filter, false)
		desc := queryAll(t, u.Log, tt.filter, true)
		if len(asc) != tt.want || !slices.IsSorted(asc) {
			t.Errorf("Query(%s) oldest first = %v, want %d in order", tt.name, asc, tt.want)
		}
		slices.Reverse(desc)
		if !slices.Equal(asc, desc) {
			t.Errorf("Query(%s) newest first, reversed = %v, want %v", tt.name, desc, asc)
		}
	}
}

func testNodeHashes(t *testing.T, u LogUnderTest) {
	ctx := t.Context()
	entries := appendAll(t, u.Log, time.Now(), Records(t, 0, 600)) // crosses the kept level 8 twice
	for _, size := range []uint64{1, 2, 255, 256, 257, 300, 512, 513, 600} {
		hashes, err := u.Log.NodeHashes(ctx, tlog.CompactNodes(size))
		if err != nil {
			t.Fatalf("NodeHashes(compact range of %d) error = %v", size, err)
		}
		tree, err := tlog.TreeFromState(size, hashes)
		if err != nil {
			t.Fatal(err)
		}
		if want := treeOf(entries[:size]).Root(); !bytes.Equal(tree.Root(), want) {
			t.Errorf("tree of %d from NodeHashes has root %x, want %x", size, tree.Root(), want)
		}
	}
	head, _ := u.Log.Head(ctx)
	if !bytes.Equal(head.Tree.Root(), treeOf(entries).Root()) {
		t.Error("Head().Tree differs from the tree of the appended leaves")
	}
	for _, id := range []compact.NodeID{compact.NewNodeID(0, 600), compact.NewNodeID(8, 2), compact.NewNodeID(10, 0)} {
		if _, err := u.Log.NodeHashes(ctx, []compact.NodeID{id}); !domain.IsPruned(err) {
			t.Errorf("NodeHashes(%v beyond the end) error = %v, want Pruned", id, err)
		}
	}
	if h, err := u.Log.LeafHash(ctx, 600); err != nil || !bytes.Equal(h, entries[599].Leaf) {
		t.Errorf("LeafHash(600) = %x, %v; want %x", h, err, entries[599].Leaf)
	}
	if _, err := u.Log.LeafHash(ctx, 601); !domain.IsPruned(err) {
		t.Errorf("LeafHash(601) error = %v, want Pruned", err)
	}
}

func testRetention(t *testing.T, u LogUnderTest) {
	ctx := t.Context()
	now := time.Now()
	old := now.AddDate(0, -6, 0)
	oldEntries := appendAll(t, u.Log, old, Records(t, 0, 300))
	appendAll(t, u.Log, now, Records(t, 300, 10))
	dropped, err := u.Log.DropExpired(ctx, now.AddDate(0, 0, -90))
	if err != nil || fmt.Sprint(dropped) != fmt.Sprintf("[entries_p%04d%02d]", old.UTC().Year(), int(old.UTC().Month())) {
		t.Fatalf("DropExpired() = %v, %v; want the old month's partition", dropped, err)
	}
	head, _ := u.Log.Head(ctx)
	if head.FirstSequence != 301 || head.Size != 310 {
		t.Errorf("Head() after retention = first %d size %d, want 301, 310", head.FirstSequence, head.Size)
	}
	if got := sequences(rangeAll(t, u.Log, 1, 310)); len(got) != 10 || got[0] != 301 {
		t.Errorf("Range(1, 310) after retention = %v, want 301..310", got)
	}
	if _, err := u.Log.LeafHash(ctx, 1); !domain.IsPruned(err) {
		t.Errorf("LeafHash(1) after retention error = %v, want Pruned", err)
	}
	// The kept level-8 node over leaves 0..255 outlives them; a lower node does not.
	kept, err := u.Log.NodeHashes(ctx, []compact.NodeID{compact.NewNodeID(8, 0)})
	if want := treeOf(oldEntries[:256]).Root(); err != nil || !bytes.Equal(kept[0], want) {
		t.Errorf("NodeHashes(level 8, 0) after retention = %x, %v; want %x", kept, err, want)
	}
	if _, err := u.Log.NodeHashes(ctx, []compact.NodeID{compact.NewNodeID(4, 0)}); !domain.IsPruned(err) {
		t.Errorf("NodeHashes(level 4, 0) after retention error = %v, want Pruned", err)
	}
	if seq, found, err := u.Log.FirstAppendedSince(ctx, old.Add(-time.Hour)); err != nil || !found || seq != 301 {
		t.Errorf("FirstAppendedSince(before the dropped month) = %d, %v, %v; want 301", seq, found, err)
	}
	if again, err := u.Log.DropExpired(ctx, now.AddDate(0, 0, -90)); err != nil || len(again) != 0 {
		t.Errorf("DropExpired() again = %v, %v; want nothing", again, err)
	}
}

func testConcurrentAppends(t *testing.T, u LogUnderTest) {
	now := time.Now()
	if err := u.Log.EnsurePartitions(t.Context(), now, 0); err != nil {
		t.Fatal(err)
	}
	var batches [4][5][]domain.Incoming
	for w := range batches {
		for b := range batches[w] {
			batches[w][b] = Records(t, w*100+b*5, 5)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for _, writer := range batches {
		wg.Go(func() {
			for _, batch := range writer {
				if _, err := u.Log.Append(t.Context(), batch, now, nil); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Append() error = %v", err)
	}
	stored := rangeAll(t, u.Log, 1, 100)
	prev := tlog.ZeroHash()
	for i, e := range stored {
		if e.Sequence != uint64(i+1) || !bytes.Equal(e.PrevChain, prev) {
			t.Fatalf("after concurrent appends, entry %d has sequence %d and a chain that does not link", i+1, e.Sequence)
		}
		prev = e.Chain
	}
	if len(stored) != 100 {
		t.Errorf("after 20 concurrent appends of 5 the log holds %d entries, want 100", len(stored))
	}
}

// withRecord is Record changed by edit.
func withRecord(t testing.TB, i int, actor, patient string, edit func(*eventsv1.AuditRecord)) domain.Incoming {
	t.Helper()
	rec := Record(t, i, actor, patient).Record
	edit(rec)
	return parse(t, rec)
}

func rangeAll(t *testing.T, log domain.Log, from, to uint64) []domain.Entry {
	t.Helper()
	var out []domain.Entry
	if err := log.Range(t.Context(), from, to, func(e domain.Entry) error { out = append(out, e); return nil }); err != nil {
		t.Fatalf("Range(%d, %d) error = %v", from, to, err)
	}
	return out
}

// queryAll pages through a query, 7 at a time, and returns the sequences.
func queryAll(t *testing.T, log domain.Log, f domain.Filter, desc bool) []uint64 {
	t.Helper()
	var out []uint64
	var after uint64
	for {
		page, err := log.Query(t.Context(), f, domain.Page{After: after, Desc: desc, Limit: 7})
		if err != nil {
			t.Fatalf("Query() error = %v", err)
		}
		out = append(out, sequences(page)...)
		if len(page) < 7 {
			return out
		}
		after = page[len(page)-1].Sequence
	}
}

func sequences(es []domain.Entry) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Sequence
	}
	return out
}

func treeOf(es []domain.Entry) *tlog.Tree {
	tree := tlog.NewTree()
	for _, e := range es {
		tree.Append(e.Leaf, nil)
	}
	return tree
}

func sameEntry(a, b domain.Entry) bool {
	return a.Sequence == b.Sequence && a.AppendedAt.Equal(b.AppendedAt) && bytes.Equal(a.Bytes, b.Bytes) && bytes.Equal(a.Leaf, b.Leaf) &&
		bytes.Equal(a.PrevChain, b.PrevChain) && bytes.Equal(a.Chain, b.Chain) && a.Projection.Equal(b.Projection)
}

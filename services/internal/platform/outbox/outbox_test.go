package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/securemsg/securemsg/services/internal/platform/migrate"
	"github.com/securemsg/securemsg/services/internal/platform/natsx"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
	"github.com/securemsg/securemsg/services/internal/testkit"
)

// fixture is one test's outbox: a migrated schema, a pool on it, an embedded NATS with the
// suite's streams under unique names.
type fixture struct {
	pool    *pgxpool.Pool
	commits *outbox.CommitWatch
	schema  string
	nats    *testkit.NATSServer
	top     natsx.Topology
	reg     *prometheus.Registry
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	admin := testkit.Postgres(t)
	schema := testkit.NewSchema(t, admin)
	if err := migrate.Up(t.Context(), admin, schema, nil, nil); err != nil {
		t.Fatalf("migrate.Up() error = %v", err)
	}
	commits := outbox.NewCommitWatch()
	pool, err := pg.NewPool(t.Context(), pg.Config{
		URL: testkit.LoadStack().PostgresURL, Schema: schema, MaxConns: 8,
		ApplicationName: schema, // lets a test find this fixture's connections in pg_stat_activity
		Tracer:          commits,
	})
	if err != nil {
		t.Fatalf("pg.NewPool() error = %v", err)
	}
	t.Cleanup(pool.Close)

	ns := testkit.StartNATS(t, nil)
	nc := ns.Connect(t)
	names := testkit.UniqueNATSNames(t, nil)
	top := natsx.DefaultTopology()
	top.EventsStream, top.EventsSubject = names.StreamPrefix+"EVENTS", names.SubjectPrefix+".events"
	top.AuditStream, top.AuditSubject = names.StreamPrefix+"AUDIT", names.SubjectPrefix+".audit"
	js, err := natsx.JetStream(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := natsx.EnsureStreams(t.Context(), js, top); err != nil {
		t.Fatalf("EnsureStreams() error = %v", err)
	}
	return &fixture{pool: pool, commits: commits, schema: schema, nats: ns, top: top, reg: prometheus.NewRegistry()}
}

// startRelay runs a relay on its own NATS connection (as a separate replica would) until the
// test ends; the returned channel yields Run's result.
func (f *fixture) startRelay(t *testing.T, hook func() error) {
	t.Helper()
	r := outbox.NewRelay(f.pool, f.jetStream(t), outbox.Options{
		BatchSize:      50,
		PollInterval:   200 * time.Millisecond,
		PublishTimeout: time.Second,
		MinBackoff:     20 * time.Millisecond,
		MaxBackoff:     200 * time.Millisecond,
		Registerer:     f.reg,
		Commits:        f.commits,
	})
	if hook != nil {
		outbox.SetBeforeMark(r, hook)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := testkit.Receive(t, done, 10*time.Second, "Relay.Run() to return after cancel"); err != nil {
			t.Errorf("Relay.Run() = %v, want nil after cancel", err)
		}
	})
}

// jetStream is JetStream on a fresh connection to the fixture's NATS.
func (f *fixture) jetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	js, err := natsx.JetStream(f.nats.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// eventsStream looks up the events stream and its current state. It needs NATS up.
func (f *fixture) eventsStream(t *testing.T) (jetstream.Stream, *jetstream.StreamInfo, error) {
	t.Helper()
	s, err := f.jetStream(t).Stream(t.Context(), f.top.EventsStream)
	if err != nil {
		return nil, nil, fmt.Errorf("Stream() error = %w", err)
	}
	info, err := s.Info(t.Context())
	return s, info, err
}

// streamIDs reads every message of the events stream and returns the Nats-Msg-Id of each, in
// stream order. It needs NATS up.
func (f *fixture) streamIDs(t *testing.T) []string {
	t.Helper()
	s, info, err := f.eventsStream(t)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("GetMsg(%d) error = %v", seq, err)
		}
		ids = append(ids, m.Header.Get(jetstream.MsgIDHeader))
	}
	return ids
}

// streamCount is the number of messages in the events stream, 0 when it cannot be read.
func (f *fixture) streamCount(t *testing.T) uint64 {
	t.Helper()
	_, info, err := f.eventsStream(t)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

func (f *fixture) unsent(t *testing.T) int {
	t.Helper()
	var n int
	if err := f.pool.QueryRow(t.Context(), "SELECT count(*) FROM outbox WHERE published_at IS NULL").Scan(&n); err != nil {
		t.Fatalf("count unsent: %v", err)
	}
	return n
}

// writeTx commits one transaction with the given events.
func (f *fixture) writeTx(t *testing.T, events []outbox.Event) {
	t.Helper()
	if err := pg.WithTx(t.Context(), f.pool, func(tx pgx.Tx) error {
		return outbox.Add(t.Context(), tx, events...)
	}); err != nil {
		t.Fatalf("commit outbox events: %v", err)
	}
}

func (f *fixture) event(i int) outbox.Event {
	return outbox.Event{
		ID:      fmt.Sprintf("evt-%04d-%s", i, outbox.NewID()),
		Subject: f.top.EventsSubject + ".message.created",
		Payload: []byte(fmt.Sprintf("payload %d", i)),
		Headers: map[string]string{"Securemsg-Event-Type": "message.created"},
	}
}

// TestRelayExactlyOnceAcrossNATSOutage is the outbox's main promise: events committed while
// NATS is down are published once it is back, none lost and none duplicated, with two relay
// replicas running side by side.
func TestRelayExactlyOnceAcrossNATSOutage(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.startRelay(t, nil)
	f.startRelay(t, nil)

	const (
		n       = 500
		perTx   = 20
		txCount = n / perTx
		stopAt  = 8 // transactions committed before NATS goes away
	)
	want := map[string]bool{}
	next := 0
	commit := func() {
		events := make([]outbox.Event, perTx)
		for j := range events {
			events[j] = f.event(next)
			want[events[j].ID] = true
			next++
		}
		f.writeTx(t, events)
	}
	for range stopAt {
		commit()
	}
	// Stop NATS mid-burst: once some events made it, but (usually) not all of them.
	var before uint64
	testkit.WaitFor(t, 15*time.Second, "first events in the stream", func() bool { before = f.streamCount(t); return before > 0 })
	f.nats.Shutdown()
	t.Logf("NATS stopped with about %d of %d committed events in the stream", before, stopAt*perTx)
	for range txCount - stopAt {
		commit()
	}
	if got := f.unsent(t); got == 0 {
		t.Fatalf("unsent rows while NATS is down = 0, want > 0 (the outage must be observed)")
	}
	f.nats.Restart()

	testkit.WaitFor(t, 60*time.Second, "every row marked published", func() bool { return f.unsent(t) == 0 })
	ids := f.streamIDs(t)
	if len(ids) != n {
		t.Errorf("messages in stream = %d, want %d", len(ids), n)
	}
	seen := map[string]int{}
	for _, id := range ids {
		seen[id]++
		if seen[id] == 2 {
			t.Errorf("event %s is in the stream twice", id)
		}
		if !want[id] {
			t.Errorf("event %s is in the stream but was never written", id)
		}
	}
	for id := range want {
		if seen[id] == 0 {
			t.Errorf("event %s was written but never published", id)
		}
	}
	if got := testutil.ToFloat64(mustCounter(t, f.reg, "securemsg_outbox_published_total")); got < n {
		t.Errorf("securemsg_outbox_published_total = %v, want >= %d", got, n)
	}
}

func mustCounter(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var sum float64
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			c := prometheus.NewCounter(prometheus.CounterOpts{Name: name})
			c.Add(sum)
			return c
		}
	}
	t.Fatalf("metric %s not registered", name)
	return nil
}

// TestRolledBackTransactionPublishesNothing: an event written in a transaction that rolls back
// must never reach the stream.
func TestRolledBackTransactionPublishesNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.startRelay(t, nil)

	errAbort := errors.New("use case failed")
	ghost := f.event(1)
	err := pg.WithTx(t.Context(), f.pool, func(tx pgx.Tx) error {
		if err := outbox.Add(t.Context(), tx, ghost); err != nil {
			return err
		}
		return errAbort
	})
	if !errors.Is(err, errAbort) {
		t.Fatalf("WithTx() error = %v, want %v", err, errAbort)
	}
	// A committed marker after the rolled-back one: once it is in the stream, the relay has
	// had every chance to publish the ghost too.
	marker := f.event(2)
	f.writeTx(t, []outbox.Event{marker})
	testkit.WaitFor(t, 15*time.Second, "marker published", func() bool { return f.unsent(t) == 0 && f.streamCount(t) >= 1 })
	ids := f.streamIDs(t)
	if len(ids) != 1 || ids[0] != marker.ID {
		t.Errorf("stream ids = %v, want only the marker %s", ids, marker.ID)
	}
}

// TestCrashBetweenPublishAndMark: a relay that published a batch but failed to mark it sends
// it again; Nats-Msg-Id makes JetStream keep one copy of each event.
func TestCrashBetweenPublishAndMark(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var failures atomic.Int32
	f.startRelay(t, func() error {
		if failures.Add(1) == 1 {
			return errors.New("simulated crash before mark")
		}
		return nil
	})

	const n = 30
	events := make([]outbox.Event, n)
	for i := range events {
		events[i] = f.event(i)
	}
	f.writeTx(t, events)
	testkit.WaitFor(t, 15*time.Second, "every row marked published", func() bool { return f.unsent(t) == 0 })
	if failures.Load() < 2 {
		t.Fatalf("mark hook calls = %d, want >= 2 (one simulated crash, then a retry)", failures.Load())
	}
	ids := f.streamIDs(t)
	if len(ids) != n {
		t.Errorf("messages in stream = %d, want %d (the re-publish must be de-duplicated)", len(ids), n)
	}
	// One batch, one relay: the stream has the events in the order they were written.
	for i, id := range ids {
		if i < n && id != events[i].ID {
			t.Errorf("stream[%d] = %s, want %s (write order)", i, id, events[i].ID)
			break
		}
	}
	var attempts int
	if err := f.pool.QueryRow(t.Context(), "SELECT max(attempts) FROM outbox").Scan(&attempts); err != nil {
		t.Fatal(err)
	}
	if attempts != 1 {
		// The crashed attempt rolled back with its transaction, as a real crash would.
		t.Errorf("max(attempts) = %d, want 1", attempts)
	}
}

func TestPurge(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	events := []outbox.Event{f.event(1), f.event(2), f.event(3)}
	f.writeTx(t, events)
	// Row 1: published two days ago; row 2: published just now; row 3: unsent (never purged).
	if _, err := f.pool.Exec(t.Context(), `UPDATE outbox SET published_at = now() - interval '48 hours' WHERE id = $1`, events[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.pool.Exec(t.Context(), `UPDATE outbox SET published_at = now() WHERE id = $1`, events[1].ID); err != nil {
		t.Fatal(err)
	}
	r := outbox.NewRelay(f.pool, f.jetStream(t), outbox.Options{Retention: 24 * time.Hour, Registerer: f.reg})
	deleted, err := r.Purge(t.Context())
	if err != nil || deleted != 1 {
		t.Fatalf("Purge() = %d, %v; want 1, nil", deleted, err)
	}
	var left []string
	rows, _ := f.pool.Query(t.Context(), "SELECT id FROM outbox ORDER BY seq")
	left, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 2 || left[0] != events[1].ID || left[1] != events[2].ID {
		t.Errorf("rows after purge = %v, want [%s %s]", left, events[1].ID, events[2].ID)
	}
}

func TestAddRejectsInvalidEvents(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	secret := []byte("PHI: patient has condition X")
	tests := []struct {
		name  string
		event outbox.Event
	}{
		{"empty subject", outbox.Event{Payload: secret}},
		{"wildcard subject", outbox.Event{Subject: "securemsg.events.>", Payload: secret}},
		{"empty token", outbox.Event{Subject: "securemsg..events", Payload: secret}},
		{"msg id header", outbox.Event{Subject: "securemsg.events.x", Payload: secret, Headers: map[string]string{"Nats-Msg-Id": "x"}}},
		{"long id", outbox.Event{ID: strings.Repeat("a", 129), Subject: "securemsg.events.x", Payload: secret}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := pg.WithTx(t.Context(), f.pool, func(tx pgx.Tx) error {
				return outbox.Add(t.Context(), tx, tt.event)
			})
			if !errors.Is(err, outbox.ErrInvalidEvent) {
				t.Fatalf("Add(%s) error = %v, want ErrInvalidEvent", tt.name, err)
			}
			if strings.Contains(err.Error(), string(secret)) {
				t.Errorf("Add(%s) error %q contains the payload", tt.name, err)
			}
		})
	}
	// A duplicate id fails the caller's transaction (unique violation), without the payload.
	ev := f.event(1)
	err := pg.WithTx(t.Context(), f.pool, func(tx pgx.Tx) error {
		return outbox.Add(t.Context(), tx, ev, ev)
	})
	if !pg.IsUniqueViolation(err) {
		t.Errorf("Add(duplicate ids) error = %v, want a unique violation", err)
	}
}

// TestCommitWatchSignalsOnlyCommittedWrites: the watch signals once outbox rows written in an
// explicit transaction, in a statement of its own, or in a pipelined batch without BEGIN have
// committed, and never for rows rolled back or for statements that wrote none.
func TestCommitWatchSignalsOnlyCommittedWrites(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()
	drain := func() {
		select {
		case <-f.commits.C():
		default:
		}
	}
	// The tracer runs in the caller's goroutine as each statement ends, so the signal is
	// already there (or not) when the call returns.
	signalled := func() bool {
		select {
		case <-f.commits.C():
			return true
		default:
			return false
		}
	}
	rows, err := outbox.NewRows(t.Context(), f.event(1))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		write func() error
		want  bool
	}{
		{"committed transaction", func() error {
			return pg.WithTx(ctx, f.pool, func(tx pgx.Tx) error {
				if err := outbox.Add(ctx, tx, f.event(2)); err != nil {
					return err
				}
				if signalled() {
					t.Error("signalled before the transaction committed")
				}
				return nil
			})
		}, true},
		{"rolled-back transaction", func() error {
			err := pg.WithTx(ctx, f.pool, func(tx pgx.Tx) error {
				if err := outbox.Add(ctx, tx, f.event(3)); err != nil {
					return err
				}
				return errors.New("roll back")
			})
			if err == nil {
				return errors.New("WithTx did not report the rollback")
			}
			return nil
		}, false},
		{"failed transaction committed", func() error {
			tx, err := f.pool.Begin(ctx)
			if err != nil {
				return err
			}
			if err := outbox.Add(ctx, tx, f.event(4)); err != nil {
				return err
			}
			_, _ = tx.Exec(ctx, `SELECT 1/0`)
			_ = tx.Commit(ctx) // Postgres answers ROLLBACK
			return nil
		}, false},
		{"implicit transaction", func() error {
			return rows.Insert(ctx, f.pool)
		}, true},
		{"batch without BEGIN", func() error {
			r2, err := outbox.NewRows(t.Context(), f.event(5))
			if err != nil {
				return err
			}
			b := &pgx.Batch{}
			b.Queue(`SELECT 1`)
			r2.Queue(b)
			return f.pool.SendBatch(ctx, b).Close()
		}, true},
		{"statement writing no outbox rows", func() error {
			_, err := f.pool.Exec(ctx, `SELECT count(*) FROM outbox`)
			return err
		}, false},
	}
	for _, c := range cases {
		drain()
		if err := c.write(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := signalled(); got != c.want {
			t.Errorf("%s: signalled = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestRelayWakesOnCommit: with a poll interval of an hour, an event still goes out promptly,
// because the commit that wrote it wakes the relay.
func TestRelayWakesOnCommit(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r := outbox.NewRelay(f.pool, f.jetStream(t), outbox.Options{PollInterval: time.Hour, Registerer: f.reg, Commits: f.commits})
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { _ = r.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	for i := range 3 {
		f.writeTx(t, []outbox.Event{f.event(i)})
		testkit.WaitFor(t, 5*time.Second, "event published without polling", func() bool { return f.unsent(t) == 0 })
	}
}

// bumpStatement bumps a counter and writes its events only when the counter existed.
var bumpStatement = outbox.NewStatement(`WITH c AS (UPDATE counters SET n = n + 1 WHERE id = $1 RETURNING n)`,
	`EXISTS (SELECT 1 FROM c)`, `SELECT count(*) FROM c`)

// TestStatementWritesOnlyWithTheChange: events written in the same statement as a change exist
// exactly when the change happened, and are published like Add's.
func TestStatementWritesOnlyWithTheChange(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.startRelay(t, nil)
	if _, err := f.pool.Exec(t.Context(), `CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	if _, err := f.pool.Exec(t.Context(), `INSERT INTO counters VALUES (1, 0)`); err != nil {
		t.Fatal(err)
	}
	bump := func(id int, ev outbox.Event) int {
		rows, err := outbox.NewRows(t.Context(), ev)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		err = f.pool.QueryRow(t.Context(), bumpStatement.SQL(), bumpStatement.Args(rows, id)...).Scan(&n)
		if err != nil {
			t.Fatalf("outbox.Statement: %v", err)
		}
		return n
	}
	hit, miss := f.event(1), f.event(2)
	if n := bump(1, hit); n != 1 {
		t.Fatalf("update of an existing row changed %d rows", n)
	}
	if n := bump(2, miss); n != 0 {
		t.Fatalf("update of a missing row changed %d rows", n)
	}
	var stored []string
	rows, err := f.pool.Query(t.Context(), `SELECT id FROM outbox ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		stored = append(stored, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(stored) != 1 || stored[0] != hit.ID {
		t.Fatalf("outbox ids = %v, want only %s (the event of the change that happened)", stored, hit.ID)
	}
	testkit.WaitFor(t, 15*time.Second, "event published", func() bool { return f.unsent(t) == 0 && f.streamCount(t) >= 1 })
	if ids := f.streamIDs(t); len(ids) != 1 || ids[0] != hit.ID {
		t.Errorf("stream ids = %v, want only %s", ids, hit.ID)
	}
	if _, err := outbox.NewRows(t.Context(), outbox.Event{Subject: "bad subject"}); !errors.Is(err, outbox.ErrInvalidEvent) {
		t.Errorf("NewRows(invalid) error = %v, want ErrInvalidEvent", err)
	}
}

func TestStatementPlacesTheOutboxAfterTheCallersParameters(t *testing.T) {
	t.Parallel()
	st := outbox.NewStatement("WITH c AS (UPDATE t SET a = $2 WHERE id = $1 AND b = $10 RETURNING 1)", "EXISTS (SELECT 1 FROM c)", "SELECT count(*) FROM c")
	for _, want := range []string{"$11::text[]", "$12::text[]", "$13::bytea[]", "$14::text[]", "WHERE EXISTS (SELECT 1 FROM c)", "o AS (INSERT INTO outbox "} {
		if !strings.Contains(st.SQL(), want) {
			t.Errorf("SQL() lacks %q:\n%s", want, st.SQL())
		}
	}
	rows, err := outbox.NewRows(t.Context(), outbox.Event{Subject: "securemsg.test.x"})
	if err != nil {
		t.Fatal(err)
	}
	own := make([]any, 10)
	if got := len(st.Args(rows, own...)); got != 14 {
		t.Errorf("len(Args()) = %d, want 10 own + 4 outbox", got)
	}
	defer func() {
		if recover() == nil {
			t.Errorf("Args() with too few arguments did not panic")
		}
	}()
	st.Args(rows, own[:9]...)
}

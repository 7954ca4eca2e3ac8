package wire_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/audit/internal/adapters/pgstore"
	"github.com/securemsg/securemsg/services/audit/internal/app"
	"github.com/securemsg/securemsg/services/audit/internal/ports"
	"github.com/securemsg/securemsg/services/audit/migrations"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog/tlog"
	"github.com/securemsg/securemsg/services/internal/platform/migrate"
	"github.com/securemsg/securemsg/services/internal/platform/natsx"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
	"github.com/securemsg/securemsg/services/internal/testkit"
)

func newPool(t *testing.T, service bool) *pgxpool.Pool {
	t.Helper()
	admin := testkit.Postgres(t)
	schema := testkit.NewSchema(t, admin)
	var fs = migrations.FS
	if !service {
		if err := migrate.Up(t.Context(), admin, schema, nil, nil); err != nil {
			t.Fatal(err)
		}
	} else if err := migrate.Up(t.Context(), admin, schema, fs, nil); err != nil {
		t.Fatal(err)
	}
	pool, err := pg.NewPool(t.Context(), pg.Config{URL: testkit.LoadStack().PostgresURL, Schema: schema, MaxConns: 6})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

type auditFixture struct {
	store *pgstore.Store
	svc   *app.Service
}

func newAudit(t *testing.T) auditFixture {
	pool := newPool(t, true)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	store := pgstore.NewStore(pool)
	return auditFixture{store: store, svc: newService(t, store, tlog.NewSigner(priv), app.Config{})}
}

func record(i int) *eventsv1.AuditRecord {
	return &eventsv1.AuditRecord{
		Meta:       &eventsv1.EventMeta{OccurredAt: timestamppb.Now()},
		Actor:      &eventsv1.AuditActor{Subject: fmt.Sprintf("clin-%d", i%4), Role: commonv1.Role_ROLE_CLINICIAN},
		Action:     eventsv1.Action_ACTION_READ,
		RecordType: eventsv1.RecordType_RECORD_TYPE_THREAD,
		RecordId:   fmt.Sprintf("thread-%d", i),
		PatientId:  fmt.Sprintf("patient-%d", i%3),
		Outcome:    eventsv1.Outcome_OUTCOME_SUCCESS,
		ReasonCode: "pool_member",
	}
}

func size(t *testing.T, s *pgstore.Store) uint64 {
	h, err := s.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return h.Size
}

// startNATS starts an embedded nats-server (so a test may restart it) with the suite's streams
// under names of the test's own.
func startNATS(t *testing.T) (*testkit.NATSServer, *nats.Conn, jetstream.JetStream, natsx.Topology) {
	t.Helper()
	srv := testkit.StartNATS(t, nil)
	nc := srv.Connect(t)
	js, err := natsx.JetStream(nc)
	if err != nil {
		t.Fatal(err)
	}
	names := testkit.UniqueNATSNames(t, nil)
	top := natsx.DefaultTopology()
	top.EventsStream, top.EventsSubject = names.StreamPrefix+"EVENTS", names.SubjectPrefix+".events"
	top.AuditStream, top.AuditSubject = names.StreamPrefix+"AUDIT", names.SubjectPrefix+".audit"
	if err := natsx.EnsureStreams(t.Context(), js, top); err != nil {
		t.Fatal(err)
	}
	return srv, nc, js, top
}

// runConsumer starts the audit consumer and returns a stop function that waits for it.
func runConsumer(t *testing.T, c *ports.Consumer) func() {
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { _ = c.Run(ctx) })
	return func() { cancel(); wg.Wait() }
}

// TestAuditDownThenCatchUp: producers keep writing while the audit service is down (and NATS
// restarts once); when the consumer comes back it catches up and nothing is lost or doubled.
func TestAuditDownThenCatchUp(t *testing.T) {
	t.Parallel()
	srv, _, js, top := startNATS(t)
	a := newAudit(t)
	producer := newPool(t, false)
	em, _ := auditlog.NewEmitter(commonv1.Component_COMPONENT_MESSAGING, auditlog.WithSubjectPrefix(top.AuditSubject))
	relayCtx, stopRelay := context.WithCancel(t.Context())
	defer stopRelay()
	relay := outbox.NewRelay(producer, js, outbox.Options{Registerer: prometheus.NewRegistry(), PollInterval: 50 * time.Millisecond})
	go func() { _ = relay.Run(relayCtx) }()
	write := func(from, n int) {
		for i := from; i < from+n; i++ {
			if err := pg.WithTx(t.Context(), producer, func(tx pgx.Tx) error {
				_, err := em.Record(t.Context(), tx, record(i))
				return err
			}); err != nil {
				t.Fatalf("Record() error = %v", err)
			}
		}
	}
	consumer := &ports.Consumer{JS: js, Stream: top.AuditStream, Durable: "audit-log", Batch: 64, MaxWait: 200 * time.Millisecond, Ingester: a.svc}
	stop := runConsumer(t, consumer)
	write(0, 50)
	testkit.WaitFor(t, 20*time.Second, "first 50 records", func() bool { return size(t, a.store) == 50 })
	stop() // the audit service goes down

	write(50, 100)
	srv.Restart() // NATS restarts too while audit is down
	write(150, 50)
	stream, _ := js.Stream(t.Context(), top.AuditStream)
	testkit.WaitFor(t, 20*time.Second, "relay to publish 200", func() bool {
		info, err := stream.Info(t.Context())
		return err == nil && info.State.Msgs == 200
	})
	if got := size(t, a.store); got != 50 {
		t.Fatalf("log grew to %d while the consumer was down", got)
	}
	// Recovery: a fresh consumer (as after a restart) catches up.
	consumer2 := &ports.Consumer{JS: js, Stream: top.AuditStream, Durable: "audit-log", Batch: 64, MaxWait: 200 * time.Millisecond, Ingester: a.svc}
	stop2 := runConsumer(t, consumer2)
	defer stop2()
	testkit.WaitFor(t, 30*time.Second, "catch-up to 200", func() bool { return size(t, a.store) == 200 })
	// A republish of an old event (as the relay does after a crash) adds nothing.
	if _, err := js.Publish(t.Context(), top.AuditSubject+".messaging", mustPayload(t, em, record(7)), jetstream.WithMsgID("different-id-for-dedupe-bypass")); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "consumer idle", func() bool { return consumer2.Idle(t.Context()) })
	if got := size(t, a.store); got != 201 {
		t.Fatalf("log size = %d, want 201 (the republished record has a new event id)", got)
	}
	res, err := a.svc.Verify(t.Context(), 1, 0)
	if err != nil || !res.Ok {
		t.Fatalf("Verify() = %v, %v", res, err)
	}
}

func mustPayload(t *testing.T, em *auditlog.Emitter, r *eventsv1.AuditRecord) []byte {
	ev, err := em.Event(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	return ev.Payload
}

// TestReconcileFindsLostTail simulates JetStream losing acknowledged messages: the producer's
// outbox says published, the audit log never got them. Reconciliation finds them, the rows
// are republished by the relay, and the high-water mark then covers everything.
func TestReconcileFindsLostTail(t *testing.T) {
	t.Parallel()
	_, nc, js, top := startNATS(t)
	names := testkit.UniqueNATSNames(t, nil)
	a := newAudit(t)
	producer := newPool(t, false)
	em, _ := auditlog.NewEmitter(commonv1.Component_COMPONENT_MESSAGING, auditlog.WithSubjectPrefix(top.AuditSubject))
	for i := range 20 {
		if err := pg.WithTx(t.Context(), producer, func(tx pgx.Tx) error { _, err := em.Record(t.Context(), tx, record(i)); return err }); err != nil {
			t.Fatal(err)
		}
	}
	// The "lost tail": all 20 marked published a while ago, only the first 15 reached the log.
	if _, err := producer.Exec(t.Context(), "UPDATE outbox SET published_at = now() - interval '1 minute'"); err != nil {
		t.Fatal(err)
	}
	rows, _ := producer.Query(t.Context(), "SELECT payload FROM outbox ORDER BY seq LIMIT 15")
	payloads, _ := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	for _, p := range payloads {
		in, err := parse(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.svc.Ingest(t.Context(), in); err != nil {
			t.Fatal(err)
		}
	}
	consumer := &ports.Consumer{JS: js, Stream: top.AuditStream, Durable: "audit-log", Batch: 64, MaxWait: 200 * time.Millisecond, Ingester: a.svc}
	prefix := names.SubjectPrefix + ".reconcile"
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = ports.ServeReconcile(ctx, nc, prefix, a.svc, consumer, testLogger()) }()
	rec := auditlog.NewReconciler(producer, nc, em)
	rec.SubjectPrefix = prefix
	rec.Grace = time.Second
	var n int
	testkit.WaitFor(t, 10*time.Second, "reconcile answer", func() bool {
		var err error
		n, err = rec.RunOnce(t.Context())
		return err == nil
	})
	if n != 5 {
		t.Fatalf("RunOnce() = %d rows republished, want 5", n)
	}
	if mark, _ := a.store.ReconcileMark(t.Context(), "messaging"); mark != 15 {
		t.Errorf("mark after first round = %d, want 15", mark)
	}
	// The relay republishes the 5 rows; the consumer appends them; the mark reaches the end.
	relay := outbox.NewRelay(producer, js, outbox.Options{Registerer: prometheus.NewRegistry(), PollInterval: 50 * time.Millisecond})
	go func() { _ = relay.Run(ctx) }()
	stop := runConsumer(t, consumer)
	defer stop()
	testkit.WaitFor(t, 20*time.Second, "the lost 5 in the log", func() bool { return size(t, a.store) == 20 })
	if _, err := producer.Exec(t.Context(), "UPDATE outbox SET published_at = now() - interval '1 minute'"); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "consumer idle", func() bool { return consumer.Idle(t.Context()) })
	if n, err := rec.RunOnce(t.Context()); err != nil || n != 0 {
		t.Fatalf("RunOnce() after republish = %d, %v; want 0, nil", n, err)
	}
	if mark, _ := a.store.ReconcileMark(t.Context(), "messaging"); mark != 20 {
		t.Errorf("mark after recovery = %d, want 20", mark)
	}
}

package wire_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/audit/internal/adapters/pgstore"
	"github.com/securemsg/securemsg/services/audit/internal/app"
	"github.com/securemsg/securemsg/services/audit/internal/domain"
	"github.com/securemsg/securemsg/services/audit/internal/ports"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog/tlog"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
	"github.com/securemsg/securemsg/services/internal/testkit"
)

// TestOneReplicaIngestsAndTheDetectorSeesEverything runs two audit replicas (their own pools,
// services and consumers on one schema and one durable): only one ingests at a time; a bulk read
// whose first half the first replica appended and whose second half, after that replica went
// away, the second appended fires the bulk_read rule exactly once, because the new leader
// rebuilds the detector from the log before it ingests. With a detector per replica and no
// leadership, neither half alone reaches the threshold.
func TestOneReplicaIngestsAndTheDetectorSeesEverything(t *testing.T) {
	t.Parallel()
	_, _, js, top := startNATS(t)
	pool1 := newPool(t, true)
	schema := pool1.Config().ConnConfig.RuntimeParams["search_path"]
	pool2, err := pg.NewPool(t.Context(), pg.Config{URL: testkit.LoadStack().PostgresURL, Schema: schema, MaxConns: 6})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool2.Close)
	rules := domain.DefaultAnomalyRules()
	rules.BulkRead.MaxPatients = 5
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer := tlog.NewSigner(priv)

	type replica struct {
		store   *pgstore.Store
		svc     *app.Service
		leading atomic.Bool
		stop    func()
	}
	replicas := make([]*replica, 2)
	for i, pool := range []*pgxpool.Pool{pool1, pool2} {
		r := &replica{store: pgstore.NewStore(pool)}
		r.svc = newService(t, r.store, signer, app.Config{Rules: &rules})
		replicas[i] = r
		consumer := &ports.Consumer{JS: js, Stream: top.AuditStream, Durable: "audit-log", Batch: 64, MaxWait: 200 * time.Millisecond, Ingester: r.svc, Log: testLogger()}
		leader := &pgstore.Leader{Pool: pool, RetryEvery: 200 * time.Millisecond, Log: testLogger(),
			OnAcquire: func(ctx context.Context) error { _, err := r.svc.RestoreDetector(ctx); return err },
			Leading:   r.leading.Store}
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		wg.Go(func() { _ = leader.Run(ctx, consumer.Run) })
		r.stop = func() { cancel(); wg.Wait() }
		t.Cleanup(r.stop)
	}
	leaders := func() []int {
		var out []int
		for i, r := range replicas {
			if r.leading.Load() {
				out = append(out, i)
			}
		}
		return out
	}
	testkit.WaitFor(t, 10*time.Second, "one replica leading", func() bool { return len(leaders()) == 1 })

	em, err := auditlog.NewEmitter(commonv1.Component_COMPONENT_MESSAGING, auditlog.WithSubjectPrefix(top.AuditSubject))
	if err != nil {
		t.Fatal(err)
	}
	publishReads := func(from, n int) {
		for i := from; i < from+n; i++ {
			ev, err := em.Event(t.Context(), &eventsv1.AuditRecord{
				Meta:   &eventsv1.EventMeta{EventId: uuid.NewString(), OccurredAt: timestamppb.Now(), Producer: commonv1.Component_COMPONENT_MESSAGING},
				Actor:  &eventsv1.AuditActor{Subject: "snoop-replicas", Role: commonv1.Role_ROLE_CLINICIAN},
				Action: eventsv1.Action_ACTION_READ, RecordType: eventsv1.RecordType_RECORD_TYPE_THREAD, RecordId: fmt.Sprintf("thread-%d", i),
				PatientId: fmt.Sprintf("p-replicas-%d", i), Outcome: eventsv1.Outcome_OUTCOME_SUCCESS, ReasonCode: "pool_member",
			})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := js.Publish(t.Context(), ev.Subject, ev.Payload, jetstream.WithMsgID(ev.ID)); err != nil {
				t.Fatal(err)
			}
		}
	}
	store := replicas[0].store
	publishReads(0, 4)
	testkit.WaitFor(t, 20*time.Second, "the first 4 reads in the log", func() bool { return size(t, store) == 4 })
	if l := leaders(); len(l) != 1 {
		t.Fatalf("leaders = %v while ingesting; want exactly one", l)
	}
	first := leaders()[0]
	replicas[first].stop() // the ingesting replica goes away
	other := 1 - first
	testkit.WaitFor(t, 10*time.Second, "the other replica taking over", func() bool { return replicas[other].leading.Load() })

	publishReads(4, 4)
	testkit.WaitFor(t, 20*time.Second, "all 8 reads in the log", func() bool { return size(t, store) == 8 })
	alerts, err := store.ListAlerts(t.Context(), domain.AlertFilter{RuleID: domain.RuleBulkRead}, nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(alerts) != 1 || alerts[0].Actor.GetSubject() != "snoop-replicas" || alerts[0].Count != 6 {
		t.Fatalf("bulk_read alerts = %+v; want one, for snoop-replicas' sixth patient", alerts)
	}
	res, err := replicas[other].svc.Verify(t.Context(), 1, 0)
	if err != nil || !res.Ok || res.VerifiedCount < 8 {
		t.Fatalf("Verify() = %+v, %v; want the log intact", res, err)
	}
}

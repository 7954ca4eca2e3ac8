package pgstore_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/audit/internal/adapters/pgstore"
	"github.com/securemsg/securemsg/services/audit/internal/domain"
	"github.com/securemsg/securemsg/services/audit/migrations"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/migrate"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
	"github.com/securemsg/securemsg/services/internal/testkit"
	"github.com/securemsg/securemsg/services/internal/testkit/benchkit"
)

func benchStore(b *testing.B) (*pgstore.Store, *pgxpool.Pool) {
	admin := testkit.Postgres(b)
	schema := testkit.NewSchema(b, admin)
	if err := migrate.Up(context.Background(), admin, schema, migrations.FS, nil); err != nil {
		b.Fatal(err)
	}
	pool, err := pg.NewPool(context.Background(), pg.Config{URL: testkit.LoadStack().PostgresURL, Schema: schema, MaxConns: 4})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	s := pgstore.NewStore(pool)
	if err := s.EnsurePartitions(context.Background(), time.Now(), 1); err != nil {
		b.Fatal(err)
	}
	return s, pool
}

func batches(b *testing.B, n, size int) [][]domain.Incoming {
	em, _ := auditlog.NewEmitter(commonv1.Component_COMPONENT_MESSAGING)
	var out [][]domain.Incoming
	var cur []domain.Incoming
	for i := range n {
		r := &eventsv1.AuditRecord{
			Meta:   &eventsv1.EventMeta{OccurredAt: timestamppb.Now(), RequestId: "req-abc"},
			Actor:  &eventsv1.AuditActor{Subject: fmt.Sprintf("clin-%d", i%50), Role: commonv1.Role_ROLE_CLINICIAN, OrganisationId: "org-1"},
			Action: eventsv1.Action_ACTION_READ, RecordType: eventsv1.RecordType_RECORD_TYPE_THREAD,
			RecordId: fmt.Sprintf("thread-%d", i), PatientId: fmt.Sprintf("patient-%d", i%997),
			Outcome: eventsv1.Outcome_OUTCOME_SUCCESS, ReasonCode: "pool_member", SourceIp: "10.0.0.1",
			UserAgent: "careteam/2.1", ClientApp: "careteam-app", Operation: "/securemsg.messaging.v1.MessagingService/GetThread", PoolId: "pool-a",
		}
		ev, err := em.Event(context.Background(), r)
		if err != nil {
			b.Fatal(err)
		}
		in, _ := domain.ParseIncoming(ev.Payload)
		cur = append(cur, in)
		if len(cur) == size {
			out = append(out, cur)
			cur = nil
		}
	}
	return out
}

// plainInsert writes the same rows and event ids without the head lock, hashing or tree: the
// baseline the log's append is compared with.
func plainInsert(ctx context.Context, pool *pgxpool.Pool, recs []domain.Incoming, seq *int64) error {
	now := time.Now().UTC()
	return pg.WithTx(ctx, pool, func(tx pgx.Tx) error {
		rows := make([][]any, len(recs))
		ids := make([][]any, len(recs))
		zero := make([]byte, 32)
		for i, r := range recs {
			*seq++
			p := domain.Project(r.Record)
			rows[i] = []any{*seq, now, p.EventID, p.OccurredAt, p.Producer, p.ActorSubject, p.ActorRole, p.ActorOrg, p.OnBehalfOf,
				p.Action, p.Outcome, p.Severity, p.RecordType, p.RecordID, p.PatientID, p.PoolID, p.Sensitivity, p.Purpose,
				r.Bytes, zero, zero, zero}
			ids[i] = []any{p.EventID, *seq}
		}
		cols := []string{"sequence", "appended_at", "event_id", "occurred_at", "producer", "actor_subject", "actor_role",
			"actor_org", "on_behalf_of", "action", "outcome", "severity", "record_type", "record_id", "patient_id", "pool_id",
			"sensitivity", "purpose", "record_bytes", "leaf_hash", "prev_chain_hash", "chain_hash"}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"entries"}, cols, pgx.CopyFromRows(rows)); err != nil {
			return err
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"event_ids"}, []string{"event_id", "sequence"}, pgx.CopyFromRows(ids))
		return err
	})
}

// BenchmarkIngest compares appending to the log (dedupe, head lock, leaf and chain hashes,
// Merkle tree with stored nodes) with a plain insert of the same rows, in the same run, in
// batches of 1,024 as the consumer fetches them by default (AUDIT_BENCH_BATCH overrides).
// Report: ratio = log rate / plain rate.
func BenchmarkIngest(b *testing.B) {
	const perRound = 256 * 8
	ingestBatch := 1024
	if v, err := strconv.Atoi(os.Getenv("AUDIT_BENCH_BATCH")); err == nil && v > 0 {
		ingestBatch = v
	}
	logStore, _ := benchStore(b)
	_, plainPool := benchStore(b)
	ctx := context.Background()
	var logDur, plainDur time.Duration
	var records int
	var seq int64
	round := 0
	for b.Loop() {
		bs := batches(b, perRound, ingestBatch)
		runLog := func() {
			t0 := time.Now()
			for _, batch := range bs {
				if _, err := logStore.Append(ctx, batch, time.Now(), nil); err != nil {
					b.Fatal(err)
				}
			}
			logDur += time.Since(t0)
		}
		runPlain := func() {
			t1 := time.Now()
			for _, batch := range bs {
				if err := plainInsert(ctx, plainPool, batch, &seq); err != nil {
					b.Fatal(err)
				}
			}
			plainDur += time.Since(t1)
		}
		// Alternate the order so neither side always runs right after the other's writes.
		if round%2 == 0 {
			runLog()
			runPlain()
		} else {
			runPlain()
			runLog()
		}
		round++
		records += perRound
	}
	logRate := float64(records) / logDur.Seconds()
	plainRate := float64(records) / plainDur.Seconds()
	benchkit.Compare(b, logRate, plainRate, "records/s")
}

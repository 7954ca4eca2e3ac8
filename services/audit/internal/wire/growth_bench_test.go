package wire_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/audit/internal/adapters/pgstore"
	"github.com/securemsg/securemsg/services/audit/internal/app"
	"github.com/securemsg/securemsg/services/audit/internal/domain"
	"github.com/securemsg/securemsg/services/audit/internal/wire"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog/tlog"
	"github.com/securemsg/securemsg/services/internal/platform/daemon"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
	"github.com/securemsg/securemsg/services/internal/testkit"
	"github.com/securemsg/securemsg/services/internal/testkit/benchkit"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
)

// BenchmarkGrowthAudit (issue #22, "cost as the data grows") seeds the audit log at each size
// through the store's own Append (COPY of entries, event ids and kept tree nodes, with the
// real leaf and chain hashes and Merkle tree, so VerifyRange and the proofs check real data),
// then times through the real service (gRPC over TLS with a token, policy, the service's own
// audit record of each read) a page of the query by patient, by actor and by time range and
// of the patient's access report, with p50/p99 at every size and the growth factor from the
// smallest size to the largest (target 1.5×); VerifyRange over min(size, 1 M) records
// (target 50,000 records/s for one caller, which verifies on one core); inclusion and
// consistency proofs (target under 5 ms at the largest size, p50 and p99 each). EXPLAIN (ANALYZE, BUFFERS)
// of the queries goes to .tmp/bench/explain/audit-<size>.txt.
//
// Sizes: SECUREMSG_GROWTH_AUDIT (default "100000,1000000,10000000"); timed calls per size and
// operation: SECUREMSG_GROWTH_OPS (default 400). Re-run:
//
//	SECUREMSG_GROWTH_AUDIT=100000,1000000 go test -run '^$' -bench GrowthAudit ./services/audit/internal/wire/

const (
	growthTarget       = 1.5
	verifyTarget       = 50000 // records/s
	proofTargetMs      = 5
	growthRounds       = 4
	auditSeedBatch     = 4096
	auditVerifyRecords = 1_000_000
)

// The seeded log spans growthSpan of occurred_at, in sequence order; every 97th record is
// servicetest.Patient's (1,031 at 100 k records: 20 pages), every 50th record's actor is
// growthActor.
const growthSpan = 90 * 24 * time.Hour

const growthActor = "clin-7"

// seedAudit appends n records to the log in batches, through the store's Append (the
// consumer's path without NATS), generating the next batch while the last is written.
func seedAudit(tb testing.TB, store *pgstore.Store, n int, start time.Time) time.Duration {
	tb.Helper()
	em, err := auditlog.NewEmitter(commonv1.Component_COMPONENT_MESSAGING)
	if err != nil {
		tb.Fatal(err)
	}
	step := growthSpan / time.Duration(n)
	batches := make(chan []domain.Incoming, 2)
	var genErr error
	go func() {
		defer close(batches)
		cur := make([]domain.Incoming, 0, auditSeedBatch)
		for i := range n {
			patient := fmt.Sprintf("p-%d", 2000+i%997)
			if i%97 == 0 {
				patient = servicetest.Patient.PatientID
			}
			r := &eventsv1.AuditRecord{
				Meta:         &eventsv1.EventMeta{OccurredAt: timestamppb.New(start.Add(time.Duration(i) * step)), RequestId: "req-growth"},
				Actor:        &eventsv1.AuditActor{Subject: fmt.Sprintf("clin-%d", i%50), Role: commonv1.Role_ROLE_CLINICIAN, OrganisationId: "org-1"},
				Action:       eventsv1.Action_ACTION_READ,
				RecordType:   eventsv1.RecordType_RECORD_TYPE_THREAD,
				RecordId:     fmt.Sprintf("thread-%d", i/7),
				PatientId:    patient,
				Outcome:      eventsv1.Outcome_OUTCOME_SUCCESS,
				ReasonCode:   "pool_member",
				SourceIp:     "10.0.0.1",
				UserAgent:    "careteam/2.1",
				ClientApp:    "careteam-app",
				Operation:    "/securemsg.messaging.v1.MessagingService/GetThread",
				PoolId:       "pool-cardiology",
				Sensitivity:  commonv1.Sensitivity_SENSITIVITY_NORMAL,
				PurposeOfUse: commonv1.PurposeOfUse_PURPOSE_OF_USE_TREATMENT,
			}
			ev, err := em.Event(context.Background(), r)
			if err != nil {
				genErr = err
				return
			}
			in, err := domain.ParseIncoming(ev.Payload)
			if err != nil {
				genErr = err
				return
			}
			cur = append(cur, in)
			if len(cur) == auditSeedBatch || i == n-1 {
				batches <- cur
				cur = make([]domain.Incoming, 0, auditSeedBatch)
			}
		}
	}()
	t0 := time.Now()
	appended := 0
	for batch := range batches {
		out, err := store.Append(tb.Context(), batch, time.Now(), nil)
		if err != nil {
			tb.Fatalf("append: %v", err)
		}
		appended += len(out)
	}
	if genErr != nil {
		tb.Fatalf("make records: %v", genErr)
	}
	if appended != n {
		tb.Fatalf("appended %d records, want %d", appended, n)
	}
	return time.Since(t0)
}

// auditEnv is one size's running service.
type auditEnv struct {
	h     *servicetest.Harness
	svc   *app.Service
	api   auditv1.AuditServiceClient
	start time.Time
	size  int
}

func newAuditEnv(b *testing.B, size int) (*auditEnv, time.Duration) {
	b.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	// The checkpointer signs rarely: the seeded log is checkpointed once, after seeding.
	settings := wire.Settings{CheckpointEvery: 1 << 40, CheckpointInterval: time.Hour, Retention: app.DefaultRetention, IngestBatch: 64}
	e := &auditEnv{size: size, start: time.Now().Add(-growthSpan - time.Hour)}
	e.h = servicetest.Start(b, wire.Spec(), servicetest.Options{}, func(proc *daemon.Process) error {
		var err error
		e.svc, err = wire.Register(proc, settings, wire.Deps{Signer: tlog.NewSigner(priv), Rules: domain.DefaultAnomalyRules()})
		return err
	})
	e.api = auditv1.NewAuditServiceClient(e.h.Portal)
	took := seedAudit(b, pgstore.NewStore(e.h.Proc.Pool), size, e.start)
	if _, err := e.h.Proc.Pool.Exec(b.Context(), `ANALYZE entries; ANALYZE event_ids; ANALYZE tree_nodes`); err != nil {
		b.Fatalf("analyze: %v", err)
	}
	if _, err := e.svc.Checkpoint(b.Context(), true); err != nil {
		b.Fatalf("checkpoint: %v", err)
	}
	return e, took
}

// queryOp pages through a listing once to collect page tokens, then returns a timed call of
// one of those pages.
func queryPaged(b *testing.B, ctx context.Context, call func(ctx context.Context, token string) (next string, n int, err error)) func(int) error {
	b.Helper()
	// Only full pages are timed: a short last page would be cheaper at the smaller sizes.
	var tokens []string
	for tok := ""; len(tokens) < 10; {
		next, n, err := call(ctx, tok)
		if err != nil {
			b.Fatalf("collect page tokens: %v", err)
		}
		if n == 50 {
			tokens = append(tokens, tok)
		}
		if tok = next; tok == "" {
			break
		}
	}
	if len(tokens) == 0 {
		b.Fatal("no full page to time")
	}
	return func(i int) error {
		_, n, err := call(ctx, tokens[i%len(tokens)])
		if err == nil && n != 50 {
			err = fmt.Errorf("page of %d, want 50", n)
		}
		return err
	}
}

func (e *auditEnv) query(b *testing.B, f *auditv1.AuditEventFilter) func(int) error {
	b.Helper()
	return queryPaged(b, e.h.As(b, b.Context(), servicetest.Auditor), func(ctx context.Context, tok string) (string, int, error) {
		r, err := e.api.QueryAuditEvents(ctx, &auditv1.QueryAuditEventsRequest{Filter: f, PageSize: 50, PageToken: tok})
		return r.GetNextPageToken(), len(r.GetEntries()), err
	})
}

// window is a day of occurred_at in the middle of the seeded span.
func (e *auditEnv) window() (time.Time, time.Time) {
	mid := e.start.Add(growthSpan / 2)
	return mid, mid.Add(24 * time.Hour)
}

type auditOp struct {
	name    string
	prepare func(b *testing.B, e *auditEnv) func(int) error
	// perPage ops are held to the growth target; the proofs to their own.
	perPage bool
}

var auditOperations = []auditOp{
	{"QueryByPatient", func(b *testing.B, e *auditEnv) func(int) error {
		return e.query(b, &auditv1.AuditEventFilter{PatientId: servicetest.Patient.PatientID})
	}, true},
	{"QueryByActor", func(b *testing.B, e *auditEnv) func(int) error {
		return e.query(b, &auditv1.AuditEventFilter{ActorSubject: growthActor})
	}, true},
	{"QueryByTimeRange", func(b *testing.B, e *auditEnv) func(int) error {
		from, to := e.window()
		return e.query(b, &auditv1.AuditEventFilter{StartTime: timestamppb.New(from), EndTime: timestamppb.New(to)})
	}, true},
	{"AccessReport", func(b *testing.B, e *auditEnv) func(int) error {
		return queryPaged(b, e.h.As(b, b.Context(), servicetest.Patient), func(ctx context.Context, tok string) (string, int, error) {
			r, err := e.api.GetAccessReport(ctx, &auditv1.GetAccessReportRequest{PatientId: servicetest.Patient.PatientID, PageSize: 50, PageToken: tok})
			return r.GetNextPageToken(), len(r.GetEntries()), err
		})
	}, true},
	{"InclusionProof", func(b *testing.B, e *auditEnv) func(int) error {
		ctx := e.h.As(b, b.Context(), servicetest.Auditor)
		return func(i int) error {
			seq := uint64(1 + (i*7919)%e.size)
			r, err := e.api.GetInclusionProof(ctx, &auditv1.GetInclusionProofRequest{Sequence: seq, TreeSize: uint64(e.size)})
			if err == nil && len(r.GetHashes()) == 0 {
				err = fmt.Errorf("inclusion proof of %d without hashes", seq)
			}
			return err
		}
	}, false},
	{"ConsistencyProof", func(b *testing.B, e *auditEnv) func(int) error {
		ctx := e.h.As(b, b.Context(), servicetest.Auditor)
		return func(i int) error {
			first := uint64(1 + (i*7919)%(e.size-1))
			_, err := e.api.GetConsistencyProof(ctx, &auditv1.GetConsistencyProofRequest{FirstSize: first, SecondSize: uint64(e.size)})
			return err
		}
	}, false},
}

func timeCalls(b *testing.B, n, first int, op func(int) error) []time.Duration {
	b.Helper()
	for i := range 5 {
		if err := op(first + i); err != nil {
			b.Fatalf("warm-up: %v", err)
		}
	}
	lat := make([]time.Duration, n)
	for i := range n {
		t0 := time.Now()
		if err := op(first + i); err != nil {
			b.Fatalf("call %d: %v", i, err)
		}
		lat[i] = time.Since(t0)
	}
	return lat
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func cpuSelf() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// verify times one VerifyRange over the newest min(size, 1 M) records and returns records/s
// (wall) and records per CPU second (this process, where the service verifies, and Postgres).
func (e *auditEnv) verify(b *testing.B) (perSec, perCPUSec float64) {
	b.Helper()
	ctx := e.h.As(b, b.Context(), servicetest.Auditor)
	n := min(e.size, auditVerifyRecords)
	from := uint64(e.size - n + 1)
	pg0, _ := benchkit.ProcessCPU("postgres")
	cpu0, t0 := cpuSelf(), time.Now()
	r, err := e.api.VerifyRange(ctx, &auditv1.VerifyRangeRequest{FromSequence: from, ToSequence: uint64(e.size)})
	elapsed, cpu := time.Since(t0), cpuSelf()-cpu0
	pg1, _ := benchkit.ProcessCPU("postgres")
	if err != nil || !r.GetOk() || r.GetVerifiedCount() != uint64(n) {
		b.Fatalf("VerifyRange(%d, %d) = %v, %v; want ok over %d records", from, e.size, r, err, n)
	}
	return float64(n) / elapsed.Seconds(), float64(n) / (cpu + pg1 - pg0).Seconds()
}

func BenchmarkGrowthAudit(b *testing.B) {
	sizes, nOps := benchkit.GrowthSizes(b, "SECUREMSG_GROWTH_AUDIT", "100000,1000000,10000000", 50000), benchkit.GrowthOps(b, growthRounds*5)
	envs := make([]*auditEnv, len(sizes))
	ops := make([][]func(int) error, len(sizes))
	verifyRate, verifyCPURate := make([]float64, len(sizes)), make([]float64, len(sizes))
	for si, size := range sizes {
		e, took := newAuditEnv(b, size)
		envs[si] = e
		b.Logf("seeded %d audit records in %s (%.0f records/s)", size, took, float64(size)/took.Seconds())
		explainAudit(b, e)
		for _, op := range auditOperations {
			ops[si] = append(ops[si], op.prepare(b, e))
		}
		verifyRate[si], verifyCPURate[si] = e.verify(b)
		b.Logf("VerifyRange at %d: %.0f records/s, %.0f records per CPU second", size, verifyRate[si], verifyCPURate[si])
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			b.ReportMetric(took.Seconds(), "seed-s")
			b.ReportMetric(float64(size), "records")
			b.ReportMetric(0, "ns/op")
		})
	}
	lat := make([][][]time.Duration, len(sizes))
	for r := range growthRounds {
		for si := range sizes {
			if lat[si] == nil {
				lat[si] = make([][]time.Duration, len(auditOperations))
			}
			for oi := range auditOperations {
				lat[si][oi] = append(lat[si][oi], timeCalls(b, nOps/growthRounds, r*nOps, ops[si][oi])...)
			}
		}
	}
	last := len(sizes) - 1
	for oi, op := range auditOperations {
		p50, p99 := make([]float64, len(sizes)), make([]float64, len(sizes))
		for si, size := range sizes {
			slices.Sort(lat[si][oi])
			p50[si], p99[si] = msOf(lat[si][oi][len(lat[si][oi])/2]), msOf(lat[si][oi][len(lat[si][oi])*99/100])
			b.Logf("%s at %d records: p50 %.2f ms, p99 %.2f ms", op.name, size, p50[si], p99[si])
		}
		b.Run(op.name, func(b *testing.B) {
			for si, size := range sizes {
				b.ReportMetric(p50[si], fmt.Sprintf("p50-ms@%d", size))
				b.ReportMetric(p99[si], fmt.Sprintf("p99-ms@%d", size))
			}
			target := 0.0
			if op.perPage {
				target = growthTarget
			} else {
				// The issue names no percentile for "under 5 ms": both are held to it.
				benchkit.Target(b, p50[last], "largest-p50-ms", proofTargetMs, true)
				benchkit.Target(b, p99[last], "largest-p99-ms", proofTargetMs, true)
			}
			benchkit.Growth(b, p50[last], p50[0], "p50-ms", target)
			benchkit.Growth(b, p99[last], p99[0], "p99-ms", target)
			b.ReportMetric(0, "ns/op")
		})
	}
	b.Run("VerifyRange", func(b *testing.B) {
		for si, size := range sizes {
			b.ReportMetric(verifyRate[si], fmt.Sprintf("records/s@%d", size))
		}
		benchkit.Target(b, verifyRate[last], "largest-records/s", verifyTarget, false)
		benchkit.Target(b, verifyCPURate[last], "largest-records/cpu-s", verifyTarget, false)
		b.ReportMetric(0, "ns/op")
	})
}

// explainAudit runs the store's Query for each filter the benchmark uses (as app.Query and
// app.AccessReport call it, page of 50 and one more) on a pool that records the SQL, then
// EXPLAIN (ANALYZE, BUFFERS) of each into .tmp/bench/explain/audit-<size>.txt.
func explainAudit(b *testing.B, e *auditEnv) {
	b.Helper()
	log := &benchkit.StatementLog{}
	pool, err := pg.NewPool(b.Context(), pg.Config{URL: testkit.LoadStack().PostgresURL, Schema: e.h.Schema, MaxConns: 2, Tracer: log})
	if err != nil {
		b.Fatalf("pool: %v", err)
	}
	defer pool.Close()
	store := pgstore.NewStore(pool)
	from, to := e.window()
	var out strings.Builder
	for _, q := range []struct {
		name string
		f    domain.Filter
	}{
		{"QueryByPatient", domain.Filter{PatientID: servicetest.Patient.PatientID}},
		{"QueryByActor", domain.Filter{ActorSubject: growthActor}},
		{"QueryByTimeRange", domain.Filter{Start: from, End: to}},
	} {
		if _, err := store.Query(b.Context(), q.f, domain.Page{Limit: 51}); err != nil {
			b.Fatalf("%s: %v", q.name, err)
		}
		ran := log.Take()
		st := ran[len(ran)-1]
		lines := benchkit.Explain(b, e.h.Proc.Pool, st)
		plan := strings.Join(lines, "\n")
		fmt.Fprintf(&out, "== %s at %d records\n%s\n%v\n%s\n\n", q.name, e.size, st.SQL, st.Args, plan)
		for _, l := range lines {
			if strings.Contains(l, "Seq Scan") || strings.Contains(l, "Rows Removed by Filter") {
				b.Logf("%s at %d: %s", q.name, e.size, strings.TrimSpace(l))
			}
		}
	}
	dir := filepath.Join(testkit.RepoRoot(), ".tmp", "bench", "explain")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("audit-%d.txt", e.size)), []byte(out.String()), 0o644); err != nil {
		b.Fatal(err)
	}
}

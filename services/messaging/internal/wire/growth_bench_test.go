package wire_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
	"github.com/securemsg/securemsg/services/internal/testkit"
	"github.com/securemsg/securemsg/services/internal/testkit/benchkit"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
	"github.com/securemsg/securemsg/services/messaging/internal/adapters/pgstore"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
	"github.com/securemsg/securemsg/services/messaging/internal/seed"
	"github.com/securemsg/securemsg/services/messaging/internal/wire"
)

// The growth benchmarks (issue #22, "cost as the data grows") seed a fresh schema at each size
// with internal/seed (COPY, per-thread DEKs wrapped by Transit in batches, fields sealed as
// the service seals them), then time each per-page operation through the real service (gRPC
// over TLS with a token, policy, decryption, the audit record) and report p50/p99 at every
// size and the growth factor from the smallest size to the largest, against a target of 1.5×.
// The operands stay the same size at every scale (the patient's 1,000 threads, the
// 1,000-message thread) while everything around them grows, the pool queue with it (a quarter
// of the threads: 50,000 open at 1 M messages). EXPLAIN (ANALYZE, BUFFERS) of each operation's
// queries, captured from the repository's own SQL, goes to .tmp/bench/explain/.
//
// Sizes: SECUREMSG_GROWTH_MESSAGES (default "10000,100000,1000000"); operations timed per size
// and operation: SECUREMSG_GROWTH_OPS (default 400). Re-run:
//
//	SECUREMSG_GROWTH_MESSAGES=10000,100000 go test -run '^$' -bench GrowthMessaging ./services/messaging/internal/wire/

// growthTarget is the bound on a per-page operation's growth from the smallest size to
// the largest.
const growthTarget = 1.5

// growthShape is the data set at n messages: servicetest's patient owns 1,000 threads (fewer
// at sizes too small for them), the big thread has 1,000 messages.
func growthShape(n int) seed.Shape {
	return seed.Shape{Messages: n, Patient: servicetest.Patient.PatientID, PatientSubject: servicetest.Patient.Subject,
		PatientThreads: min(1000, n/10), QueuePool: "pool-cardiology", OtherPool: "pool-dermatology",
		Clinician: servicetest.Clinician.Subject, BigThreadMessages: min(1000, n/10)}
}

// seedEnv seeds e's schema with shape.
func seedEnv(tb testing.TB, e *env, shape seed.Shape) seed.Result {
	tb.Helper()
	stack := testkit.LoadStack()
	res, err := seed.Messaging(tb.Context(), e.h.Proc.Pool, seed.TransitWrapper{Addr: stack.VaultAddr, Token: stack.VaultToken,
		Mount: "transit", Key: e.keyName}, shape)
	if err != nil {
		tb.Fatalf("seed %d messages: %v", shape.Messages, err)
	}
	return res
}

// growthOp is one operation timed at every size: prepare runs once per size (collecting page
// tokens, warming the DEK cache), do runs once per timed call.
type growthOp struct {
	name    string
	prepare func(tb testing.TB, e *env, res seed.Result) func(ctx context.Context, i int) error
}

// pageTokens walks up to pages pages of a listing and returns the token of each (the first is
// "", the first page).
func pageTokens(pages int, next func(token string) (string, error)) ([]string, error) {
	tokens := []string{""}
	for len(tokens) < pages {
		tok, err := next(tokens[len(tokens)-1])
		if err != nil {
			return nil, err
		}
		if tok == "" {
			break
		}
		tokens = append(tokens, tok)
	}
	return tokens, nil
}

func listPaged(tb testing.TB, ctx context.Context, e *env, poolIDs []string, statuses []messagingv1.ThreadStatus) func(context.Context, int) error {
	tb.Helper()
	req := func(tok string) *messagingv1.ListThreadsRequest {
		return &messagingv1.ListThreadsRequest{PoolIds: poolIDs, Statuses: statuses, PageSize: 50, PageToken: tok}
	}
	tokens, err := pageTokens(10, func(tok string) (string, error) {
		resp, err := e.api.ListThreads(ctx, req(tok))
		return resp.GetNextPageToken(), err
	})
	if err != nil {
		tb.Fatalf("ListThreads: %v", err)
	}
	return func(_ context.Context, i int) error {
		resp, err := e.api.ListThreads(ctx, req(tokens[i%len(tokens)]))
		if err == nil && len(resp.GetThreads()) != 50 {
			err = fmt.Errorf("ListThreads page returned %d threads, want 50", len(resp.GetThreads()))
		}
		return err
	}
}

var growthOperations = []growthOp{
	{"ListThreadsPatient", func(tb testing.TB, e *env, _ seed.Result) func(context.Context, int) error {
		return listPaged(tb, e.as(tb, servicetest.Patient), e, nil, nil)
	}},
	{"ListThreadsPoolQueue", func(tb testing.TB, e *env, _ seed.Result) func(context.Context, int) error {
		return listPaged(tb, e.as(tb, servicetest.Clinician), e, []string{"pool-cardiology"},
			[]messagingv1.ThreadStatus{messagingv1.ThreadStatus_THREAD_STATUS_OPEN})
	}},
	{"GetThreadPaged", func(tb testing.TB, e *env, res seed.Result) func(context.Context, int) error {
		ctx := e.as(tb, servicetest.Clinician)
		tokens, err := pageTokens(20, func(tok string) (string, error) {
			resp, err := e.api.GetThread(ctx, &messagingv1.GetThreadRequest{ThreadId: res.BigThread, PageSize: 50, PageToken: tok})
			return resp.GetNextPageToken(), err
		})
		if err != nil {
			tb.Fatalf("GetThread: %v", err)
		}
		return func(_ context.Context, i int) error {
			resp, err := e.api.GetThread(ctx, &messagingv1.GetThreadRequest{ThreadId: res.BigThread, PageSize: 50, PageToken: tokens[i%len(tokens)]})
			if err == nil && len(resp.GetMessages()) != 50 {
				err = fmt.Errorf("GetThread page returned %d messages, want 50", len(resp.GetMessages()))
			}
			return err
		}
	}},
	{"SendMessageLargeThread", func(tb testing.TB, e *env, res seed.Result) func(context.Context, int) error {
		ctx := e.as(tb, servicetest.Clinician)
		body := strings.Repeat("growth ", 70)
		return func(_ context.Context, _ int) error {
			_, err := e.api.SendMessage(ctx, &messagingv1.SendMessageRequest{ThreadId: res.BigThread, Body: body, ClientRequestId: uuid.NewString()})
			return err
		}
	}},
}

// growthRounds is how many turns the sizes take, each timing a share of every operation, so
// that the load other work puts on a shared machine falls on every size alike.
const growthRounds = 4

// timeOp times n calls of op after a few untimed ones (connections, the DEK cache, plans) and
// returns their latencies.
func timeOp(tb testing.TB, n int, op func(context.Context, int) error, first int) []time.Duration {
	tb.Helper()
	for i := range 5 {
		if err := op(tb.Context(), first+i); err != nil {
			tb.Fatalf("warm-up: %v", err)
		}
	}
	lat := make([]time.Duration, n)
	for i := range n {
		t0 := time.Now()
		if err := op(tb.Context(), first+i); err != nil {
			tb.Fatalf("operation %d: %v", i, err)
		}
		lat[i] = time.Since(t0)
	}
	return lat
}

// percentile is the p-th percentile of sorted latencies.
func percentile(sorted []time.Duration, p int) time.Duration { return sorted[len(sorted)*p/100] }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkGrowthMessaging: see the comment at the top of this file. Every size is seeded
// first, each on its own service and schema; then the sizes take turns.
func BenchmarkGrowthMessaging(b *testing.B) {
	sizes, nOps := benchkit.GrowthSizes(b, "SECUREMSG_GROWTH_MESSAGES", "10000,100000,1000000", 3000), benchkit.GrowthOps(b, 10)
	ops := make([][]func(context.Context, int) error, len(sizes)) // [size][operation]
	for si, size := range sizes {
		e := newEnv(b, tuned(func(s *wire.Settings) { s.DEKCacheEntries = 4000 }))
		res := seedEnv(b, e, growthShape(size))
		b.Logf("seeded %d messages in %d threads (%d open in the queue) in %s", res.Messages, res.Threads, res.QueueOpen, res.Took)
		explainGrowth(b, e, res, size)
		for _, op := range growthOperations {
			ops[si] = append(ops[si], op.prepare(b, e, res))
		}
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			b.ReportMetric(res.Took.Seconds(), "seed-s")
			b.ReportMetric(float64(res.Messages), "messages")
			b.ReportMetric(float64(res.Threads), "threads")
			b.ReportMetric(float64(res.QueueOpen), "queue-open-threads")
			b.ReportMetric(0, "ns/op")
		})
	}
	lat := make([][][]time.Duration, len(sizes)) // [size][operation]
	for r := range growthRounds {
		for si := range sizes {
			if lat[si] == nil {
				lat[si] = make([][]time.Duration, len(growthOperations))
			}
			for oi := range growthOperations {
				lat[si][oi] = append(lat[si][oi], timeOp(b, nOps/growthRounds, ops[si][oi], r*nOps)...)
			}
		}
	}
	for oi, op := range growthOperations {
		p50, p99 := make([]float64, len(sizes)), make([]float64, len(sizes))
		for si, size := range sizes {
			slices.Sort(lat[si][oi])
			p50[si], p99[si] = ms(percentile(lat[si][oi], 50)), ms(percentile(lat[si][oi], 99))
			b.Logf("%s at %d messages: p50 %.2f ms, p99 %.2f ms", op.name, size, p50[si], p99[si])
		}
		last := len(sizes) - 1
		b.Run(op.name, func(b *testing.B) {
			for si, size := range sizes {
				b.ReportMetric(p50[si], fmt.Sprintf("p50-ms@%d", size))
				b.ReportMetric(p99[si], fmt.Sprintf("p99-ms@%d", size))
			}
			benchkit.Growth(b, p50[last], p50[0], "p50-ms", growthTarget)
			benchkit.Growth(b, p99[last], p99[0], "p99-ms", growthTarget)
			b.ReportMetric(0, "ns/op")
		})
	}
}

// explainGrowth runs the repository calls behind each operation on a pool that logs their SQL,
// then EXPLAIN (ANALYZE, BUFFERS) of each SELECT, into .tmp/bench/explain/messaging-<size>.txt;
// it logs the plans' sequential scans and sorts of threads or messages, which a per-page
// operation must not have.
func explainGrowth(b *testing.B, e *env, res seed.Result, size int) {
	b.Helper()
	log := &benchkit.StatementLog{}
	pool, err := pg.NewPool(b.Context(), pg.Config{URL: testkit.LoadStack().PostgresURL, Schema: e.h.Schema, MaxConns: 2, Tracer: log})
	if err != nil {
		b.Fatalf("pool: %v", err)
	}
	defer pool.Close()
	store := pgstore.New(pool)
	ctx := b.Context()
	big, err := store.Thread(ctx, res.BigThread)
	if err != nil {
		b.Fatalf("Thread: %v", err)
	}
	log.Take()
	calls := []struct {
		name string
		call func() error
	}{
		// The ListQuery app.listScope builds for these callers (page size 50, one more to see
		// whether a next page exists).
		{"ListThreadsPatient", func() error {
			_, err := store.ListThreads(ctx, domain.ListQuery{Viewer: servicetest.Patient.Subject, OwnPatientID: servicetest.Patient.PatientID,
				Box: domain.BoxInbox, Limit: 51})
			return err
		}},
		{"ListThreadsPoolQueue", func() error {
			_, err := store.ListThreads(ctx, domain.ListQuery{Viewer: servicetest.Clinician.Subject, PoolIDs: servicetest.Clinician.Pools,
				FilterPoolIDs: []string{"pool-cardiology"}, Statuses: []domain.Status{domain.StatusOpen}, Box: domain.BoxInbox, Limit: 51})
			return err
		}},
		{"GetThreadPaged", func() error {
			_, err := store.ReadThreadPage(ctx, big, servicetest.Clinician.Subject, 500, 51, nil, nil)
			return err
		}},
		{"SendMessageLargeThread", func() error {
			_, _, err := store.ThreadAndRequest(ctx, res.BigThread, servicetest.Clinician.Subject, uuid.NewString())
			return err
		}},
	}
	var out strings.Builder
	for _, c := range calls {
		if err := c.call(); err != nil {
			b.Fatalf("%s: %v", c.name, err)
		}
		for _, st := range log.Take() {
			if !strings.HasPrefix(strings.TrimSpace(st.SQL), "SELECT") {
				continue
			}
			plan := benchkit.ExplainText(b, e.h.Proc.Pool, st)
			fmt.Fprintf(&out, "== %s at %d messages\n%s\n%s\n", c.name, size, strings.TrimSpace(st.SQL), plan)
			for line := range strings.SplitSeq(plan, "\n") {
				if strings.Contains(line, "Seq Scan on threads") || strings.Contains(line, "Seq Scan on messages") || strings.Contains(line, "Sort  (") {
					b.Logf("%s at %d: %s", c.name, size, strings.TrimSpace(line))
				}
			}
		}
	}
	dir := filepath.Join(testkit.RepoRoot(), ".tmp", "bench", "explain")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("messaging-%d.txt", size)), []byte(out.String()), 0o644); err != nil {
		b.Fatal(err)
	}
}

// TestSeededThreadsOpen: what the seeder stores, the service opens. Threads seeded by COPY
// (each with its own DEK, wrapped in one Transit batch) list for their patient and read through
// GetThread with every body decrypted; a message sent into the big thread lands after the
// seeded ones. The smoke test of make test for the growth benchmarks' seeder.
func TestSeededThreadsOpen(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	shape := growthShape(3000) // 600 threads, 300 the patient's, a 300-message thread
	res := seedEnv(t, e, shape)
	if res.Messages != shape.Messages || res.Threads != 600 {
		t.Fatalf("seeded %d messages in %d threads, want %d in 600", res.Messages, res.Threads, shape.Messages)
	}
	patient := e.as(t, servicetest.Patient)
	seen, tok := 0, ""
	for {
		resp, err := e.api.ListThreads(patient, &messagingv1.ListThreadsRequest{PageSize: 100, PageToken: tok})
		if err != nil {
			t.Fatalf("ListThreads(as the patient) = %v", err)
		}
		for _, th := range resp.GetThreads() {
			if th.GetSubject() != "Seeded thread" {
				t.Fatalf("ListThreads: subject = %q, want the seeded subject decrypted", th.GetSubject())
			}
		}
		seen += len(resp.GetThreads())
		if tok = resp.GetNextPageToken(); tok == "" {
			break
		}
	}
	if seen != shape.PatientThreads {
		t.Errorf("the patient lists %d threads, want %d", seen, shape.PatientThreads)
	}
	clin := e.as(t, servicetest.Clinician)
	if _, err := e.api.SendMessage(clin, &messagingv1.SendMessageRequest{ThreadId: res.BigThread, Body: "after the seed", ClientRequestId: uuid.NewString()}); err != nil {
		t.Fatalf("SendMessage into the seeded thread = %v", err)
	}
	read, tok := 0, ""
	var last *messagingv1.Message
	for {
		resp, err := e.api.GetThread(clin, &messagingv1.GetThreadRequest{ThreadId: res.BigThread, PageSize: 200, PageToken: tok})
		if err != nil {
			t.Fatalf("GetThread(seeded thread) = %v", err)
		}
		for _, m := range resp.GetMessages() {
			if !strings.HasPrefix(m.GetBody(), "Seeded message text") && m.GetBody() != "after the seed" {
				t.Fatalf("GetThread: body %q, want the seeded text", m.GetBody())
			}
			last = m
		}
		read += len(resp.GetMessages())
		if tok = resp.GetNextPageToken(); tok == "" {
			break
		}
	}
	if read != shape.BigThreadMessages+1 || last.GetBody() != "after the seed" {
		t.Errorf("GetThread read %d messages ending %q, want %d ending with the one sent", read, last.GetBody(), shape.BigThreadMessages+1)
	}
}

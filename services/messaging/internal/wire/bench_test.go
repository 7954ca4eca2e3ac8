package wire_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/testkit/benchkit"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
)

// The benchmarks compare the service, over TLS with token verification, policy, sealing and
// the outbox, with a raw pgx baseline writing the same rows in one transaction, measured in
// the same run against the same Postgres (synchronous_commit=on, checked), taking turns so that
// both sides see the same machine. They report ratios with b.ReportMetric and never assert on
// time. Re-run:
//
//	go test -run '^$' -bench . -benchtime 400x ./services/messaging/internal/wire/

type measurement struct {
	opsPerSec float64
	p50, p99  time.Duration
	cpuPerOp  time.Duration
	// pgCPUPerOp is the local Postgres server's CPU per operation (all its processes, the
	// relay's work included): on two shared cores it bounds throughput as much as ours does.
	pgCPUPerOp time.Duration
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rounds is how many alternating turns the service and the baseline take in one comparison, so
// that both see the same machine: other load on a shared two-core machine comes and goes.
const rounds = 4

// compare measures the service's operation and the baseline's alternately, total operations
// each spread over conc workers, and reports each side's throughput, latency percentiles and
// this process's CPU per operation.
func compare(tb testing.TB, conc, total int, svcOp, baseOp func(ctx context.Context, worker, i int) error) (svc, base measurement) {
	tb.Helper()
	var sides [2]struct {
		lat                 []time.Duration
		elapsed, cpu, pgCPU time.Duration
	}
	per := max(total/rounds, conc)
	for r := range rounds {
		for side, op := range []func(context.Context, int, int) error{svcOp, baseOp} {
			pg0, _ := benchkit.ProcessCPU("postgres")
			lat, elapsed, cpu := run(tb, conc, per, r*per, op)
			pg1, _ := benchkit.ProcessCPU("postgres")
			s := &sides[side]
			s.lat, s.elapsed, s.cpu, s.pgCPU = append(s.lat, lat...), s.elapsed+elapsed, s.cpu+cpu, s.pgCPU+pg1-pg0
		}
	}
	out := [2]measurement{}
	for i, s := range sides {
		slices.Sort(s.lat)
		n := len(s.lat)
		out[i] = measurement{opsPerSec: float64(n) / s.elapsed.Seconds(), p50: s.lat[n/2], p99: s.lat[n*99/100],
			cpuPerOp: s.cpu / time.Duration(n), pgCPUPerOp: s.pgCPU / time.Duration(n)}
	}
	return out[0], out[1]
}

// run performs n operations (numbered from first) over conc workers and returns their
// latencies, the wall time and this process's CPU time.
func run(tb testing.TB, conc, n, first int, op func(ctx context.Context, worker, i int) error) ([]time.Duration, time.Duration, time.Duration) {
	tb.Helper()
	lat := make([]time.Duration, n)
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	cpu0, start := cpuTime(), time.Now()
	for w := range conc {
		wg.Go(func() {
			for i := w; i < n; i += conc {
				t0 := time.Now()
				if err := op(context.Background(), w, first+i); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				lat[i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
	if firstErr != nil {
		tb.Fatalf("benchmark operation: %v", firstErr)
	}
	return lat, elapsed, cpu
}

func report(b *testing.B, svc, base measurement) {
	benchkit.Compare(b, svc.opsPerSec, base.opsPerSec, "ops/s")
	benchkit.Compare(b, float64(svc.p50.Microseconds())/1000, float64(base.p50.Microseconds())/1000, "p50-ms")
	benchkit.Compare(b, float64(svc.p99.Microseconds())/1000, float64(base.p99.Microseconds())/1000, "p99-ms")
	benchkit.Compare(b, float64(svc.cpuPerOp.Microseconds()), float64(base.cpuPerOp.Microseconds()), "cpu-µs/op")
	if svc.pgCPUPerOp > 0 {
		benchkit.Compare(b, float64(svc.pgCPUPerOp.Microseconds()), float64(base.pgCPUPerOp.Microseconds()), "pg-cpu-µs/op")
	}
	b.ReportMetric(0, "ns/op")
}

func checkDurability(b *testing.B, e *env) {
	var sc string
	if err := e.h.Proc.Pool.QueryRow(b.Context(), `SHOW synchronous_commit`).Scan(&sc); err != nil || sc != "on" {
		b.Fatalf("synchronous_commit = %q (%v), want on for a fair baseline", sc, err)
	}
}

// benchClinicians are distinct principals so that per-principal rate limits do not throttle.
func benchClinician(i int) servicetest.Persona {
	return servicetest.Persona{Subject: fmt.Sprintf("bench-clinician-%d", i), Roles: []string{"clinician"}, Pools: []string{"pool-cardiology"}}
}

// BenchmarkSendMessage: SendMessage over TLS with auth against raw pgx inserting the message,
// its MessageCreated event and its audit record in one transaction.
func BenchmarkSendMessage(b *testing.B) {
	e := newEnv(b)
	checkDurability(b, e)
	for _, conc := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("c=%d", conc), func(b *testing.B) {
			total := max(b.N, 200)
			ctxs := make([]context.Context, conc)
			threads := make([]string, conc)
			for w := range conc {
				ctxs[w] = e.h.As(b, context.Background(), benchClinician(w))
				threads[w] = e.createThread(b, servicetest.Patient, &messagingv1.CreateThreadRequest{Subject: "bench", Body: "bench"}).GetThread().GetThreadId()
			}
			body := string(make([]byte, 500))
			sealed := make([]byte, len(body)+66)
			_, _ = rand.Read(sealed)
			event, audit := make([]byte, 220), make([]byte, 260)
			svc, base := compare(b, conc, total, func(_ context.Context, w, _ int) error {
				_, err := e.api.SendMessage(ctxs[w], &messagingv1.SendMessageRequest{ThreadId: threads[w], Body: body, ClientRequestId: uuid.NewString()})
				return err
			}, func(ctx context.Context, w, i int) error {
				return pgx.BeginFunc(ctx, e.h.Proc.Pool, func(tx pgx.Tx) error {
					if _, err := tx.Exec(ctx, `INSERT INTO messages (id, thread_id, seq, sender_subject, sender_role, body_sealed, created_at, client_request_id, request_fp_sealed)
						VALUES ($1, $2, $3, $4, 3, $5, now(), $6, $5)`, uuid.NewString(), threads[w], 1_000_000+i, "bench", sealed, uuid.NewString()); err != nil {
						return err
					}
					return outbox.Add(ctx, tx, outbox.Event{Subject: e.h.Topology.EventsSubject + ".message.created.pool-cardiology", Payload: event},
						outbox.Event{Subject: e.h.Topology.AuditSubject + ".messaging", Payload: audit})
				})
			})
			report(b, svc, base)
		})
	}
}

// BenchmarkGetThread: GetThread of 50 messages (read, decrypt, audit in the same transaction)
// against raw pgx selecting the thread and its messages and inserting the audit record.
func BenchmarkGetThread(b *testing.B) {
	e := newEnv(b)
	checkDurability(b, e)
	th := e.createThread(b, servicetest.Patient, &messagingv1.CreateThreadRequest{Subject: "bench", Body: "bench"}).GetThread().GetThreadId()
	clin := e.as(b, servicetest.Clinician)
	for range 49 {
		if _, err := e.api.SendMessage(clin, &messagingv1.SendMessageRequest{ThreadId: th, Body: string(make([]byte, 500)), ClientRequestId: uuid.NewString()}); err != nil {
			b.Fatal(err)
		}
	}
	for _, conc := range []int{1, 16} {
		b.Run(fmt.Sprintf("c=%d", conc), func(b *testing.B) {
			total := max(b.N, 200)
			ctxs := make([]context.Context, conc)
			for w := range conc {
				ctxs[w] = e.h.As(b, context.Background(), benchClinician(w))
			}
			audit := make([]byte, 260)
			svc, base := compare(b, conc, total, func(_ context.Context, w, _ int) error {
				r, err := e.api.GetThread(ctxs[w], &messagingv1.GetThreadRequest{ThreadId: th})
				if err == nil && len(r.GetMessages()) != 50 {
					err = fmt.Errorf("GetThread returned %d messages, want 50", len(r.GetMessages()))
				}
				return err
			}, func(ctx context.Context, _, _ int) error {
				return pgx.BeginFunc(ctx, e.h.Proc.Pool, func(tx pgx.Tx) error {
					var pool string
					if err := tx.QueryRow(ctx, `SELECT pool_id FROM threads WHERE id = $1`, th).Scan(&pool); err != nil {
						return err
					}
					rows, err := tx.Query(ctx, `SELECT id, seq, sender_subject, body_sealed, created_at FROM messages WHERE thread_id = $1 ORDER BY seq LIMIT 51`, th)
					if err != nil {
						return err
					}
					n := 0
					var id, sender string
					var seq int32
					var body []byte
					var at time.Time
					for rows.Next() { // read what was selected, as any reader must
						if err := rows.Scan(&id, &seq, &sender, &body, &at); err != nil {
							return err
						}
						n++
					}
					rows.Close()
					if n != 50 {
						return fmt.Errorf("baseline read %d messages", n)
					}
					return outbox.Add(ctx, tx, outbox.Event{Subject: e.h.Topology.AuditSubject + ".messaging", Payload: audit})
				})
			})
			report(b, svc, base)
		})
	}
}

// BenchmarkVaultCallsHotThread counts Transit requests per 1,000 sends into one thread by 16
// clients (the DEK is unwrapped once and served from the keyring's cache).
func BenchmarkVaultCallsHotThread(b *testing.B) {
	e := newEnv(b)
	th := e.createThread(b, servicetest.Patient, &messagingv1.CreateThreadRequest{Subject: "bench", Body: "bench"}).GetThread().GetThreadId()
	ctxs := make([]context.Context, 16)
	for w := range ctxs {
		ctxs[w] = e.h.As(b, context.Background(), benchClinician(w))
	}
	before := e.transit.Requests()
	lat, elapsed, _ := run(b, 16, 1000, 0, func(_ context.Context, w, _ int) error {
		_, err := e.api.SendMessage(ctxs[w], &messagingv1.SendMessageRequest{ThreadId: th, Body: "hot", ClientRequestId: uuid.NewString()})
		return err
	})
	b.ReportMetric(float64(e.transit.Requests()-before), "vault-calls/1000-sends")
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "hot-thread-ops/s")
	b.ReportMetric(0, "ns/op")
}

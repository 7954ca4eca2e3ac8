package e2e_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"

	"github.com/securemsg/securemsg/services/internal/testkit/privstack"
)

// The load test runs only when asked (`make load`, scripts/load.sh): it is a measurement, not a
// check `make test` should spend half a minute on.
var (
	loadDuration   = flag.Duration("load.duration", 0, "run TestLoad for this long (0 skips it; make load uses 30s)")
	loadPatients   = flag.Int("load.patients", 4, "concurrent patient clients (as the seeded patient and teen)")
	loadClinicians = flag.Int("load.clinicians", 2, "concurrent clinician clients")
	loadFileBytes  = flag.Int("load.file-bytes", 8<<10, "size of each uploaded file")
)

// TestLoad runs a mixed workload against a private stack (all four services, real
// dependencies) for -load.duration: patients create threads, reply, upload and download small
// files; clinicians list their pool, read threads and reply. It prints throughput, p50/p99 per
// rpc, errors and each service's peak memory, then reconciles; it fails on any error.
//
// Per-principal rate limits are raised for the run (SECUREMSG_RATE_PER_PRINCIPAL): the
// workload has only a few seeded principals, and the test measures the services, not the
// limiter (which its own tests cover).
func TestLoad(t *testing.T) {
	if *loadDuration <= 0 {
		t.Skip("the load test runs with -load.duration (make load)")
	}
	e := newEnv(t, privstack.Options{Services: privstack.AllServices, Env: map[string]string{
		"SECUREMSG_RATE_PER_PRINCIPAL": "100000", "SECUREMSG_BURST_PER_PRINCIPAL": "100000",
	}})
	e.tokens["teen"] = e.s.Token(t, "teen")
	e.warmUp(t)
	rec := &recorder{lat: map[string][]time.Duration{}, errs: map[string]int{}, first: map[string]error{}}

	ctx, cancel := context.WithTimeout(t.Context(), *loadDuration)
	defer cancel()
	began := time.Now()
	var wg sync.WaitGroup
	for i := range *loadPatients {
		user := []string{"patient", "teen"}[i%2]
		wg.Go(func() { e.patientClient(ctx, rec, user, rand.New(rand.NewPCG(uint64(i), 1))) })
	}
	for i := range *loadClinicians {
		wg.Go(func() { e.clinicianClient(ctx, rec, rand.New(rand.NewPCG(uint64(i), 2))) })
	}
	wg.Wait()
	elapsed := time.Since(began)

	total, errs := rec.print(os.Stdout, elapsed)
	fmt.Printf("\n%-14s %12s\n", "service", "peak RSS")
	for _, svc := range e.s.Services() {
		peak, err := e.s.PeakRSS(svc)
		if err != nil {
			t.Errorf("PeakRSS(%s) = %v", svc, err)
			continue
		}
		fmt.Printf("%-14s %9.1f MiB\n", svc, mib(peak))
	}
	fmt.Printf("\n%d calls in %s (%.1f calls/s) by %d patient and %d clinician clients; %d errors\n",
		total, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(), *loadPatients, *loadClinicians, errs)
	if errs > 0 {
		t.Errorf("%d calls failed, want 0", errs)
	}
	e.reconcile(t, 0)
}

// recorder collects each rpc's latencies and errors. Only successful calls' latencies count.
type recorder struct {
	mu    sync.Mutex
	lat   map[string][]time.Duration
	errs  map[string]int
	first map[string]error
}

// call times f as rpc name. A call cut short by the end of the run is not counted.
func (r *recorder) call(ctx context.Context, name string, f func(context.Context) error) error {
	t0 := time.Now()
	// Each call gets its own deadline so a stuck call shows as an error, not a hang.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	err := f(cctx)
	cancel()
	d := time.Since(t0)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.errs[name]++
		if r.first[name] == nil {
			r.first[name] = err
		}
		return err
	}
	r.lat[name] = append(r.lat[name], d)
	return nil
}

// print writes one line per rpc and returns the calls and errors in total.
func (r *recorder) print(w *os.File, elapsed time.Duration) (total, errs int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := map[string]bool{}
	for n := range r.lat {
		names[n] = true
	}
	for n := range r.errs {
		names[n] = true
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	// The report goes to the test output; a failed write there has nowhere better to go.
	_, _ = fmt.Fprintf(w, "\n%-20s %8s %9s %10s %10s %10s %7s\n", "rpc", "calls", "calls/s", "p50", "p99", "max", "errors")
	for _, n := range sorted {
		l := slices.Clone(r.lat[n])
		slices.Sort(l)
		calls := len(l) + r.errs[n]
		total += calls
		errs += r.errs[n]
		_, _ = fmt.Fprintf(w, "%-20s %8d %9.1f %10s %10s %10s %7d\n", n, calls, float64(calls)/elapsed.Seconds(),
			pct(l, 0.50), pct(l, 0.99), pct(l, 1), r.errs[n])
	}
	for _, n := range sorted {
		if err := r.first[n]; err != nil {
			_, _ = fmt.Fprintf(w, "  first %s error: %v\n", n, err)
		}
	}
	return total, errs
}

func pct(sorted []time.Duration, p float64) string {
	if len(sorted) == 0 {
		return "-"
	}
	i := min(int(p*float64(len(sorted))), len(sorted)-1)
	return sorted[i].Round(10 * time.Microsecond).String()
}

// patientClient loops until ctx ends: create a thread (sometimes with a fresh attachment),
// reply in one of its threads, upload a file and later download it, list its inbox.
func (e *env) patientClient(ctx context.Context, rec *recorder, user string, rng *rand.Rand) {
	var threads []string
	var clean []string   // attachments scanned clean, with their bytes in e.uploads
	var pending []string // uploaded, not yet seen clean
	for ctx.Err() == nil {
		switch r := rng.Float64(); {
		case len(threads) == 0 || r < 0.15:
			var attach []string
			if len(clean) > 0 && rng.Float64() < 0.5 {
				attach, clean = clean[len(clean)-1:], clean[:len(clean)-1] // an attachment binds once
			}
			_ = rec.call(ctx, "CreateThread", func(ctx context.Context) error {
				resp, err := e.messaging.CreateThread(e.as(ctx, user), &messagingv1.CreateThreadRequest{
					PoolId: pool, Category: commonv1.ThreadCategory_THREAD_CATEGORY_CLINICAL_QUESTION,
					Sensitivity: commonv1.Sensitivity_SENSITIVITY_NORMAL,
					Subject:     "load " + e.markers[0], Body: "load " + e.markers[1],
					AttachmentIds: attach, ClientRequestId: uuid.NewString(),
				})
				if err == nil {
					threads = append(threads, resp.GetThread().GetThreadId())
					e.ackThread(resp)
				}
				return err
			})
		case r < 0.45:
			thread := threads[rng.IntN(len(threads))]
			_ = rec.call(ctx, "SendMessage", func(ctx context.Context) error {
				_, err := e.sendAs(ctx, user, thread)
				return err
			})
		case r < 0.6:
			data := samplePDF(e.markers[3]+"-"+randomHex(4), *loadFileBytes)
			_ = rec.call(ctx, "UploadAttachment", func(ctx context.Context) error {
				a, err := e.uploadAs(ctx, user, data)
				if err == nil {
					pending = append(pending, a.GetAttachmentId())
				}
				return err
			})
		case r < 0.8 && len(pending) > 0:
			id := pending[0]
			_ = rec.call(ctx, "GetAttachment", func(ctx context.Context) error {
				got, err := e.attachment.GetAttachment(e.as(ctx, user), &attachmentv1.GetAttachmentRequest{AttachmentId: id})
				if err != nil {
					return err
				}
				switch st := got.GetAttachment().GetScanState(); st {
				case attachmentv1.ScanState_SCAN_STATE_CLEAN:
					pending = pending[1:]
					clean = append(clean, id)
				case attachmentv1.ScanState_SCAN_STATE_PENDING:
				default:
					pending = pending[1:]
					return fmt.Errorf("attachment %s scanned %v, want CLEAN", id, st)
				}
				return nil
			})
		case r < 0.9 && len(clean) > 0:
			id := clean[rng.IntN(len(clean))]
			_ = rec.call(ctx, "DownloadAttachment", func(ctx context.Context) error {
				got, err := e.download(ctx, user, id)
				if err != nil {
					return err
				}
				e.mu.Lock()
				want := e.uploads[id].data
				e.mu.Unlock()
				if !bytes.Equal(got, want) {
					return fmt.Errorf("downloaded %d bytes that differ from the %d uploaded", len(got), len(want))
				}
				return nil
			})
		default:
			_ = rec.call(ctx, "ListThreads", func(ctx context.Context) error {
				_, err := e.messaging.ListThreads(e.as(ctx, user), &messagingv1.ListThreadsRequest{Box: messagingv1.Box_BOX_INBOX, PageSize: 20})
				return err
			})
		}
	}
}

// clinicianClient loops until ctx ends: list the pool's threads, read one, reply to half.
func (e *env) clinicianClient(ctx context.Context, rec *recorder, rng *rand.Rand) {
	for ctx.Err() == nil {
		var threads []string
		err := rec.call(ctx, "ListThreads", func(ctx context.Context) error {
			resp, err := e.messaging.ListThreads(e.as(ctx, "clinician"), &messagingv1.ListThreadsRequest{PoolIds: []string{pool}, PageSize: 50})
			for _, th := range resp.GetThreads() {
				threads = append(threads, th.GetThreadId())
			}
			return err
		})
		if err != nil || len(threads) == 0 {
			continue
		}
		thread := threads[rng.IntN(len(threads))]
		if rec.call(ctx, "GetThread", func(ctx context.Context) error {
			_, err := e.messaging.GetThread(e.as(ctx, "clinician"), &messagingv1.GetThreadRequest{ThreadId: thread, PageSize: 50})
			return err
		}) != nil {
			continue
		}
		if rng.IntN(2) == 0 {
			_ = rec.call(ctx, "SendMessage", func(ctx context.Context) error {
				_, err := e.sendAs(ctx, "clinician", thread)
				return err
			})
		}
	}
}

// sendAs replies in thread as user with a fresh client request id.
func (e *env) sendAs(ctx context.Context, user, thread string) (string, error) {
	return e.send(ctx, user, thread, uuid.NewString())
}

// uploadAs uploads data as user in 32 KiB chunks.
func (e *env) uploadAs(ctx context.Context, user string, data []byte) (*attachmentv1.Attachment, error) {
	return e.uploadWith(ctx, user, data, 32<<10, nil)
}

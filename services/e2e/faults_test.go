package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"

	"github.com/securemsg/securemsg/services/internal/testkit/privstack"
)

// The fault tests run one after another (no t.Parallel): each owns a private stack of real
// processes, and two cores cannot run several of them side by side within their deadlines.

// messagingOnly runs the services a messaging fault needs: no attachment service, no MinIO,
// no clamd (fewer processes, a faster start).
var messagingOnly = privstack.Options{
	Services: []string{"messaging", "notification", "audit"},
	Without:  []string{"minio", "clamd"},
}

// warmUp creates a thread and waits until its events and audit records went through, so the
// usage baseline is taken with every connection (NATS, pgx, Vault) established.
func (e *env) warmUp(t *testing.T) string {
	t.Helper()
	thread, _, err := e.createThread(t.Context())
	if err != nil {
		t.Fatalf("CreateThread (warm-up) = %v", err)
	}
	if _, err := e.messaging.GetThread(e.as(t.Context(), "clinician"), &messagingv1.GetThreadRequest{ThreadId: thread}); err != nil {
		t.Fatalf("GetThread (warm-up) = %v", err)
	}
	if err := eventually(t.Context(), 30*time.Second, 200*time.Millisecond, e.outboxDrained); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	e.snapshotUsage()
	return thread
}

// sendRetrying sends one reply, retrying with the same client request id (so a retry never
// makes a second message) until it is acknowledged or within passes. It returns the error
// codes seen on the way.
func (e *env) sendRetrying(ctx context.Context, user, thread string, within time.Duration) (string, []codes.Code, error) {
	crid := uuid.NewString()
	var seen []codes.Code
	var id string
	err := eventually(ctx, within, 100*time.Millisecond, func(ctx context.Context) error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var err error
		id, err = e.send(cctx, user, thread, crid)
		if err != nil {
			seen = append(seen, status.Code(err))
		}
		return err
	})
	return id, seen, err
}

// TestFaultNATSRestart stops NATS in the middle of a burst of sends and starts it again: every
// acknowledged send's message.created event, and every auto-reply's, reaches the events stream
// exactly once, and every audit record reaches the audit log.
func TestFaultNATSRestart(t *testing.T) {
	e := newEnv(t, messagingOnly)
	ctx := t.Context()
	thread := e.warmUp(t)

	// Workers send until told to stop (at most maxPerWorker each): before, during and after
	// the outage.
	const workers, maxPerWorker = 4, 60
	var (
		acks    atomic.Int32
		done    atomic.Bool
		wg      sync.WaitGroup
		errMu   sync.Mutex
		sendErr []error
	)
	for w := range workers {
		user := []string{"patient", "clinician"}[w%2]
		wg.Go(func() {
			for i := 0; i < maxPerWorker && !done.Load(); i++ {
				if _, _, err := e.sendRetrying(ctx, user, thread, 30*time.Second); err != nil {
					errMu.Lock()
					sendErr = append(sendErr, err)
					errMu.Unlock()
					return
				}
				acks.Add(1)
			}
		})
	}
	defer wg.Wait()
	defer done.Store(true) // a t.Fatal below must not leave the workers sending
	waitFor := func(n int32) {
		_ = eventually(ctx, 20*time.Second, 20*time.Millisecond, func(context.Context) error {
			if acks.Load() < n {
				return errors.New("not yet")
			}
			return nil
		})
	}
	waitFor(8)
	if err := e.s.NATS.Stop(); err != nil {
		t.Fatalf("NATS.Stop() = %v", err)
	}
	down, stopped := acks.Load(), time.Now()
	// 3s of outage with at least 12 sends acknowledged meanwhile: the relays must buffer and
	// then catch up, the consumers must resume.
	waitFor(down + 12)
	_ = eventually(ctx, 5*time.Second, 50*time.Millisecond, func(context.Context) error {
		if time.Since(stopped) < 3*time.Second {
			return errors.New("not yet")
		}
		return nil
	})
	during := acks.Load() - down
	t.Logf("NATS down for %s: %d sends acknowledged meanwhile", time.Since(stopped).Round(time.Millisecond), during)
	if during < 12 {
		// DESIGN.md: NATS being down delays events; it never refuses writes (the outbox holds them).
		t.Errorf("%d sends acknowledged with NATS down, want >= 12 (writes go on through the outbox)", during)
	}
	if err := e.s.NATS.Start(); err != nil {
		t.Fatalf("NATS.Start() = %v", err)
	}
	waitFor(acks.Load() + 8)
	done.Store(true)
	wg.Wait()
	if len(sendErr) > 0 {
		t.Fatalf("sends failed for good: %v", errors.Join(sendErr...))
	}

	// Count message.created events per message id on the events stream: one for each
	// acknowledged send and one for each of the pool's automatic replies (the warm-up thread's),
	// which are told apart by the column the messages table stores them with.
	acked := e.acked()
	autoReplies, err := e.storedAutoReplies(ctx)
	if err != nil {
		t.Fatalf("read the stored auto-replies: %v", err)
	}
	want := slices.Concat(slices.Collect(maps.Keys(acked)), slices.Collect(maps.Keys(autoReplies)))
	counts, autoCounts, err := eventCounts(ctx, e.s.NATSURL(), want)
	if err != nil {
		t.Fatalf("read the events stream: %v", err)
	}
	lost, dup := 0, 0
	for _, id := range want {
		_, auto := autoReplies[id]
		switch n := counts[id]; {
		case n == 0:
			lost++
			t.Errorf("message %s (auto-reply %t): no message.created event on the stream", id, auto)
		case n > 1:
			dup++
			t.Errorf("message %s (auto-reply %t): %d message.created events on the stream, want 1", id, auto, n)
		case (autoCounts[id] == 1) != auto:
			t.Errorf("message %s: message.created event on the stream has auto_reply %t, want %t (messages.auto_reply)", id, autoCounts[id] == 1, auto)
		}
	}
	for id, n := range counts {
		_, ok := acked[id]
		if _, auto := autoReplies[id]; !ok && !auto {
			t.Errorf("message.created event (x%d) for %s, which was never acknowledged and is no stored auto-reply", n, id)
		}
	}
	t.Logf("%d acknowledged sends and %d auto-replies: %d lost, %d duplicated events", len(acked), len(autoReplies), lost, dup)
	// Audit records the audit consumer had been sent when NATS stopped come back after its
	// AckWait (15 s, services/audit/internal/ports/nats.go): allow for it.
	e.drainWithin = 45 * time.Second
	e.reconcile(t, 0)
}

// eventCounts reads the events stream's message.created events until each message id of want
// was seen (or 60s passed: the outbox relay backs off up to 30s while NATS is away) and counts
// them per message id: all of them, and those flagged auto_reply.
func eventCounts(ctx context.Context, url string, want []string) (counts, autoCounts map[string]int, err error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return nil, nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, nil, err
	}
	counts, autoCounts = map[string]int{}, map[string]int{}
	var seq uint64
	cons, err := js.OrderedConsumer(ctx, "SECUREMSG_EVENTS", jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"securemsg.events.message.created.>"},
	})
	if err != nil {
		return nil, nil, err
	}
	err = eventually(ctx, 60*time.Second, 250*time.Millisecond, func(ctx context.Context) error {
		for {
			info, err := cons.Info(ctx)
			if err != nil {
				return err
			}
			if info.NumPending == 0 {
				break
			}
			batch, err := cons.FetchNoWait(int(min(info.NumPending, 256)))
			if err != nil {
				return err
			}
			for msg := range batch.Messages() {
				md, err := msg.Metadata()
				if err != nil {
					return err
				}
				seq = md.Sequence.Stream
				ev := &eventsv1.MessageCreated{}
				if err := proto.Unmarshal(msg.Data(), ev); err != nil {
					return fmt.Errorf("decode event %d: %w", seq, err)
				}
				counts[ev.GetMessageId()]++
				if ev.GetAutoReply() {
					autoCounts[ev.GetMessageId()]++
				}
			}
			if err := batch.Error(); err != nil {
				return err
			}
		}
		if missing := slices.DeleteFunc(slices.Clone(want), func(id string) bool { return counts[id] > 0 }); len(missing) > 0 {
			return fmt.Errorf("%d of %d messages' events on the stream", len(want)-len(missing), len(want))
		}
		return nil
	})
	return counts, autoCounts, err
}

// storedAutoReplies returns the pool's automatic replies stored (messages.auto_reply): message
// id → thread id.
func (e *env) storedAutoReplies(ctx context.Context) (map[string]string, error) {
	rows, err := e.db.Query(ctx, `SELECT id::text, thread_id::text FROM messaging.messages WHERE auto_reply`)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	var id, thread string
	_, err = pgx.ForEachRow(rows, []any{&id, &thread}, func() error { out[id] = thread; return nil })
	return out, err
}

// TestFaultVaultDown stops the Transit server: a thread whose DEK is cached can still be read
// and replied to, a new thread fails closed with Unavailable, and all recovers after restart.
func TestFaultVaultDown(t *testing.T) {
	e := newEnv(t, privstack.Options{Services: []string{"messaging", "audit"}, Without: []string{"minio", "clamd", "mailpit"}})
	ctx := t.Context()
	thread := e.warmUp(t)

	if err := e.s.Vault.Stop(); err != nil {
		t.Fatal(err)
	}
	got, err := e.messaging.GetThread(e.as(ctx, "clinician"), &messagingv1.GetThreadRequest{ThreadId: thread})
	if err != nil {
		t.Errorf("GetThread(cached DEK) with Vault down = %v, want OK", err)
	} else if want := "question " + e.markers[0]; got.GetThread().GetSubject() != want {
		t.Errorf("GetThread(cached DEK) subject = %q, want %q", got.GetThread().GetSubject(), want)
	}
	if _, err := e.send(ctx, "clinician", thread, uuid.NewString()); err != nil {
		t.Errorf("SendMessage(cached DEK) with Vault down = %v, want OK", err)
	}
	_, _, err = e.createThread(ctx)
	wantCode(t, "CreateThread with Vault down", err, codes.Unavailable)

	if err := e.s.Vault.Start(); err != nil {
		t.Fatal(err)
	}
	if err := eventually(ctx, 30*time.Second, 200*time.Millisecond, func(ctx context.Context) error {
		_, _, err := e.createThread(ctx)
		return err
	}); err != nil {
		t.Errorf("CreateThread after Vault restart = %v, want OK within 30s", err)
	}
	e.reconcile(t, 0)
}

// TestFaultPostgresRestart stops Postgres while sends go on: during the gap they fail with
// Unavailable (never Internal), and no acknowledged message is lost once it is back.
func TestFaultPostgresRestart(t *testing.T) {
	e := newEnv(t, privstack.Options{Services: []string{"messaging", "audit"}, Without: []string{"minio", "clamd", "mailpit"}})
	ctx := t.Context()
	thread := e.warmUp(t)

	for range 5 {
		if _, err := e.send(ctx, "patient", thread, uuid.NewString()); err != nil {
			t.Fatalf("SendMessage before the fault = %v", err)
		}
	}
	if err := e.s.Postgres.Stop(); err != nil {
		t.Fatalf("Postgres.Stop() = %v", err)
	}
	gap := map[codes.Code]int{}
	for i := range 10 {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var err error
		if i%2 == 0 {
			_, err = e.send(cctx, "patient", thread, uuid.NewString())
		} else {
			_, err = e.messaging.GetThread(e.as(cctx, "clinician"), &messagingv1.GetThreadRequest{ThreadId: thread})
		}
		cancel()
		gap[status.Code(err)]++
		if err == nil {
			t.Errorf("call %d with Postgres down succeeded, want Unavailable", i)
		}
	}
	for code, n := range gap {
		if code != codes.Unavailable && code != codes.OK {
			t.Errorf("%d calls with Postgres down ended with %v, want Unavailable", n, code)
		}
	}
	t.Logf("calls while Postgres was down: %v", gap)
	if err := e.s.Postgres.Start(); err != nil {
		t.Fatalf("Postgres.Start() = %v", err)
	}
	if _, seen, err := e.sendRetrying(ctx, "patient", thread, 30*time.Second); err != nil {
		t.Errorf("SendMessage after Postgres restart = %v (codes on the way %v), want OK within 30s", err, seen)
	}
	e.reconcile(t, 0)
}

// attachmentStack runs what an attachment fault needs, with the clean-up job and the re-scan
// job on short intervals so reconcile and the clamd test need not wait minutes.
var attachmentStack = privstack.Options{
	Services: []string{"messaging", "attachment", "audit"},
	Without:  []string{"mailpit"},
	ServiceEnv: map[string]map[string]string{"attachment": {
		"SECUREMSG_ATTACHMENT_UPLOAD_TTL":       "3s",
		"SECUREMSG_ATTACHMENT_CLEANUP_INTERVAL": "1s",
		"SECUREMSG_CLAMD_RESCAN_INTERVAL":       "1s",
	}},
}

// objectWindow is attachmentStack's clean-up window: upload TTL plus a clean-up interval.
const objectWindow = 4 * time.Second

// TestFaultMinIODown stops MinIO in the middle of an upload: the upload fails cleanly with
// Unavailable, nothing half-uploaded becomes visible, and uploads work again after restart.
func TestFaultMinIODown(t *testing.T) {
	e := newEnv(t, attachmentStack)
	ctx := t.Context()
	first, err := e.upload(ctx, samplePDF(e.markers[3], 4<<10), 1<<10, nil)
	if err != nil {
		t.Fatalf("UploadAttachment before the fault = %v", err)
	}
	e.warmUp(t)
	visibleBefore := e.visibleAttachments(t)

	data := samplePDF(e.markers[3], 3<<20) // several segments and (8 MiB parts aside) chunks
	_, err = e.upload(ctx, data, 64<<10, func() {
		if err := e.s.MinIO.Stop(); err != nil {
			t.Errorf("MinIO.Stop() = %v", err)
		}
	})
	wantCode(t, "UploadAttachment with MinIO stopped mid-upload", err, codes.Unavailable)
	if got := e.visibleAttachments(t); got != visibleBefore {
		t.Errorf("attachments in a visible state after the failed upload = %d, want %d (nothing half-visible)", got, visibleBefore)
	}
	// The attachment uploaded before the fault is known but cannot be served meanwhile.
	if _, err := e.download(ctx, "patient", first.GetAttachmentId()); err == nil {
		t.Errorf("DownloadAttachment with MinIO down succeeded, want an error")
	} else {
		wantCode(t, "DownloadAttachment with MinIO down", err, codes.Unavailable)
	}

	if err := e.s.MinIO.Start(); err != nil {
		t.Fatalf("MinIO.Start() = %v", err)
	}
	var again string
	if err := eventually(ctx, 30*time.Second, 250*time.Millisecond, func(ctx context.Context) error {
		a, err := e.upload(ctx, data, 64<<10, nil)
		if err == nil {
			again = a.GetAttachmentId()
		}
		return err
	}); err != nil {
		t.Fatalf("UploadAttachment after MinIO restart = %v, want OK within 30s", err)
	}
	if err := e.waitClean(ctx, again); err != nil {
		t.Error(err)
	}
	e.reconcile(t, objectWindow)
}

// visibleAttachments counts attachment rows a caller could see (pending or clean).
func (e *env) visibleAttachments(t *testing.T) int {
	t.Helper()
	var n int
	if err := e.db.QueryRow(t.Context(), `SELECT count(*) FROM attachment.attachments WHERE state IN ('pending', 'clean')`).Scan(&n); err != nil {
		t.Fatalf("count attachments: %v", err)
	}
	return n
}

// waitClean polls id's scan state until CLEAN (30s).
func (e *env) waitClean(ctx context.Context, id string) error {
	var last attachmentv1.ScanState
	err := eventually(ctx, 30*time.Second, 200*time.Millisecond, func(ctx context.Context) error {
		st, err := e.scanState(ctx, id)
		if err != nil {
			return err
		}
		last = st
		if st != attachmentv1.ScanState_SCAN_STATE_CLEAN {
			return fmt.Errorf("scan state %v", st)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("attachment %s: %w, want CLEAN within 30s (last %v)", id, err, last)
	}
	return nil
}

// TestFaultClamdDown stops clamd: uploads are accepted but wait PENDING and are never served
// while unscanned; once clamd is back the re-scan job marks them CLEAN and they download
// byte-exact.
func TestFaultClamdDown(t *testing.T) {
	e := newEnv(t, attachmentStack)
	ctx := t.Context()
	if _, err := e.upload(ctx, samplePDF(e.markers[3], 1<<10), 1<<10, nil); err != nil {
		t.Fatalf("UploadAttachment before the fault = %v", err)
	}
	e.warmUp(t)

	if err := e.s.Clamd.Stop(); err != nil {
		t.Fatalf("Clamd.Stop() = %v", err)
	}
	var ids []string
	for i := range 3 {
		a, err := e.upload(ctx, samplePDF(e.markers[3], (i+1)*20<<10), 8<<10, nil)
		if err != nil {
			t.Fatalf("UploadAttachment %d with clamd down = %v, want accepted as PENDING", i, err)
		}
		if st := a.GetScanState(); st != attachmentv1.ScanState_SCAN_STATE_PENDING {
			t.Errorf("UploadAttachment %d with clamd down: scan state %v, want PENDING", i, st)
		}
		ids = append(ids, a.GetAttachmentId())
	}
	// Across several re-scan intervals, nothing unscanned is served.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		for _, id := range ids {
			if st, err := e.scanState(ctx, id); err != nil || st != attachmentv1.ScanState_SCAN_STATE_PENDING {
				t.Fatalf("GetAttachment(%s) with clamd down = %v, %v; want PENDING", id, st, err)
			}
			got, err := e.download(ctx, "patient", id)
			if err == nil {
				t.Fatalf("DownloadAttachment(%s) of an unscanned file returned %d bytes, want refused", id, len(got))
			}
			wantCode(t, "DownloadAttachment(unscanned)", err, codes.FailedPrecondition, codes.Unavailable)
		}
		// Pace the probes; a cancelled ctx fails the next probe.
		select {
		case <-ctx.Done():
		case <-time.After(300 * time.Millisecond):
		}
	}

	if err := e.s.Clamd.Start(); err != nil {
		t.Fatalf("Clamd.Start() = %v", err)
	}
	for _, id := range ids {
		if err := e.waitClean(ctx, id); err != nil {
			t.Error(err)
		}
	}
	e.reconcile(t, objectWindow) // downloads every clean acknowledged upload byte-exact
}

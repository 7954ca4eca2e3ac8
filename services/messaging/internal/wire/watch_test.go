package wire_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auth/authtest"
	"github.com/securemsg/securemsg/services/internal/platform/config"
	"github.com/securemsg/securemsg/services/internal/platform/daemon"
	"github.com/securemsg/securemsg/services/internal/testkit"
	"github.com/securemsg/securemsg/services/internal/testkit/benchkit"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
	"github.com/securemsg/securemsg/services/messaging/internal/wire"
)

// watcher is an open WatchInbox stream whose messages a goroutine records with their arrival
// times.
type watcher struct {
	name string

	mu    sync.Mutex
	msgs  []*messagingv1.WatchInboxResponse
	at    []time.Time
	err   error // how the stream ended; nil while it runs
	ended chan struct{}
}

// openWatch opens a watch with ctx (which carries the caller's token) and returns once its
// first message, the heartbeat that says it is live, has arrived.
func openWatch(t testing.TB, ctx context.Context, api messagingv1.MessagingServiceClient, name string) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	stream, err := api.WatchInbox(ctx, &messagingv1.WatchInboxRequest{})
	if err != nil {
		t.Fatalf("WatchInbox(as %s) = %v", name, err)
	}
	first, err := stream.Recv()
	if err != nil || first.GetHeartbeat() == nil {
		t.Fatalf("WatchInbox(as %s) first message = %v, %v; want a heartbeat", name, first, err)
	}
	w := &watcher{name: name, ended: make(chan struct{})}
	go func() {
		defer close(w.ended)
		for {
			m, err := stream.Recv()
			now := time.Now()
			w.mu.Lock()
			if err != nil {
				w.err = err
				w.mu.Unlock()
				return
			}
			w.msgs, w.at = append(w.msgs, m), append(w.at, now)
			w.mu.Unlock()
		}
	}()
	return w
}

// changes are the change notices received so far.
func (w *watcher) changes() []*messagingv1.InboxChange {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*messagingv1.InboxChange
	for _, m := range w.msgs {
		if c := m.GetChange(); c != nil {
			out = append(out, c)
		}
	}
	return out
}

// count is how many messages matched keep so far.
func (w *watcher) count(keep func(*messagingv1.WatchInboxResponse) bool) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, m := range w.msgs {
		if keep(m) {
			n++
		}
	}
	return n
}

// waitFor waits until a change of kind about thread has arrived.
func (w *watcher) waitFor(t testing.TB, thread string, kind messagingv1.InboxChangeKind) {
	t.Helper()
	testkit.WaitFor(t, 10*time.Second, w.name+" hearing "+kind.String()+" of "+thread, func() bool {
		return slices.ContainsFunc(w.changes(), func(c *messagingv1.InboxChange) bool {
			return c.GetThreadId() == thread && c.GetKind() == kind
		})
	})
}

// waitQuiet waits for a heartbeat after everything received so far: the watch's queue ran
// empty, so every change offered to it before this call has arrived.
func (w *watcher) waitQuiet(t testing.TB) {
	t.Helper()
	w.mu.Lock()
	mark := len(w.msgs)
	w.mu.Unlock()
	testkit.WaitFor(t, 10*time.Second, w.name+" falling quiet", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return slices.ContainsFunc(w.msgs[mark:], func(m *messagingv1.WatchInboxResponse) bool { return m.GetHeartbeat() != nil })
	})
}

// threads are the threads the watcher heard of, sorted.
func (w *watcher) threads() []string {
	var out []string
	for _, c := range w.changes() {
		if !slices.Contains(out, c.GetThreadId()) {
			out = append(out, c.GetThreadId())
		}
	}
	slices.Sort(out)
	return out
}

// kinds are the kinds of change the watcher heard of about thread.
func (w *watcher) kinds(thread string) []messagingv1.InboxChangeKind {
	var out []messagingv1.InboxChangeKind
	for _, c := range w.changes() {
		if c.GetThreadId() == thread && !slices.Contains(out, c.GetKind()) {
			out = append(out, c.GetKind())
		}
	}
	return out
}

// wire is every message received, in both encodings a client may see, for the PHI check.
func (w *watcher) wire(t testing.TB) []byte {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	var buf bytes.Buffer
	for _, m := range w.msgs {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		j, err := protojson.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(b)
		buf.Write(j)
	}
	return buf.Bytes()
}

// TestWatchInbox: over native gRPC, each signed-in person hears, with ids only, of changes to
// exactly the threads they could open — never a proxy of an adolescent-confidential thread of
// a patient it holds a grant for, never a clinician of another pool's thread or of a thread
// that left its pool, never anyone of another person's read mark — and no PHI reaches a
// stream. Roles that may not watch are refused before a watch opens.
func TestWatchInbox(t *testing.T) {
	e := newEnv(t, tuned(func(s *wire.Settings) { s.WatchHeartbeat = 100 * time.Millisecond }))
	personas := []servicetest.Persona{servicetest.Patient, servicetest.Proxy, ReadOnlyProxy, StrangerProxy, servicetest.Teen,
		servicetest.OtherPatient, servicetest.Clinician, servicetest.OtherClinician}
	w := map[string]*watcher{}
	for _, p := range personas {
		w[p.Subject] = openWatch(t, e.as(t, p), e.api, p.Subject)
	}
	for _, p := range []servicetest.Persona{servicetest.Admin, servicetest.Auditor, servicetest.StaffNoMFA} {
		stream, err := e.api.WatchInbox(e.as(t, p), &messagingv1.WatchInboxRequest{})
		if err == nil {
			_, err = stream.Recv()
		}
		wantCode(t, "WatchInbox(as "+p.Subject+")", err, codes.PermissionDenied)
	}

	// T1: the patient's thread, worked through its whole lifecycle by the cardiology clinician.
	t1 := e.createThread(t, servicetest.Patient, &messagingv1.CreateThreadRequest{Subject: marker(t, "subject"), Body: marker(t, "body")}).GetThread().GetThreadId()
	reply, err := e.api.SendMessage(e.as(t, servicetest.Clinician), &messagingv1.SendMessageRequest{ThreadId: t1, Body: marker(t, "reply"), ClientRequestId: uuid.NewString()})
	if err != nil {
		t.Fatalf("SendMessage(clinician) = %v", err)
	}
	if _, err := e.api.MarkRead(e.as(t, servicetest.Patient), &messagingv1.MarkReadRequest{ThreadId: t1, UpToMessageId: reply.GetMessage().GetMessageId()}); err != nil {
		t.Fatalf("MarkRead = %v", err)
	}
	clin := e.as(t, servicetest.Clinician)
	if _, err := e.api.ClaimThread(clin, &messagingv1.ClaimThreadRequest{ThreadId: t1}); err != nil {
		t.Fatalf("ClaimThread = %v", err)
	}
	if _, err := e.api.CloseThread(clin, &messagingv1.CloseThreadRequest{ThreadId: t1, ReasonCode: "resolved"}); err != nil {
		t.Fatalf("CloseThread = %v", err)
	}
	if _, err := e.api.ReopenThread(clin, &messagingv1.ReopenThreadRequest{ThreadId: t1}); err != nil {
		t.Fatalf("ReopenThread = %v", err)
	}
	oops, err := e.api.SendMessage(e.as(t, servicetest.Patient), &messagingv1.SendMessageRequest{ThreadId: t1, Body: marker(t, "oops"), ClientRequestId: uuid.NewString()})
	if err != nil {
		t.Fatalf("SendMessage(patient) = %v", err)
	}
	if _, err := e.api.RetractMessage(e.as(t, servicetest.Patient), &messagingv1.RetractMessageRequest{ThreadId: t1,
		MessageId: oops.GetMessage().GetMessageId(), ReasonCode: "sent_in_error", ClientRequestId: uuid.NewString()}); err != nil {
		t.Fatalf("RetractMessage = %v", err)
	}
	// Each notice is checked on the thread as it stands when it is sent: let the cardiology
	// clinician hear everything up to here before the thread leaves the pool.
	w[servicetest.Clinician.Subject].waitFor(t, t1, messagingv1.InboxChangeKind_INBOX_CHANGE_KIND_MESSAGE_RETRACTED)
	if _, err := e.api.TransferThread(e.as(t, TwoPoolClinician), &messagingv1.TransferThreadRequest{ThreadId: t1,
		ToPoolId: "pool-dermatology", ReasonCode: "wrong_pool", Reason: marker(t, "note")}); err != nil {
		t.Fatalf("TransferThread = %v", err)
	}

	// T2: the teen's adolescent-confidential thread; T3: another patient's, in dermatology.
	t2 := e.createThread(t, servicetest.Teen, &messagingv1.CreateThreadRequest{Subject: marker(t, "subject"), Body: marker(t, "body"),
		Sensitivity: commonv1.Sensitivity_SENSITIVITY_ADOLESCENT_CONFIDENTIAL}).GetThread().GetThreadId()
	if _, err := e.api.SendMessage(clin, &messagingv1.SendMessageRequest{ThreadId: t2, Body: marker(t, "reply"), ClientRequestId: uuid.NewString()}); err != nil {
		t.Fatalf("SendMessage(clinician, confidential) = %v", err)
	}
	t3 := e.createThread(t, servicetest.OtherPatient, &messagingv1.CreateThreadRequest{PoolId: "pool-dermatology", Subject: marker(t, "subject"), Body: marker(t, "body")}).GetThread().GetThreadId()

	// Sentinels, last: each watcher hears of its own, and a replica's feed delivers in stream
	// order, so once it has arrived every earlier change meant for the watcher has too.
	s1 := e.createThread(t, servicetest.Patient, &messagingv1.CreateThreadRequest{Subject: marker(t, "subject"), Body: marker(t, "body")}).GetThread().GetThreadId()
	s2 := e.createThread(t, servicetest.Teen, &messagingv1.CreateThreadRequest{Subject: marker(t, "subject"), Body: marker(t, "body"),
		Sensitivity: commonv1.Sensitivity_SENSITIVITY_ADOLESCENT_CONFIDENTIAL}).GetThread().GetThreadId()
	s3 := e.createThread(t, servicetest.OtherPatient, &messagingv1.CreateThreadRequest{PoolId: "pool-dermatology", Subject: marker(t, "subject"), Body: marker(t, "body")}).GetThread().GetThreadId()
	s4 := e.createThread(t, servicetest.Clinician, &messagingv1.CreateThreadRequest{PatientId: "p-9999", Subject: marker(t, "subject"), Body: marker(t, "body")}).GetThread().GetThreadId()

	want := map[string][]string{
		servicetest.Patient.Subject:        {t1, s1},
		servicetest.Proxy.Subject:          {t1, s1},
		ReadOnlyProxy.Subject:              {t1, s1},
		StrangerProxy.Subject:              {s4},
		servicetest.Teen.Subject:           {t2, s2},
		servicetest.OtherPatient.Subject:   {t3, s3},
		servicetest.Clinician.Subject:      {t1, t2, s1, s2, s4},
		servicetest.OtherClinician.Subject: {t1, t3, s3},
	}
	sentinel := map[string]string{
		servicetest.Patient.Subject: s1, servicetest.Proxy.Subject: s1, ReadOnlyProxy.Subject: s1, StrangerProxy.Subject: s4,
		servicetest.Teen.Subject: s2, servicetest.OtherPatient.Subject: s3, servicetest.Clinician.Subject: s4, servicetest.OtherClinician.Subject: s3,
	}
	for sub, wt := range w {
		wt.waitFor(t, sentinel[sub], messagingv1.InboxChangeKind_INBOX_CHANGE_KIND_MESSAGE_CREATED)
	}
	// Now the feed has handled the last event; once each watch falls quiet it has sent all
	// that was meant for it, and anything leaked would have arrived.
	for sub, wt := range w {
		wt.waitQuiet(t)
		wantIDs := slices.Clone(want[sub])
		slices.Sort(wantIDs)
		if got := wt.threads(); !slices.Equal(got, wantIDs) {
			t.Errorf("%s heard of threads %v, want %v (t1 %s, t2 %s, t3 %s, s1-4 %s %s %s %s)", sub, got, wantIDs, t1, t2, t3, s1, s2, s3, s4)
		}
		for _, c := range wt.changes() {
			if _, err := uuid.Parse(c.GetEventId()); err != nil || c.GetKind() == messagingv1.InboxChangeKind_INBOX_CHANGE_KIND_UNSPECIFIED || c.GetOccurTime() == nil {
				t.Errorf("%s got a change without event id, kind or time: %v", sub, c)
			}
		}
		if bytes.Contains(wt.wire(t), []byte(markerPrefix)) {
			t.Errorf("%s's stream carried PHI (a marker)", sub)
		}
	}

	type K = messagingv1.InboxChangeKind
	all := []K{messagingv1.InboxChangeKind_INBOX_CHANGE_KIND_THREAD_CREATED, messagingv1.InboxChangeKind_INBOX_CHANGE_KIND_MESSAGE_CREATED,
		messagingv1.InboxChangeKind_INBOX_CHANGE_KIND_MESSAGE_READ, messagingv1.InboxChangeKind_INBOX_CHANGE_KIND_THREAD_ASSIGNED,
		messagingv1.InboxChangeKind_INBOX_CHANGE_KIND_THREAD_CLOSED, messagingv1.InboxChangeKind_INBOX_CHANGE_KIND_THREAD_REOPENED,
		messagingv1.InboxChangeKind_INBOX_CHANGE_KIND_MESSAGE_RETRACTED, messagingv1.InboxChangeKind_INBOX_CHANGE_KIND_THREAD_TRANSFERRED}
	without := func(ks []K, drop ...K) []K {
		return slices.DeleteFunc(slices.Clone(ks), func(k K) bool { return slices.Contains(drop, k) })
	}
	for _, tc := range []struct {
		who  string
		want []K
	}{
		{servicetest.Patient.Subject, all},
		// A read mark is the reader's alone.
		{servicetest.Proxy.Subject, without(all, messagingv1.InboxChangeKind_INBOX_CHANGE_KIND_MESSAGE_READ)},
		// The thread left cardiology with the transfer: its clinician hears that it went (so
		// their queue drops it), and nothing after.
		{servicetest.Clinician.Subject, without(all, messagingv1.InboxChangeKind_INBOX_CHANGE_KIND_MESSAGE_READ)},
		// Dermatology hears of the thread from its arrival on.
		{servicetest.OtherClinician.Subject, []K{messagingv1.InboxChangeKind_INBOX_CHANGE_KIND_THREAD_TRANSFERRED}},
	} {
		got := w[tc.who].kinds(t1)
		slices.Sort(got)
		slices.Sort(tc.want)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s heard of t1: %v, want %v", tc.who, got, tc.want)
		}
	}

	// The replica's metrics count the open watches and what they were sent.
	sent := 0
	for _, wt := range w {
		sent += len(wt.changes())
	}
	for name, want := range map[string]float64{
		"securemsg_messaging_watches_open": float64(len(w)), "securemsg_messaging_watch_changes_sent_total": float64(sent),
		"securemsg_messaging_watch_resyncs_total": 0,
	} {
		if got := metricValue(t, e, name); got != want {
			t.Errorf("metric %s = %v, want %v", name, got, want)
		}
	}
}

// metricValue reads one unlabelled gauge or counter from the service's metrics registry.
func metricValue(t *testing.T, e *env, name string) float64 {
	t.Helper()
	families, err := e.h.Proc.Server.MetricsRegistry().Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name || len(f.GetMetric()) != 1 {
			continue
		}
		m := f.GetMetric()[0]
		if g := m.GetGauge(); g != nil {
			return g.GetValue()
		}
		return m.GetCounter().GetValue()
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// TestWatchInboxHeartbeatAndExpiry: an idle watch gets a heartbeat every configured interval,
// and ends with UNAUTHENTICATED, reason TOKEN_EXPIRED, when its token expires.
func TestWatchInboxHeartbeatAndExpiry(t *testing.T) {
	e := newEnv(t, tuned(func(s *wire.Settings) { s.WatchHeartbeat = 200 * time.Millisecond }))
	claims := servicetest.Patient.Claims(e.h.Issuer)
	expires := time.Unix(time.Now().Add(4*time.Second).Unix(), 0) // exp has whole seconds
	claims["exp"] = expires.Unix()
	ctx := metadataToken(t, e.h.Issuer.Mint(t, claims))
	opened := time.Now()
	wt := openWatch(t, ctx, e.api, "short-lived patient")
	select {
	case <-wt.ended:
	case <-time.After(15 * time.Second):
		t.Fatalf("the watch did not end within 15s; its token expired at %s", expires)
	}
	ended, lasted := time.Now(), time.Since(opened)
	wt.mu.Lock()
	err := wt.err
	wt.mu.Unlock()
	st := status.Convert(err)
	if reason := errorReason(st); st.Code() != codes.Unauthenticated || reason != "TOKEN_EXPIRED" {
		t.Fatalf("watch ended with %v (reason %q), want UNAUTHENTICATED TOKEN_EXPIRED", err, reason)
	}
	if ended.Before(expires) {
		t.Errorf("the watch ended at %s, before its token expired at %s", ended, expires)
	}
	// One heartbeat per 200 ms of silence; at least half of them, allowing for a loaded machine.
	if n, want := wt.count(func(m *messagingv1.WatchInboxResponse) bool { return m.GetHeartbeat() != nil }), int(lasted/(200*time.Millisecond))/2; n < want {
		t.Errorf("an idle watch got %d heartbeats in %s, want at least %d (one per 200ms)", n, lasted, want)
	}
}

// metadataToken is the test's context carrying raw as the bearer token.
func metadataToken(t testing.TB, raw string) context.Context {
	return metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+raw)
}

// TestWatchInboxLatency: a committed change reaches its watcher within 1 s — p99 over 1,000
// messages, measured from the start of each SendMessage (so an upper bound of commit to
// delivery) to the notice's arrival. The figures are logged (go test -v); make bench runs
// BenchmarkWatchInboxLatency for larger runs.
func TestWatchInboxLatency(t *testing.T) {
	e := newEnv(t)
	lat := measureWatchLatency(t, e, e.api, e.api, 1000, 4, false).delivered
	p50, p99, worst := lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	t.Logf("WatchInbox delivery over %d messages: p50 %s, p99 %s, max %s", len(lat), p50, p99, worst)
	if p99 > time.Second {
		t.Errorf("p99 delivery latency %s, want at most 1s", p99)
	}
}

// BenchmarkWatchInboxLatency: delivery to a watcher against the same messages' arrival on
// JetStream (a raw ordered consumer in the test: what the relay alone costs), in the same run.
// The difference is the watch path: the feed, the thread load, the policy check and the stream.
//
//	go test -run '^$' -bench WatchInbox ./services/messaging/internal/wire/
func BenchmarkWatchInboxLatency(b *testing.B) {
	e := newEnv(b)
	n := max(b.N, 5000)
	lat := measureWatchLatency(b, e, e.api, e.api, n, 8, true)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	for _, q := range []struct {
		unit string
		at   int
	}{{"p50-ms", n / 2}, {"p99-ms", n * 99 / 100}} {
		benchkit.Compare(b, ms(lat.delivered[q.at]), ms(lat.published[q.at]), q.unit)
	}
	b.ReportMetric(0, "ns/op")
}

// watchLatency are per-message latencies from the start of SendMessage, sorted: to the
// notice's arrival on the watch, and (when asked for) to the event's arrival from JetStream.
type watchLatency struct{ delivered, published []time.Duration }

// measureWatchLatency sends n messages (over conc workers) in one thread as the clinician
// through sendAPI while the patient watches through watchAPI, and measures each message's
// latency from the start of its SendMessage call to its arrival on the watch (and, with
// published, to its MessageCreated event's arrival on a raw JetStream consumer).
func measureWatchLatency(tb testing.TB, e *env, sendAPI, watchAPI messagingv1.MessagingServiceClient, n, conc int, published bool) watchLatency {
	tb.Helper()
	thread := e.createThread(tb, servicetest.Patient, &messagingv1.CreateThreadRequest{Subject: marker(tb, "subject"), Body: marker(tb, "body")}).GetThread().GetThreadId()
	wt := openWatch(tb, e.as(tb, servicetest.Patient), watchAPI, "patient")
	var pubMu sync.Mutex
	pubAt := map[string]time.Time{}
	if published {
		cons, err := e.h.JS.OrderedConsumer(tb.Context(), e.h.Topology.EventsStream, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{e.h.Topology.EventsSubject + ".message.created.>"}, DeliverPolicy: jetstream.DeliverNewPolicy})
		if err != nil {
			tb.Fatalf("ordered consumer: %v", err)
		}
		cc, err := cons.Consume(func(m jetstream.Msg) {
			now := time.Now()
			ev := &eventsv1.MessageCreated{}
			if proto.Unmarshal(m.Data(), ev) == nil {
				pubMu.Lock()
				pubAt[ev.GetMessageId()] = now
				pubMu.Unlock()
			}
		})
		if err != nil {
			tb.Fatalf("consume: %v", err)
		}
		tb.Cleanup(cc.Stop)
	}
	ctx := e.as(tb, servicetest.Clinician)
	started := make([]time.Time, n)
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, conc)
	for w := range conc {
		wg.Go(func() {
			for i := w; i < n; i += conc {
				started[i] = time.Now()
				resp, err := sendAPI.SendMessage(ctx, &messagingv1.SendMessageRequest{ThreadId: thread, Body: "latency probe", ClientRequestId: uuid.NewString()})
				if err != nil {
					errs <- err
					return
				}
				ids[i] = resp.GetMessage().GetMessageId()
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		tb.Fatalf("SendMessage = %v", err)
	}
	arrived := func() map[string]time.Time {
		wt.mu.Lock()
		defer wt.mu.Unlock()
		out := map[string]time.Time{}
		for i, m := range wt.msgs {
			if c := m.GetChange(); c.GetKind() == messagingv1.InboxChangeKind_INBOX_CHANGE_KIND_MESSAGE_CREATED {
				out[c.GetMessageId()] = wt.at[i]
			}
		}
		return out
	}
	resyncs := func() int {
		return wt.count(func(m *messagingv1.WatchInboxResponse) bool { return m.GetResync() != nil })
	}
	testkit.WaitFor(tb, 60*time.Second, "every message on the watch", func() bool { return len(arrived()) >= n || resyncs() > 0 })
	if r := resyncs(); r > 0 {
		tb.Fatalf("the watcher fell behind: %d resyncs, %d of %d messages arrived", r, len(arrived()), n)
	}
	if published {
		testkit.WaitFor(tb, 60*time.Second, "every event on JetStream", func() bool {
			pubMu.Lock()
			defer pubMu.Unlock()
			return len(pubAt) >= n
		})
	}
	at := arrived()
	var out watchLatency
	for i, id := range ids {
		out.delivered = append(out.delivered, at[id].Sub(started[i]))
		if published {
			out.published = append(out.published, pubAt[id].Sub(started[i]))
		}
	}
	slices.Sort(out.delivered)
	slices.Sort(out.published)
	return out
}

// TestWatchInboxAcrossReplicas: with two replicas of the service on one database and one
// stream, a watcher connected to one hears of a change committed through the other, because
// every replica follows the stream with its own consumer.
func TestWatchInboxAcrossReplicas(t *testing.T) {
	e := newEnv(t)
	other, stopOther := startReplica(t, e)
	lat := measureWatchLatency(t, e, e.api, other, 200, 2, false).delivered
	t.Logf("WatchInbox delivery across replicas over %d messages: p50 %s, p99 %s", len(lat), lat[len(lat)/2], lat[len(lat)*99/100])
	// And the other way round, one change: a watch on the first replica hears of a thread
	// created through the second.
	wt := openWatch(t, e.as(t, servicetest.Clinician), e.api, "clinician on replica 1")
	resp, err := other.CreateThread(e.as(t, servicetest.Patient), &messagingv1.CreateThreadRequest{PoolId: "pool-cardiology",
		Category: commonv1.ThreadCategory_THREAD_CATEGORY_GENERAL, Sensitivity: commonv1.Sensitivity_SENSITIVITY_NORMAL,
		Subject: marker(t, "subject"), Body: marker(t, "body"), ClientRequestId: uuid.NewString()})
	if err != nil {
		t.Fatalf("CreateThread on replica 2 = %v", err)
	}
	wt.waitFor(t, resp.GetThread().GetThreadId(), messagingv1.InboxChangeKind_INBOX_CHANGE_KIND_THREAD_CREATED)

	// A replica that stops ends its watches at once, telling the clients to reconnect, instead
	// of holding its graceful stop up until the deadline.
	leaving := openWatch(t, e.as(t, servicetest.Patient), other, "patient on replica 2")
	stopped := time.Now()
	stopOther()
	select {
	case <-leaving.ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the stopped replica's watch did not end")
	}
	leaving.mu.Lock()
	err = leaving.err
	leaving.mu.Unlock()
	if st := status.Convert(err); st.Code() != codes.Unavailable || errorReason(st) != "SERVICE_STOPPING" {
		t.Errorf("watch on a stopping replica ended with %v, want UNAVAILABLE SERVICE_STOPPING", err)
	}
	t.Logf("the replica with an open watch stopped in %s", time.Since(stopped))
}

// errorReason is the google.rpc.ErrorInfo reason of st ("" without one).
func errorReason(st *status.Status) string {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

// startReplica runs a second messaging process on e's schema and streams, with e's settings,
// issuer and certificates, and returns a portal client of it and a function that stops it
// (and waits until it has stopped; the test's cleanup stops it otherwise).
func startReplica(t *testing.T, e *env) (messagingv1.MessagingServiceClient, func()) {
	t.Helper()
	stack := testkit.LoadStack()
	server := e.h.PKI.ServerConfig(false)
	server.TLSClientCAFile = e.h.PKI.CAFile
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server.GRPCAddr = lis.Addr().String()
	spec := wire.Spec()
	spec.Schema, spec.Topology = e.h.Schema, e.h.Topology
	ctx, cancel := context.WithCancel(context.Background())
	proc, err := daemon.Start(ctx, spec, daemon.Base{
		Server:   server,
		Postgres: config.Postgres{URL: config.Secret(stack.PostgresURL), MaxConns: 8},
		NATS:     config.NATS{URL: stack.NATSURL, StreamReplicas: 1},
		OIDC:     config.OIDC{Issuer: e.h.Issuer.URL, Audience: authtest.Audience},
		Access: config.Access{PolicyDir: filepath.Join(testkit.RepoRoot(), "deploy", "policies"), RatePerPrincipal: 1000, BurstPerPrincipal: 1000,
			RatePerClient: 10000, BurstPerClient: 10000, MaxTokenAge: time.Hour, MaxSessionAge: 12 * time.Hour, ClockSkew: 30 * time.Second},
	})
	if err != nil {
		cancel()
		t.Fatalf("daemon.Start(replica) = %v", err)
	}
	proc.ServeOn(lis)
	if _, err := wire.Register(proc, e.settings, e.deps); err != nil {
		cancel()
		t.Fatalf("Register(replica) = %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- proc.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("replica Run() = %v", err)
			}
		})
	}
	t.Cleanup(stop)
	conn, err := grpc.NewClient(server.GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(e.h.PKI.ClientTLS(false))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return messagingv1.NewMessagingServiceClient(conn), stop
}

package app_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/messaging/internal/app"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// watchTuning gives watches a short heartbeat (so a test sees "nothing more is queued" fast)
// and a short wait for the feed.
func watchTuning(buffer, perSubject int) func(*app.Config, *app.Deps) {
	return func(c *app.Config, _ *app.Deps) {
		c.Watch = app.WatchSettings{Heartbeat: 20 * time.Millisecond, Buffer: buffer, MaxPerSubject: perSubject, FeedTimeout: 50 * time.Millisecond}
	}
}

// openWatch opens a live watch for p whose token expires in ten minutes and takes its greeting.
func (h *harness) openWatch(t *testing.T, p *auth.Principal) *app.Watch {
	t.Helper()
	w, err := h.svc.WatchInbox(t.Context(), p, h.clock.Now().Add(10*time.Minute))
	if err != nil {
		t.Fatalf("WatchInbox(as %s) = %v", p.Subject, err)
	}
	t.Cleanup(w.Close)
	if n, err := w.Next(t.Context()); err != nil || n.Kind != app.NoticeHeartbeat {
		t.Fatalf("first Next() = %+v, %v; want the greeting heartbeat", n, err)
	}
	return w
}

// queued returns the notices w has until it falls silent (its next heartbeat).
func queued(t *testing.T, w *app.Watch) []app.Notice {
	t.Helper()
	var out []app.Notice
	for {
		n, err := w.Next(t.Context())
		if err != nil {
			t.Fatalf("Next() = %v", err)
		}
		if n.Kind == app.NoticeHeartbeat {
			return out
		}
		out = append(out, n)
	}
}

// threadIDs are the threads of the change notices among ns.
func threadIDs(ns []app.Notice) []string {
	var out []string
	for _, n := range ns {
		if n.Kind == app.NoticeChange && !slices.Contains(out, n.Change.ThreadID) {
			out = append(out, n.Change.ThreadID)
		}
	}
	slices.Sort(out)
	return out
}

// newThreadIn starts a thread as p in pool with the sensitivity, for p's own record or p-1001.
func (h *harness) newThreadIn(t *testing.T, p *auth.Principal, pool string, sens commonv1.Sensitivity) string {
	t.Helper()
	c := app.CreateThreadCmd{PoolID: pool, Category: commonv1.ThreadCategory_THREAD_CATEGORY_GENERAL, Sensitivity: sens,
		Subject: "s", Body: "b", ClientRequestID: uuid.NewString()}
	if p.PatientID == "" {
		c.PatientID = "p-1001"
	}
	res, err := h.svc.CreateThread(ctxAs(t, p), p, c)
	if err != nil {
		t.Fatalf("CreateThread(as %s in %s) = %v", p.Subject, pool, err)
	}
	return res.Thread.Thread.ID
}

func change(threadID string, kind domain.ChangeKind) domain.InboxChange {
	return domain.InboxChange{EventID: uuid.NewString(), ThreadID: threadID, Kind: kind, MessageID: uuid.NewString()}
}

// TestWatchInboxFiltersByPolicy: each watcher hears of exactly the threads it could open — a
// proxy never of the adolescent-confidential thread of a patient it holds a grant for, a
// clinician only of its pool's threads, a patient only of its own — and a read mark only the
// reader.
func TestWatchInboxFiltersByPolicy(t *testing.T) {
	t.Parallel()
	h := newHarness(t, watchTuning(64, 8))
	own := h.newThreadIn(t, patient, "pool-cardiology", commonv1.Sensitivity_SENSITIVITY_NORMAL)
	confidential := h.newThreadIn(t, teen, "pool-cardiology", commonv1.Sensitivity_SENSITIVITY_ADOLESCENT_CONFIDENTIAL)
	elsewhere := h.newThreadIn(t, otherPatient, "pool-dermatology", commonv1.Sensitivity_SENSITIVITY_NORMAL)
	h.svc.InboxFeedLive()

	watchers := map[string]*auth.Principal{
		"patient": patient, "proxy": proxy, "teen": teen, "other patient": otherPatient,
		"clinician": clinician, "other clinician": otherClinician, "admin": admin,
	}
	watches := map[string]*app.Watch{}
	for name, p := range watchers {
		watches[name] = h.openWatch(t, p)
	}
	for _, id := range []string{own, confidential, elsewhere} {
		for _, k := range []domain.ChangeKind{domain.ChangeMessageCreated, domain.ChangeThreadAssigned, domain.ChangeThreadClosed} {
			h.svc.DeliverChange(t.Context(), change(id, k))
		}
	}
	want := map[string][]string{
		"patient": {own}, "proxy": {own}, "teen": {confidential}, "other patient": {elsewhere},
		"clinician": {own, confidential}, "other clinician": {elsewhere}, "admin": nil,
	}
	for name, w := range watches {
		got := queued(t, w)
		wantIDs := slices.Clone(want[name])
		slices.Sort(wantIDs)
		if !slices.Equal(threadIDs(got), wantIDs) {
			t.Errorf("%s heard of threads %v, want %v", name, threadIDs(got), wantIDs)
		}
		if len(got) != 3*len(wantIDs) {
			t.Errorf("%s got %d notices, want %d (three changes per thread)", name, len(got), 3*len(wantIDs))
		}
	}

	read := change(own, domain.ChangeMessageRead)
	read.OnlyFor = patient.Subject
	h.svc.DeliverChange(t.Context(), read)
	if got := queued(t, watches["patient"]); len(got) != 1 || got[0].Change != read {
		t.Errorf("reader's watch after its read mark = %+v, want the one change %+v", got, read)
	}
	for _, name := range []string{"proxy", "clinician"} {
		if got := queued(t, watches[name]); len(got) != 0 {
			t.Errorf("%s heard of another person's read mark: %+v", name, got)
		}
	}
}

// TestWatchInboxChecksTheThreadAsItIsNow: the policy decides on the thread's current state,
// so a transfer out of a pool silences its clinicians for that thread.
func TestWatchInboxChecksTheThreadAsItIsNow(t *testing.T) {
	t.Parallel()
	mover := clinicianIn("user-clinician-3", "pool-cardiology", "pool-dermatology")
	h := newHarness(t, watchTuning(64, 8))
	id := h.newThreadIn(t, patient, "pool-cardiology", commonv1.Sensitivity_SENSITIVITY_NORMAL)
	h.svc.InboxFeedLive()
	cardio, derma := h.openWatch(t, clinician), h.openWatch(t, otherClinician)
	if _, err := h.svc.Triage(ctxAs(t, mover), mover, app.TriageCmd{ThreadID: id, Kind: app.Transfer, ToPoolID: "pool-dermatology", ReasonCode: "wrong_pool"}); err != nil {
		t.Fatalf("Triage(transfer) = %v", err)
	}
	h.svc.DeliverChange(t.Context(), change(id, domain.ChangeThreadTransferred))
	if got := queued(t, cardio); len(got) != 0 {
		t.Errorf("the pool the thread left heard of it: %+v", got)
	}
	if got := threadIDs(queued(t, derma)); !slices.Equal(got, []string{id}) {
		t.Errorf("the receiving pool heard of %v, want [%s]", got, id)
	}
	// A change about a thread that no longer exists reaches nobody.
	h.svc.DeliverChange(t.Context(), change(uuid.NewString(), domain.ChangeMessageCreated))
	if got := queued(t, derma); len(got) != 0 {
		t.Errorf("a change about a missing thread was delivered: %+v", got)
	}
}

// failingThreads answers every batch thread load with an outage.
type failingThreads struct{ domain.ThreadRepository }

func (failingThreads) Threads(context.Context, []string) (map[string]*domain.Thread, error) {
	return nil, domain.DatabaseUnavailable(errors.New("connection refused"))
}

// TestWatchInboxResync: a watcher that does not keep up gets one resync instead of the
// overflow (bounded memory), then hears of later changes again; a change that cannot be
// checked becomes a resync too, never a delivery.
func TestWatchInboxResync(t *testing.T) {
	t.Parallel()
	h := newHarness(t, watchTuning(4, 8))
	id := h.newThreadIn(t, patient, "pool-cardiology", commonv1.Sensitivity_SENSITIVITY_NORMAL)
	h.svc.InboxFeedLive()
	w := h.openWatch(t, patient)
	for range 50 {
		h.svc.DeliverChange(t.Context(), change(id, domain.ChangeMessageCreated))
	}
	if got := queued(t, w); len(got) != 1 || got[0].Kind != app.NoticeResync {
		t.Fatalf("notices after an overflow = %+v, want exactly one resync", got)
	}
	later := change(id, domain.ChangeThreadClosed)
	h.svc.DeliverChange(t.Context(), later)
	if got := queued(t, w); len(got) != 1 || got[0].Change != later {
		t.Fatalf("notices after the resync = %+v, want the later change", got)
	}

	down := newHarness(t, watchTuning(4, 8), func(_ *app.Config, d *app.Deps) { d.Threads = failingThreads{d.Threads} })
	down.svc.InboxFeedLive()
	dw := down.openWatch(t, patient)
	down.svc.DeliverChange(t.Context(), change(id, domain.ChangeMessageCreated))
	if got := queued(t, dw); len(got) != 1 || got[0].Kind != app.NoticeResync {
		t.Fatalf("notices when the thread cannot be loaded = %+v, want one resync", got)
	}
}

// TestWatchInboxEnds: a watch ends with ErrWatchExpired when the token expires, or when the
// verifier's token-age or session-age limit is reached first; it is not opened on an expired
// token.
func TestWatchInboxEnds(t *testing.T) {
	t.Parallel()
	h := newHarness(t, watchTuning(4, 8), func(c *app.Config, _ *app.Deps) {
		c.Watch.MaxTokenAge, c.Watch.MaxSessionAge = time.Hour, 12*time.Hour
	})
	h.svc.InboxFeedLive()
	now := h.clock.Now()
	old := func(edit func(p *auth.Principal)) *auth.Principal {
		p := *patient
		edit(&p)
		return &p
	}
	for _, tc := range []struct {
		name    string
		p       *auth.Principal
		expires time.Time
	}{
		{"token expires", patient, now.Add(150 * time.Millisecond)},
		{"token reaches its maximum age", old(func(p *auth.Principal) { p.IssuedAt = now.Add(-time.Hour + 150*time.Millisecond) }), now.Add(time.Hour)},
		{"session reaches its maximum age", old(func(p *auth.Principal) { p.AuthTime = now.Add(-12*time.Hour + 150*time.Millisecond) }), now.Add(time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w, err := h.svc.WatchInbox(t.Context(), tc.p, tc.expires)
			if err != nil {
				t.Fatalf("WatchInbox() = %v", err)
			}
			defer w.Close()
			start := time.Now()
			for {
				n, err := w.Next(t.Context())
				if errors.Is(err, app.ErrWatchExpired) {
					break
				}
				if err != nil || n.Kind != app.NoticeHeartbeat {
					t.Fatalf("Next() = %+v, %v; want heartbeats until ErrWatchExpired", n, err)
				}
				if time.Since(start) > 5*time.Second {
					t.Fatal("the watch did not end within 5s of its token's expiry")
				}
			}
		})
	}
	if _, err := h.svc.WatchInbox(t.Context(), patient, now.Add(-time.Second)); !errors.Is(err, app.ErrWatchExpired) {
		t.Errorf("WatchInbox(expired token) = %v, want ErrWatchExpired", err)
	}
}

// TestWatchInboxLimits: a person holds a bounded number of watches per replica, and no watch
// opens before the feed follows the stream.
func TestWatchInboxLimits(t *testing.T) {
	t.Parallel()
	h := newHarness(t, watchTuning(4, 2))
	_, err := h.svc.WatchInbox(t.Context(), patient, h.clock.Now().Add(time.Minute))
	wantRefusal(t, "WatchInbox(before the feed is live)", err, usererr.Unavailable, "WATCH_UNAVAILABLE")

	h.svc.InboxFeedLive()
	first := h.openWatch(t, patient)
	h.openWatch(t, patient)
	_, err = h.svc.WatchInbox(t.Context(), patient, h.clock.Now().Add(time.Minute))
	wantRefusal(t, "WatchInbox(third)", err, usererr.ResourceExhausted, "TOO_MANY_WATCHES")
	h.openWatch(t, otherPatient) // the limit is per person
	first.Close()
	h.openWatch(t, patient)
}

// TestWatchInboxBatch: a batch of changes is checked with one thread load and delivered in
// order, changes about missing threads left out.
func TestWatchInboxBatch(t *testing.T) {
	t.Parallel()
	h := newHarness(t, watchTuning(64, 8))
	own := h.newThreadIn(t, patient, "pool-cardiology", commonv1.Sensitivity_SENSITIVITY_NORMAL)
	confidential := h.newThreadIn(t, teen, "pool-cardiology", commonv1.Sensitivity_SENSITIVITY_ADOLESCENT_CONFIDENTIAL)
	h.svc.InboxFeedLive()
	w := h.openWatch(t, proxy)
	batch := []domain.InboxChange{change(own, domain.ChangeMessageCreated), change(uuid.NewString(), domain.ChangeMessageCreated),
		change(confidential, domain.ChangeMessageCreated), change(own, domain.ChangeThreadClosed), change(own, domain.ChangeThreadReopened)}
	h.svc.DeliverChanges(t.Context(), batch)
	var got []domain.InboxChange
	for _, n := range queued(t, w) {
		got = append(got, n.Change)
	}
	if want := []domain.InboxChange{batch[0], batch[3], batch[4]}; !slices.Equal(got, want) {
		t.Fatalf("the proxy heard %+v, want %+v in order", got, want)
	}
}

// TestWatchInboxEndsOnShutdown: a replica that stops ends its watches at once with a refusal
// that tells clients to reconnect, and opens no new ones.
func TestWatchInboxEndsOnShutdown(t *testing.T) {
	t.Parallel()
	h := newHarness(t, watchTuning(4, 8))
	h.svc.InboxFeedLive()
	w := h.openWatch(t, patient)
	h.svc.EndWatches()
	_, err := w.Next(t.Context())
	wantRefusal(t, "Next() after EndWatches", err, usererr.Unavailable, "SERVICE_STOPPING")
	_, err = h.svc.WatchInbox(t.Context(), patient, h.clock.Now().Add(time.Minute))
	wantRefusal(t, "WatchInbox() after EndWatches", err, usererr.Unavailable, "SERVICE_STOPPING")
}

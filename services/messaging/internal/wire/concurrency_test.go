package wire_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
	"github.com/securemsg/securemsg/services/messaging/internal/adapters/pgstore"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// TestAppendIfUnchangedWritesNothingOnAStaleThread: the one-statement send writes its message
// and events only while the thread is as the send was authorised against; after an assignment,
// a transfer or a close it writes nothing at all.
func TestAppendIfUnchangedWritesNothingOnAStaleThread(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pool := e.h.Proc.Pool
	store := pgstore.New(pool)
	th := e.createThread(t, servicetest.Patient, &messagingv1.CreateThreadRequest{Subject: "s", Body: "b"}).GetThread().GetThreadId()
	load := func() *domain.Thread {
		t.Helper()
		thread, err := store.Thread(t.Context(), th)
		if err != nil {
			t.Fatalf("load thread: %v", err)
		}
		return thread
	}
	tryAppend := func(thread *domain.Thread) (*domain.Message, string, error) {
		t.Helper()
		m := &domain.Message{ID: uuid.NewString(), ThreadID: th, SenderSubject: "user-clinician",
			SenderRole: commonv1.Role_ROLE_CLINICIAN, BodySealed: []byte{1}, CreatedAt: time.Now()}
		ev := outbox.Event{ID: outbox.NewID(), Subject: e.h.Topology.EventsSubject + ".test.guard", Payload: []byte("x")}
		err := store.AppendMessageIfUnchanged(t.Context(), thread, m, []outbox.Event{ev})
		return m, ev.ID, err
	}
	written := func(m *domain.Message, eventID string) (message, event bool) {
		t.Helper()
		if err := pool.QueryRow(t.Context(), `SELECT EXISTS (SELECT 1 FROM messages WHERE id = $1), EXISTS (SELECT 1 FROM outbox WHERE id = $2)`,
			m.ID, eventID).Scan(&message, &event); err != nil {
			t.Fatal(err)
		}
		return message, event
	}

	stale := load()
	clin := e.as(t, servicetest.Clinician)
	if _, err := e.api.ClaimThread(clin, &messagingv1.ClaimThreadRequest{ThreadId: th}); err != nil {
		t.Fatalf("ClaimThread = %v", err)
	}
	m, ev, err := tryAppend(stale)
	if !errors.Is(err, domain.ErrThreadChanged) {
		t.Fatalf("append to a thread assigned since it was loaded = %v, want ErrThreadChanged", err)
	}
	if msg, event := written(m, ev); msg || event {
		t.Fatalf("stale append wrote message=%v event=%v, want neither", msg, event)
	}

	fresh := load()
	m, ev, err = tryAppend(fresh)
	if err != nil {
		t.Fatalf("append to the thread as it is = %v", err)
	}
	if m.Seq != fresh.MessageCount+1 {
		t.Errorf("appended seq = %d, want %d", m.Seq, fresh.MessageCount+1)
	}
	if msg, event := written(m, ev); !msg || !event {
		t.Fatalf("append wrote message=%v event=%v, want both", msg, event)
	}

	beforeClose := load()
	if _, err := e.api.CloseThread(clin, &messagingv1.CloseThreadRequest{ThreadId: th, ReasonCode: "resolved"}); err != nil {
		t.Fatalf("CloseThread = %v", err)
	}
	m, ev, err = tryAppend(beforeClose)
	if !errors.Is(err, domain.ErrThreadChanged) {
		t.Fatalf("append to a thread closed since it was loaded = %v, want ErrThreadChanged", err)
	}
	if msg, event := written(m, ev); msg || event {
		t.Fatalf("append to a closed thread wrote message=%v event=%v", msg, event)
	}
}

// TestConcurrentSendsIntoOneThread: people joining a thread at once (each first message changes
// its participants) while it is claimed and released all get their messages in, each exactly
// once with a distinct seq, and every MessageCreated event names the recipients the thread had
// when its message landed.
func TestConcurrentSendsIntoOneThread(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	created0 := e.createThread(t, servicetest.Patient, &messagingv1.CreateThreadRequest{Subject: "s", Body: "b"})
	th, initial := created0.GetThread().GetThreadId(), int(created0.GetThread().GetMessageCount())
	const senders, each = 12, 3
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	var churn sync.WaitGroup
	assignees := []string{servicetest.Clinician.Subject, servicetest.StaffNoMFA.Subject} // members of the pool, as an assignee must be
	churn.Go(func() {                                                                    // assignment churn: every reassignment changes the thread
		clin := e.as(t, servicetest.Clinician)
		for i := 0; ctx.Err() == nil; i++ {
			if _, err := e.api.AssignThread(clin, &messagingv1.AssignThreadRequest{ThreadId: th, AssigneeSubject: assignees[i%2]}); err != nil && ctx.Err() == nil {
				t.Errorf("AssignThread = %v", err)
				return
			}
		}
	})
	var wg sync.WaitGroup
	errs := make(chan error, senders*each)
	for w := range senders {
		sender := e.h.As(t, t.Context(), benchClinician(100+w))
		wg.Go(func() {
			for i := range each {
				if _, err := e.api.SendMessage(sender, &messagingv1.SendMessageRequest{ThreadId: th, Body: fmt.Sprintf("m%d-%d", w, i), ClientRequestId: uuid.NewString()}); err != nil {
					errs <- fmt.Errorf("sender %d message %d: %w", w, i, err)
				}
			}
		})
	}
	wg.Wait()
	stop()
	churn.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	var seqs []int32
	rows, err := e.h.Proc.Pool.Query(t.Context(), `SELECT seq FROM messages WHERE thread_id = $1 ORDER BY seq`, th)
	if err != nil {
		t.Fatal(err)
	}
	if seqs, err = pgx.CollectRows(rows, pgx.RowTo[int32]); err != nil {
		t.Fatal(err)
	}
	want := initial + senders*each
	if len(seqs) != want {
		t.Fatalf("thread holds %d messages, want %d", len(seqs), want)
	}
	for i, seq := range seqs {
		if seq != int32(i+1) {
			t.Fatalf("thread holds seqs %v, want 1..%d once each", seqs, want)
		}
	}
	// Each event's recipients are the participants before its message, minus the sender, plus
	// whoever was assigned then (left out here: the churn decides it).
	created := map[string][]string{}
	prows, err := e.h.Proc.Pool.Query(t.Context(), `SELECT payload FROM outbox WHERE subject = $1`, e.h.Topology.EventsSubject+".message.created.pool-cardiology")
	if err != nil {
		t.Fatal(err)
	}
	payloads, err := pgx.CollectRows(prows, pgx.RowTo[[]byte])
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range payloads {
		ev := &eventsv1.MessageCreated{}
		if err := proto.Unmarshal(p, ev); err != nil {
			t.Fatal(err)
		}
		if ev.GetThreadId() == th {
			created[ev.GetMessageId()] = ev.GetRecipientSubjects()
		}
	}
	if len(created) != want {
		t.Fatalf("%d MessageCreated events for the thread, want %d", len(created), want)
	}
	mrows, err := e.h.Proc.Pool.Query(t.Context(), `SELECT id::text, sender_subject FROM messages WHERE thread_id = $1 ORDER BY seq`, th)
	if err != nil {
		t.Fatal(err)
	}
	type msg struct{ id, sender string }
	msgs, err := pgx.CollectRows(mrows, func(r pgx.CollectableRow) (msg, error) {
		var m msg
		return m, r.Scan(&m.id, &m.sender)
	})
	if err != nil {
		t.Fatal(err)
	}
	var participants []string
	for _, m := range msgs {
		var wantRecipients []string
		for _, p := range participants {
			if p != m.sender {
				wantRecipients = append(wantRecipients, p)
			}
		}
		got := slices.DeleteFunc(slices.Clone(created[m.id]), func(s string) bool { return slices.Contains(assignees, s) })
		if !equalSets(got, wantRecipients) {
			t.Errorf("message from %s: recipients %v, want %v", m.sender, got, wantRecipients)
		}
		if m.sender != "" && !slices.Contains(participants, m.sender) {
			participants = append(participants, m.sender)
		}
	}
}

func equalSets(a, b []string) bool {
	a, b = slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b))
	return slices.Equal(a, b)
}

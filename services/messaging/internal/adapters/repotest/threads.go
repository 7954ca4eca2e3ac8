package repotest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

const (
	patientRole   = commonv1.Role_ROLE_PATIENT
	clinicianRole = commonv1.Role_ROLE_CLINICIAN
)

// ThreadRepository is the contract of domain.ThreadRepository.
func ThreadRepository(t *testing.T, newStore Factory) {
	sub := newStore(t)

	t.Run("missing thread", func(t *testing.T) {
		f := newFixture(t, sub)
		if _, err := f.s.Thread(t.Context(), uuid.NewString()); !errors.Is(err, domain.ErrThreadNotFound) {
			t.Fatalf("Thread(missing) = %v, want ErrThreadNotFound", err)
		}
		th, used, err := f.s.ThreadAndRequest(t.Context(), uuid.NewString(), "someone", uuid.NewString())
		if th != nil || used || err != nil {
			t.Fatalf("ThreadAndRequest(missing) = %v, %v, %v; want nil, false, nil", th, used, err)
		}
		called := false
		_, err = f.s.UpdateThread(t.Context(), uuid.NewString(), func(*domain.Thread, domain.PoolSettingsReader) (domain.ThreadChange, error) {
			called = true
			return domain.ThreadChange{}, nil
		})
		if !errors.Is(err, domain.ErrThreadNotFound) || called {
			t.Fatalf("UpdateThread(missing) = %v (change called: %v), want ErrThreadNotFound without a call", err, called)
		}
	})

	t.Run("threads load in one call, missing and malformed ids left out", func(t *testing.T) {
		f := newFixture(t, sub)
		a, _ := f.patientThread(false)
		b, _ := f.patientThread(false)
		got, err := f.s.Threads(t.Context(), []string{a.ID, uuid.NewString(), b.ID, "not-a-uuid", a.ID})
		if err != nil {
			t.Fatalf("Threads() = %v", err)
		}
		want := map[string]*domain.Thread{a.ID: f.load(a.ID), b.ID: f.load(b.ID)}
		if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("Threads() (-want +got):\n%s", diff)
		}
		if got, err := f.s.Threads(t.Context(), nil); err != nil || len(got) != 0 {
			t.Fatalf("Threads(none) = %v, %v; want an empty map", got, err)
		}
	})

	t.Run("create stores the thread, its messages and rows in order", func(t *testing.T) {
		f := newFixture(t, sub)
		pool, patient := id("pool"), id("p")
		th := f.thread(pool, patient, "user-"+patient, patientRole)
		th.CreatedOnBehalfOf = ""
		first := message(th, "user-"+patient, patientRole, f.now)
		first.AttachmentIDs = []string{uuid.NewString()}
		auto := message(th, "", commonv1.Role_ROLE_UNSPECIFIED, f.now.Add(time.Millisecond))
		auto.AutoReply, auto.ClientRequestID, auto.RequestFPSealed = true, "", nil
		own := event("thread.created")
		var fx effects
		err := f.s.CreateThread(t.Context(), th, []outbox.Event{own},
			fx.appends(domain.MessageAppend{Message: first, MarkAutoReplied: true}, domain.MessageAppend{Message: auto}))
		if err != nil {
			t.Fatalf("CreateThread() = %v", err)
		}
		if first.Seq != 1 || auto.Seq != 2 {
			t.Fatalf("seqs = %d, %d; want 1, 2", first.Seq, auto.Seq)
		}
		if got := fx.after[first.ID]; !slices.Equal(got.Participants, []string{first.SenderSubject}) || got.Assignee != "" {
			t.Errorf("after the first message: %+v, want the sender as the only participant", got)
		}
		if got := fx.after[auto.ID]; !slices.Equal(got.Participants, []string{first.SenderSubject}) {
			t.Errorf("after the auto-reply: %+v, want the system not to join", got)
		}
		f.wantRows("create", append([]outbox.Event{own}, fx.rows...)...)

		got := f.load(th.ID)
		want := *th
		want.MessageCount, want.LastMessageAt, want.UpdatedAt, want.LastSenderRole = 2, auto.CreatedAt, auto.CreatedAt, auto.SenderRole
		want.Participants, want.HasAttachments, want.AutoReplied = []string{first.SenderSubject}, true, true
		if diff := cmp.Diff(&want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("Thread() after create (-want +got):\n%s", diff)
		}
		th2, used, err := f.s.ThreadAndRequest(t.Context(), th.ID, first.SenderSubject, first.ClientRequestID)
		if err != nil || !used || th2 == nil || th2.ID != th.ID {
			t.Fatalf("ThreadAndRequest(used id) = %v, %v, %v; want the thread, true", th2, used, err)
		}
		if _, used, _ := f.s.ThreadAndRequest(t.Context(), th.ID, first.SenderSubject, uuid.NewString()); used {
			t.Fatal("ThreadAndRequest(new id) reports it used")
		}
		if _, used, _ := f.s.ThreadAndRequest(t.Context(), th.ID, "someone-else", first.ClientRequestID); used {
			t.Fatal("ThreadAndRequest(another sender's id) reports it used")
		}
	})

	t.Run("create conflicts write nothing", func(t *testing.T) {
		f := newFixture(t, sub)
		pool, patient := id("pool"), id("p")
		th := f.thread(pool, patient, "user-"+patient, patientRole)
		first := message(th, "user-"+patient, patientRole, f.now)
		f.create(th, false, first)

		again := f.thread(pool, patient, "user-"+patient, patientRole)
		again.ID = th.ID
		ev := event("conflict")
		err := f.s.CreateThread(t.Context(), again, []outbox.Event{ev}, domain.Appends{Messages: []domain.MessageAppend{{Message: message(again, "x", patientRole, f.now)}}})
		if !errors.Is(err, domain.ErrRequestConflict) {
			t.Fatalf("CreateThread(taken thread id) = %v, want ErrRequestConflict", err)
		}
		other := f.thread(pool, patient, "user-"+patient, patientRole)
		reused := message(other, first.SenderSubject, patientRole, f.now)
		reused.ClientRequestID = first.ClientRequestID
		err = f.s.CreateThread(t.Context(), other, []outbox.Event{ev}, domain.Appends{Messages: []domain.MessageAppend{{Message: reused}}})
		if !errors.Is(err, domain.ErrRequestConflict) {
			t.Fatalf("CreateThread(taken request id) = %v, want ErrRequestConflict", err)
		}
		if _, err := f.s.Thread(t.Context(), other.ID); !errors.Is(err, domain.ErrThreadNotFound) {
			t.Fatalf("thread of a conflicting create: Thread() = %v, want ErrThreadNotFound", err)
		}
		f.wantNoRows("conflicting creates", ev)
		f.wantMessages("first thread after conflicts", th.ID, 1)
	})

	t.Run("append if unchanged", func(t *testing.T) {
		f := newFixture(t, sub)
		th, patient := f.patientThread(true)
		loaded := f.load(th.ID)

		m := message(th, "user-clin", clinicianRole, f.now.Add(time.Second))
		ev := event("message.created")
		if err := f.s.AppendMessageIfUnchanged(t.Context(), loaded, m, []outbox.Event{ev}); err != nil {
			t.Fatalf("AppendMessageIfUnchanged() = %v", err)
		}
		if m.Seq != 2 {
			t.Fatalf("appended seq = %d, want 2", m.Seq)
		}
		f.wantRows("append", ev)
		got := f.load(th.ID)
		if got.MessageCount != 2 || !slices.Equal(got.Participants, []string{"user-" + patient, "user-clin"}) ||
			got.LastSenderRole != clinicianRole || !got.LastMessageAt.Equal(m.CreatedAt) {
			t.Fatalf("thread after append = %+v", got)
		}

		// The thread as loaded before that append is stale now: its participants changed.
		stale := message(th, "user-clin-2", clinicianRole, f.now.Add(2*time.Second))
		ev2 := event("stale")
		if err := f.s.AppendMessageIfUnchanged(t.Context(), loaded, stale, []outbox.Event{ev2}); !errors.Is(err, domain.ErrThreadChanged) {
			t.Fatalf("AppendMessageIfUnchanged(stale) = %v, want ErrThreadChanged", err)
		}
		f.wantNoRows("stale append", ev2)
		if _, err := f.s.Message(t.Context(), th.ID, stale.ID); !errors.Is(err, domain.ErrMessageNotFound) {
			t.Fatalf("stale append stored its message: %v", err)
		}

		// The same sender's request id again conflicts.
		cur := f.load(th.ID)
		dup := message(th, m.SenderSubject, clinicianRole, f.now.Add(3*time.Second))
		dup.ClientRequestID = m.ClientRequestID
		if err := f.s.AppendMessageIfUnchanged(t.Context(), cur, dup, []outbox.Event{ev2}); !errors.Is(err, domain.ErrRequestConflict) {
			t.Fatalf("AppendMessageIfUnchanged(reused request id) = %v, want ErrRequestConflict", err)
		}
		f.wantNoRows("conflicting append", ev2)

		// Bad rows: nothing is written, and the refusal says the action was not recorded.
		bad := outbox.Event{ID: outbox.NewID(), Subject: "has space"}
		err := f.s.AppendMessageIfUnchanged(t.Context(), cur, message(th, "user-clin", clinicianRole, f.now), []outbox.Event{bad})
		if !isUnavailable(err) {
			t.Fatalf("AppendMessageIfUnchanged(invalid row) = %v, want NotRecorded", err)
		}
		f.wantMessages("after refused appends", th.ID, 2)
	})

	t.Run("update thread under its lock", func(t *testing.T) {
		f := newFixture(t, sub)
		th, _ := f.patientThread(false)
		pool := th.PoolID

		// A triage change is written with its rows and returned.
		ev := event("thread.assigned")
		at := f.now.Add(time.Minute)
		got, err := f.s.UpdateThread(t.Context(), th.ID, func(cur *domain.Thread, _ domain.PoolSettingsReader) (domain.ThreadChange, error) {
			if cur.ID != th.ID || cur.MessageCount != 1 {
				t.Errorf("change got %+v, want the stored thread", cur)
			}
			return domain.ThreadChange{Triage: &domain.Triage{Status: domain.StatusAssigned, Assignee: "user-clin", PoolID: pool,
				TransferNoteSealed: []byte("note"), UpdatedAt: at}, Rows: []outbox.Event{ev}}, nil
		})
		if err != nil {
			t.Fatalf("UpdateThread(assign) = %v", err)
		}
		if got.Status != domain.StatusAssigned || got.AssigneeSubject != "user-clin" || !got.UpdatedAt.Equal(at) || string(got.TransferNoteSealed) != "note" {
			t.Fatalf("UpdateThread(assign) returned %+v", got)
		}
		f.wantRows("assign", ev)

		// Close; a nil note keeps the stored one.
		closedAt := f.now.Add(2 * time.Minute)
		if _, err := f.s.UpdateThread(t.Context(), th.ID, func(cur *domain.Thread, _ domain.PoolSettingsReader) (domain.ThreadChange, error) {
			return domain.ThreadChange{Triage: &domain.Triage{Status: domain.StatusClosed, Assignee: cur.AssigneeSubject, PoolID: cur.PoolID,
				ClosedAt: closedAt, UpdatedAt: closedAt}}, nil
		}); err != nil {
			t.Fatalf("UpdateThread(close) = %v", err)
		}
		closed := f.load(th.ID)
		if closed.Status != domain.StatusClosed || !closed.ClosedAt.Equal(closedAt) || string(closed.TransferNoteSealed) != "note" {
			t.Fatalf("closed thread = %+v, want closed at %v with the note kept", closed, closedAt)
		}

		// A change that fails rolls back; a closed thread takes no message, and the triage
		// change of the same callback goes with it.
		evFail := event("rolled.back")
		want := errors.New("use case refused")
		if _, err := f.s.UpdateThread(t.Context(), th.ID, func(*domain.Thread, domain.PoolSettingsReader) (domain.ThreadChange, error) {
			return domain.ThreadChange{Rows: []outbox.Event{evFail}}, want
		}); !errors.Is(err, want) {
			t.Fatalf("UpdateThread(failing change) = %v, want its error", err)
		}
		var fx effects
		_, err = f.s.UpdateThread(t.Context(), th.ID, func(cur *domain.Thread, _ domain.PoolSettingsReader) (domain.ThreadChange, error) {
			return domain.ThreadChange{Triage: &domain.Triage{Status: domain.StatusClosed, Assignee: "someone-else", PoolID: cur.PoolID,
				ClosedAt: cur.ClosedAt, UpdatedAt: f.now},
				Rows: []outbox.Event{evFail}, Appends: fx.appends(domain.MessageAppend{Message: message(th, "user-clin", clinicianRole, f.now)})}, nil
		})
		if !errors.Is(err, domain.ErrThreadClosed) {
			t.Fatalf("UpdateThread(append to closed) = %v, want ErrThreadClosed", err)
		}
		f.wantNoRows("rolled back changes", evFail)
		if got := f.load(th.ID); got.Status != domain.StatusClosed || got.MessageCount != 1 || got.AssigneeSubject != "user-clin" {
			t.Fatalf("thread after rolled-back changes = %+v, want it closed, assigned as before, with 1 message", got)
		}

		// A zero change writes nothing and returns the thread as locked.
		same, err := f.s.UpdateThread(t.Context(), th.ID, func(*domain.Thread, domain.PoolSettingsReader) (domain.ThreadChange, error) {
			return domain.ThreadChange{}, nil
		})
		if err != nil || same.ID != th.ID || same.Status != domain.StatusClosed {
			t.Fatalf("UpdateThread(no change) = %+v, %v", same, err)
		}
	})

	t.Run("appends under the lock read pool settings", func(t *testing.T) {
		f := newFixture(t, sub)
		pool, patient := id("pool"), id("p")
		f.setSettings(pool, func(s *domain.PoolSettings) { s.AutoReplyEnabled, s.AutoReplyText = true, "Thanks" })
		th := f.thread(pool, patient, "user-clin", clinicianRole)
		f.create(th, false, message(th, "user-clin", clinicianRole, f.now))
		m := message(th, "user-"+patient, patientRole, f.now.Add(time.Second))
		auto := message(th, "", commonv1.Role_ROLE_UNSPECIFIED, f.now.Add(time.Second))
		auto.AutoReply, auto.ClientRequestID = true, ""
		var fx effects
		if _, err := f.s.UpdateThread(t.Context(), th.ID, func(cur *domain.Thread, settings domain.PoolSettingsReader) (domain.ThreadChange, error) {
			st, err := settings.PoolSettings(t.Context(), cur.PoolID)
			if err != nil || !st.AutoReplyEnabled || st.AutoReplyText != "Thanks" {
				t.Errorf("settings in the lock = %+v, %v; want the stored settings", st, err)
			}
			return domain.ThreadChange{Appends: fx.appends(domain.MessageAppend{Message: m, MarkAutoReplied: true}, domain.MessageAppend{Message: auto})}, nil
		}); err != nil {
			t.Fatalf("UpdateThread(appends) = %v", err)
		}
		if m.Seq != 2 || auto.Seq != 3 {
			t.Fatalf("seqs = %d, %d; want 2, 3", m.Seq, auto.Seq)
		}
		if got := fx.after[m.ID].Participants; !slices.Equal(got, []string{"user-clin", "user-" + patient}) {
			t.Errorf("participants after the patient's message = %v", got)
		}
		f.wantRows("appends under lock", fx.rows...)
		if got := f.load(th.ID); !got.AutoReplied || got.MessageCount != 3 {
			t.Fatalf("thread after appends = %+v, want auto-replied with 3 messages", got)
		}
	})

	t.Run("legal holds", func(t *testing.T) {
		f := newFixture(t, sub)
		pool, patient := id("pool"), id("p")
		a := f.thread(pool, patient, "user-"+patient, patientRole)
		b := f.thread(pool, patient, "user-"+patient, patientRole)
		f.create(a, false, message(a, "user-"+patient, patientRole, f.now))
		f.create(b, false, message(b, "user-"+patient, patientRole, f.now))

		ev1, ev2 := event("hold.thread"), event("hold.thread.again")
		if changed, err := f.s.SetThreadHold(t.Context(), a.ID, true, "LIT-1", "user-admin", f.now, []outbox.Event{ev1}); err != nil || !changed {
			t.Fatalf("SetThreadHold(on) = %v, %v; want changed", changed, err)
		}
		if changed, err := f.s.SetThreadHold(t.Context(), a.ID, true, "LIT-1", "user-admin", f.now, []outbox.Event{ev2}); err != nil || changed {
			t.Fatalf("SetThreadHold(on again) = %v, %v; want unchanged", changed, err)
		}
		f.wantRows("thread holds", ev1, ev2)
		if got := f.load(a.ID); !got.LegalHold || got.LegalHoldCase != "LIT-1" || !got.Held() {
			t.Fatalf("held thread = %+v", got)
		}

		ev3, ev4, ev5 := event("hold.patient"), event("hold.patient.again"), event("hold.patient.lift")
		// b has no hold of its own, a has: one thread changes effective state.
		if n, err := f.s.SetPatientHold(t.Context(), patient, true, "LIT-2", "user-admin", f.now, []outbox.Event{ev3}); err != nil || n != 1 {
			t.Fatalf("SetPatientHold(on) = %d, %v; want 1", n, err)
		}
		if n, err := f.s.SetPatientHold(t.Context(), patient, true, "LIT-2", "user-admin", f.now, []outbox.Event{ev4}); err != nil || n != 0 {
			t.Fatalf("SetPatientHold(on again) = %d, %v; want 0", n, err)
		}
		if got := f.load(b.ID); !got.PatientLegalHold || got.LegalHold || !got.Held() {
			t.Fatalf("thread under a patient hold = %+v", got)
		}
		if n, err := f.s.SetPatientHold(t.Context(), patient, false, "", "user-admin", f.now, []outbox.Event{ev5}); err != nil || n != 1 {
			t.Fatalf("SetPatientHold(off) = %d, %v; want 1", n, err)
		}
		f.wantRows("patient holds", ev3, ev4, ev5)
		if got := f.load(b.ID); got.Held() {
			t.Fatalf("thread after the patient hold was lifted = %+v", got)
		}
	})
}

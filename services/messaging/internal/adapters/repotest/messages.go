package repotest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"

	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// MessageRepository is the contract of domain.MessageRepository.
func MessageRepository(t *testing.T, newStore Factory) {
	sub := newStore(t)

	t.Run("reads", func(t *testing.T) {
		f := newFixture(t, sub)
		pool, patient := id("pool"), id("p")
		th := f.thread(pool, patient, "user-"+patient, patientRole)
		var msgs []*domain.Message
		for i := range 4 {
			m := message(th, "user-"+patient, patientRole, f.now.Add(time.Duration(i)*time.Second))
			m.AttachmentIDs = []string{uuid.NewString()}
			m.OnBehalfOf, m.CorrectsMessageID = "", ""
			msgs = append(msgs, m)
		}
		f.create(th, false, msgs...)

		got, err := f.s.Message(t.Context(), th.ID, msgs[1].ID)
		if err != nil {
			t.Fatalf("Message() = %v", err)
		}
		if diff := cmp.Diff(msgs[1], got, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("Message() (-want +got):\n%s", diff)
		}
		if got, err := f.s.MessageByID(t.Context(), msgs[2].ID); err != nil || got.ThreadID != th.ID || got.Seq != 3 {
			t.Fatalf("MessageByID() = %+v, %v; want seq 3 of the thread", got, err)
		}
		if _, err := f.s.Message(t.Context(), uuid.NewString(), msgs[1].ID); !errors.Is(err, domain.ErrMessageNotFound) {
			t.Fatalf("Message(other thread) = %v, want ErrMessageNotFound", err)
		}
		if _, err := f.s.MessageByID(t.Context(), uuid.NewString()); !errors.Is(err, domain.ErrMessageNotFound) {
			t.Fatalf("MessageByID(missing) = %v, want ErrMessageNotFound", err)
		}

		page, err := f.s.Messages(t.Context(), th.ID, 1, 2)
		if err != nil || len(page) != 2 || page[0].Seq != 2 || page[1].Seq != 3 {
			t.Fatalf("Messages(after 1, 2) = %v, %v; want seqs 2 and 3", seqs(page), err)
		}
		if page, _ := f.s.Messages(t.Context(), th.ID, 4, 10); len(page) != 0 {
			t.Fatalf("Messages(after the last) = %v, want none", seqs(page))
		}

		m, retracted, err := f.s.MessageByRequest(t.Context(), "user-"+patient, msgs[3].ClientRequestID)
		if err != nil || m == nil || retracted || m.ID != msgs[3].ID {
			t.Fatalf("MessageByRequest(used) = %v, %v, %v; want the message it created", m, retracted, err)
		}
		if m, _, err := f.s.MessageByRequest(t.Context(), "user-"+patient, uuid.NewString()); m != nil || err != nil {
			t.Fatalf("MessageByRequest(unused) = %v, %v; want nil, nil", m, err)
		}
		if m, _, _ := f.s.MessageByRequest(t.Context(), "someone-else", msgs[3].ClientRequestID); m != nil {
			t.Fatalf("MessageByRequest(another sender) = %v, want nil", m)
		}
	})

	t.Run("retract", func(t *testing.T) {
		f := newFixture(t, sub)
		pool, patient := id("pool"), id("p")
		th := f.thread(pool, patient, "user-clin", clinicianRole)
		orig := message(th, "user-clin", clinicianRole, f.now)
		f.create(th, false, orig)

		crid := uuid.NewString()
		corr := message(th, "user-clin", clinicianRole, f.now.Add(time.Second))
		corr.ClientRequestID, corr.CorrectsMessageID = crid, orig.ID
		r := *orig
		r.RetractedAt, r.RetractedBySubject, r.RetractedByRole = f.now.Add(time.Second), "user-clin", clinicianRole
		r.RetractReasonCode, r.RetractRequestID, r.CorrectionMessageID = "wrong_content", crid, corr.ID
		own := event("message.retracted")
		var fx effects
		if err := f.s.RetractMessage(t.Context(), &r, []outbox.Event{own}, fx.appends(domain.MessageAppend{Message: corr})); err != nil {
			t.Fatalf("RetractMessage() = %v", err)
		}
		if corr.Seq != 2 {
			t.Fatalf("correction seq = %d, want 2", corr.Seq)
		}
		f.wantRows("retract", append([]outbox.Event{own}, fx.rows...)...)
		got, err := f.s.Message(t.Context(), th.ID, orig.ID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(&r, got, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("retracted message (-want +got):\n%s", diff)
		}
		if got, err := f.s.Message(t.Context(), th.ID, corr.ID); err != nil || got.CorrectsMessageID != orig.ID {
			t.Fatalf("correction = %+v, %v", got, err)
		}
		m, retracted, err := f.s.MessageByRequest(t.Context(), "user-clin", crid)
		if err != nil || m == nil || retracted || m.ID != corr.ID {
			t.Fatalf("MessageByRequest(retract id with a correction) = %v, %v, %v; want the correction (created wins)", m, retracted, err)
		}

		again := event("retracted.again")
		if err := f.s.RetractMessage(t.Context(), &r, []outbox.Event{again}, domain.Appends{}); !errors.Is(err, domain.ErrAlreadyRetracted) {
			t.Fatalf("RetractMessage(again) = %v, want ErrAlreadyRetracted", err)
		}
		f.wantNoRows("second retraction", again)

		// A retraction without a correction is found by its request id as retracted.
		other := message(th, "user-clin", clinicianRole, f.now.Add(2*time.Second))
		if err := f.s.AppendMessageIfUnchanged(t.Context(), f.load(th.ID), other, nil); err != nil {
			t.Fatal(err)
		}
		rid := uuid.NewString()
		r2 := *other
		r2.RetractedAt, r2.RetractedBySubject, r2.RetractedByRole, r2.RetractReasonCode, r2.RetractRequestID = f.now, "user-clin", clinicianRole, "sent_in_error", rid
		if err := f.s.RetractMessage(t.Context(), &r2, nil, domain.Appends{}); err != nil {
			t.Fatalf("RetractMessage(no correction) = %v", err)
		}
		m, retracted, err = f.s.MessageByRequest(t.Context(), "user-clin", rid)
		if err != nil || m == nil || !retracted || m.ID != other.ID || m.RetractReasonCode != "sent_in_error" {
			t.Fatalf("MessageByRequest(retract id) = %+v, %v, %v; want the retracted message", m, retracted, err)
		}

		// One retract request id cannot retract twice.
		third := message(th, "user-clin", clinicianRole, f.now.Add(3*time.Second))
		if err := f.s.AppendMessageIfUnchanged(t.Context(), f.load(th.ID), third, nil); err != nil {
			t.Fatal(err)
		}
		r3 := *third
		r3.RetractedAt, r3.RetractedBySubject, r3.RetractedByRole, r3.RetractReasonCode, r3.RetractRequestID = f.now, "user-clin", clinicianRole, "sent_in_error", rid
		if err := f.s.RetractMessage(t.Context(), &r3, []outbox.Event{again}, domain.Appends{}); !errors.Is(err, domain.ErrRequestConflict) {
			t.Fatalf("RetractMessage(reused retract id) = %v, want ErrRequestConflict", err)
		}
		f.wantNoRows("conflicting retraction", again)
		if got, _ := f.s.Message(t.Context(), th.ID, third.ID); got.Retracted() {
			t.Fatal("a conflicting retraction was stored")
		}
	})
}

func seqs(msgs []*domain.Message) []int32 {
	var out []int32
	for _, m := range msgs {
		out = append(out, m.Seq)
	}
	return out
}

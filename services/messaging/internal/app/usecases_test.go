package app_test

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/messaging/internal/app"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

func TestCreateThread(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		as         *auth.Principal
		edit       func(h *harness, c *app.CreateThreadCmd)
		autoReply  bool
		wantKind   usererr.Kind
		wantReason string
		wantDenial bool // a DENY audit record
	}{
		{name: "patient, with the pool's auto-reply", as: patient, autoReply: true},
		{name: "clinician for a patient, no auto-reply", as: clinician, edit: func(_ *harness, c *app.CreateThreadCmd) { c.PatientID = "p-1001" }},
		{name: "proxy for the patient", as: proxy, edit: func(_ *harness, c *app.CreateThreadCmd) { c.PatientID = "p-1001" }, autoReply: true},
		{name: "clean attachment", as: patient, autoReply: true, edit: func(h *harness, c *app.CreateThreadCmd) {
			c.AttachmentIDs = []string{h.att.add(patient.Subject, true)}
		}},
		{name: "pool missing", as: patient, edit: func(_ *harness, c *app.CreateThreadCmd) { c.PoolID = "" },
			wantKind: usererr.InvalidArgument, wantReason: "FIELD_REQUIRED"},
		{name: "subject too long", as: patient, edit: func(_ *harness, c *app.CreateThreadCmd) { c.Subject = strings.Repeat("s", domain.MaxSubjectChars+1) },
			wantKind: usererr.InvalidArgument, wantReason: "FIELD_TOO_LONG"},
		{name: "request id not a UUID", as: patient, edit: func(_ *harness, c *app.CreateThreadCmd) { c.ClientRequestID = "again" },
			wantKind: usererr.InvalidArgument, wantReason: "REQUEST_ID_MALFORMED"},
		{name: "another patient's record", as: patient, edit: func(_ *harness, c *app.CreateThreadCmd) { c.PatientID = "p-1002" },
			wantKind: usererr.PermissionDenied, wantReason: "POLICY_DENIED", wantDenial: true},
		{name: "clinician outside the pool", as: otherClinician, edit: func(_ *harness, c *app.CreateThreadCmd) { c.PatientID = "p-1001" },
			wantKind: usererr.PermissionDenied, wantReason: "POLICY_DENIED", wantDenial: true},
		{name: "attachment not yet scanned", as: patient, edit: func(h *harness, c *app.CreateThreadCmd) {
			c.AttachmentIDs = []string{h.att.add(patient.Subject, false)}
		}, wantKind: usererr.FailedPrecondition, wantReason: "ATTACHMENT_NOT_CLEAN"},
		{name: "someone else's attachment", as: patient, edit: func(h *harness, c *app.CreateThreadCmd) {
			c.AttachmentIDs = []string{h.att.add(otherPatient.Subject, true)}
		}, wantKind: usererr.NotFound, wantReason: "ATTACHMENT_NOT_FOUND"},
		{name: "key service down", as: patient, edit: func(h *harness, _ *app.CreateThreadCmd) { h.keys.setDown(true) },
			wantKind: usererr.Unavailable, wantReason: "KEY_SERVICE_UNAVAILABLE"},
		{name: "database not taking writes", as: patient, edit: func(h *harness, _ *app.CreateThreadCmd) {
			h.store.FailWrites(domain.DatabaseUnavailable(errors.New("connection refused")))
		}, wantKind: usererr.Unavailable, wantReason: "DATABASE_UNAVAILABLE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			if _, err := h.svc.UpdatePoolSettings(ctxAs(t, admin), admin, domain.PoolSettings{PoolID: "pool-cardiology", AutoReplyEnabled: true,
				AutoReplyText: "Thanks.", Turnaround: 48 * time.Hour, EmergencyDisclaimer: "For emergencies call 911."}, "",
				[]string{"auto_reply_enabled", "auto_reply_text", "turnaround_time", "emergency_disclaimer"}); err != nil {
				t.Fatalf("UpdatePoolSettings() = %v", err)
			}
			subject, body := "PHIMARKER-subject-"+uuid.NewString(), "PHIMARKER-body-"+uuid.NewString()
			c := app.CreateThreadCmd{PoolID: "pool-cardiology", Category: commonv1.ThreadCategory_THREAD_CATEGORY_CLINICAL_QUESTION,
				Sensitivity: commonv1.Sensitivity_SENSITIVITY_NORMAL, Subject: subject, Body: body, ClientRequestID: uuid.NewString()}
			if tc.edit != nil {
				tc.edit(h, &c)
			}
			before := len(h.store.Outbox())
			res, err := h.svc.CreateThread(ctxAs(t, tc.as), tc.as, c)
			if tc.wantReason != "" {
				wantRefusal(t, "CreateThread()", err, tc.wantKind, tc.wantReason)
				var denials int
				for _, r := range h.auditRecords(t) {
					if r.GetAction() == eventsv1.Action_ACTION_DENY && r.GetOutcome() == eventsv1.Outcome_OUTCOME_DENIED {
						denials++
					}
				}
				if (denials > 0) != tc.wantDenial {
					t.Fatalf("denials recorded = %d, want some: %v", denials, tc.wantDenial)
				}
				if !tc.wantDenial && len(h.store.Outbox()) != before {
					t.Fatalf("a refused CreateThread wrote %d outbox rows", len(h.store.Outbox())-before)
				}
				return
			}
			if err != nil {
				t.Fatalf("CreateThread() = %v", err)
			}
			th := res.Thread.Thread
			if res.Thread.Subject != subject || res.Message.Body != body || res.Message.Message.Seq != 1 || th.PatientID != "p-1001" {
				t.Fatalf("CreateThread() = %+v, want the subject, body, seq 1 for p-1001", res)
			}
			if got := res.AutoReply != nil; got != tc.autoReply {
				t.Fatalf("auto-reply = %v, want %v", got, tc.autoReply)
			}
			if tc.autoReply && (!strings.Contains(res.AutoReply.Body, "call 911") || !strings.Contains(res.AutoReply.Body, "2 days") || res.AutoReply.Message.Seq != 2) {
				t.Fatalf("auto-reply = %+v, want the pool's text with turnaround and disclaimer as seq 2", res.AutoReply)
			}
			stored, err := h.store.Thread(t.Context(), th.ID)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(stored.SubjectSealed, []byte(subject)) || stored.WrappedDEK == "" {
				t.Fatal("the stored thread holds its subject in plaintext or no wrapped DEK")
			}
			for _, e := range h.store.Outbox() {
				if bytes.Contains(e.Payload, []byte("PHIMARKER")) {
					t.Fatalf("outbox row %s carries PHI", e.Subject)
				}
			}
			wantEvents := []string{"thread.created.pool-cardiology", "message.created.pool-cardiology"}
			if tc.autoReply {
				wantEvents = append(wantEvents, "message.created.pool-cardiology")
			}
			if got := h.eventSubjects(); !slices.Equal(got, wantEvents) {
				t.Fatalf("events = %v, want %v", got, wantEvents)
			}
			rec := h.findAudit(t, eventsv1.Action_ACTION_CREATE, th.ID)
			if rec == nil || rec.GetActor().GetSubject() != tc.as.Subject || rec.GetRecordType() != eventsv1.RecordType_RECORD_TYPE_THREAD {
				t.Fatalf("thread CREATE record = %v", rec)
			}
			if tc.as == proxy && rec.GetActor().GetOnBehalfOf() != "p-1001" {
				t.Fatalf("proxy's record on_behalf_of = %q, want p-1001", rec.GetActor().GetOnBehalfOf())
			}
			if h.findAudit(t, eventsv1.Action_ACTION_CREATE, res.Message.Message.ID) == nil {
				t.Fatal("no CREATE record for the first message")
			}
		})
	}
}

func TestCreateThreadRetries(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := app.CreateThreadCmd{PoolID: "pool-cardiology", Category: commonv1.ThreadCategory_THREAD_CATEGORY_GENERAL,
		Sensitivity: commonv1.Sensitivity_SENSITIVITY_NORMAL, Subject: "s", Body: "b", ClientRequestID: uuid.NewString()}
	first, err := h.svc.CreateThread(ctxAs(t, patient), patient, c)
	if err != nil {
		t.Fatal(err)
	}
	again, err := h.svc.CreateThread(ctxAs(t, patient), patient, c)
	if err != nil || again.Thread.Thread.ID != first.Thread.Thread.ID || again.Message.Message.ID != first.Message.Message.ID ||
		again.Thread.Subject != "s" || again.Message.Body != "b" {
		t.Fatalf("retried CreateThread() = %+v, %v; want the first result", again, err)
	}
	c.Body = "different"
	_, err = h.svc.CreateThread(ctxAs(t, patient), patient, c)
	wantRefusal(t, "CreateThread(reused request id)", err, usererr.AlreadyExists, "REQUEST_ID_REUSED")
}

func TestSendMessage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		creator    *auth.Principal
		sender     *auth.Principal
		sensitive  bool // adolescent-confidential thread of p-2001
		before     func(t *testing.T, h *harness, threadID string)
		wantSeqs   []int32 // of the message, then the auto-reply
		wantKind   usererr.Kind
		wantReason string
	}{
		{name: "clinician answers", creator: patient, sender: clinician, wantSeqs: []int32{3}},
		{name: "patient writes first, the pool answers", creator: clinician, sender: patient, wantSeqs: []int32{2, 3}},
		{name: "patient writes again", creator: patient, sender: patient, wantSeqs: []int32{3}},
		{name: "closed thread", creator: patient, sender: clinician, before: func(t *testing.T, h *harness, id string) {
			if _, err := h.svc.Triage(ctxAs(t, clinician), clinician, app.TriageCmd{Kind: app.Close, ThreadID: id}); err != nil {
				t.Fatal(err)
			}
		}, wantKind: usererr.FailedPrecondition, wantReason: "THREAD_CLOSED"},
		{name: "clinician of another pool", creator: patient, sender: otherClinician, wantKind: usererr.PermissionDenied, wantReason: "POLICY_DENIED"},
		{name: "proxy on an adolescent-confidential thread: hidden", creator: teen, sender: proxy, sensitive: true,
			wantKind: usererr.NotFound, wantReason: "THREAD_NOT_FOUND"},
		{name: "missing thread", creator: patient, sender: clinician, before: func(_ *testing.T, h *harness, _ string) {},
			wantKind: usererr.NotFound, wantReason: "THREAD_NOT_FOUND"},
		{name: "key service down", creator: patient, sender: clinician, before: func(_ *testing.T, h *harness, _ string) { h.keys.setDown(true) },
			wantKind: usererr.Unavailable, wantReason: "KEY_SERVICE_UNAVAILABLE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			if _, err := h.svc.UpdatePoolSettings(ctxAs(t, admin), admin, domain.PoolSettings{PoolID: "pool-cardiology", AutoReplyEnabled: true,
				AutoReplyText: "Thanks."}, "", []string{"auto_reply_enabled", "auto_reply_text"}); err != nil {
				t.Fatal(err)
			}
			c := app.CreateThreadCmd{PoolID: "pool-cardiology", Category: commonv1.ThreadCategory_THREAD_CATEGORY_GENERAL,
				Sensitivity: commonv1.Sensitivity_SENSITIVITY_NORMAL, Subject: "s", Body: "b", ClientRequestID: uuid.NewString()}
			if tc.creator.PatientID == "" {
				c.PatientID = "p-1001"
			}
			if tc.sensitive {
				c.Sensitivity = commonv1.Sensitivity_SENSITIVITY_ADOLESCENT_CONFIDENTIAL
			}
			created, err := h.svc.CreateThread(ctxAs(t, tc.creator), tc.creator, c)
			if err != nil {
				t.Fatal(err)
			}
			threadID := created.Thread.Thread.ID
			if tc.name == "missing thread" {
				threadID = uuid.NewString()
			}
			if tc.before != nil {
				tc.before(t, h, threadID)
			}
			cmd := app.SendMessageCmd{ThreadID: threadID, Body: "reply", ClientRequestID: uuid.NewString()}
			if tc.creator == clinician && tc.sender == patient {
				// The patient's first message in the thread is the one the pool answers; the
				// clinician's opening message took seq 1.
				tc.wantSeqs = []int32{2, 3}
			}
			m, err := h.svc.SendMessage(ctxAs(t, tc.sender), tc.sender, cmd)
			if tc.wantReason != "" {
				wantRefusal(t, "SendMessage()", err, tc.wantKind, tc.wantReason)
				return
			}
			if err != nil {
				t.Fatalf("SendMessage() = %v", err)
			}
			if m.Body != "reply" || m.Message.Seq != tc.wantSeqs[0] || m.Message.SenderSubject != tc.sender.Subject {
				t.Fatalf("SendMessage() = %+v, want seq %d from %s", m.Message, tc.wantSeqs[0], tc.sender.Subject)
			}
			msgs, err := h.store.Messages(t.Context(), threadID, 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			last := msgs[len(msgs)-1]
			if got := last.Seq; got != tc.wantSeqs[len(tc.wantSeqs)-1] || (len(tc.wantSeqs) == 2) != last.AutoReply {
				t.Fatalf("last message = seq %d auto %v, want seq %d auto %v", got, last.AutoReply, tc.wantSeqs[len(tc.wantSeqs)-1], len(tc.wantSeqs) == 2)
			}
			// A retry answers as the first attempt did; the same id for other content is refused.
			again, err := h.svc.SendMessage(ctxAs(t, tc.sender), tc.sender, cmd)
			if err != nil || again.Message.ID != m.Message.ID || again.Body != "reply" {
				t.Fatalf("retried SendMessage() = %+v, %v; want the first message", again, err)
			}
			cmd.Body = "other"
			_, err = h.svc.SendMessage(ctxAs(t, tc.sender), tc.sender, cmd)
			wantRefusal(t, "SendMessage(reused request id)", err, usererr.AlreadyExists, "REQUEST_ID_REUSED")
			if rec := h.findAudit(t, eventsv1.Action_ACTION_CREATE, m.Message.ID); rec == nil || rec.GetActor().GetSubject() != tc.sender.Subject {
				t.Fatalf("message CREATE record = %v", rec)
			}
		})
	}
}

func TestGetThread(t *testing.T) {
	t.Parallel()
	t.Run("records the read before it decrypts, and fails closed", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		th := h.createThread(t, patient, "subject", "body").Thread.Thread
		got, err := h.svc.GetThread(ctxAs(t, clinician), clinician, app.GetThreadCmd{ThreadID: th.ID})
		if err != nil || got.Thread.Subject != "subject" || len(got.Messages) != 1 || got.Messages[0].Body != "body" {
			t.Fatalf("GetThread() = %+v, %v", got, err)
		}
		if rec := h.findAudit(t, eventsv1.Action_ACTION_READ, th.ID); rec == nil || rec.GetActor().GetSubject() != clinician.Subject ||
			rec.GetPurposeOfUse() != commonv1.PurposeOfUse_PURPOSE_OF_USE_TREATMENT {
			t.Fatalf("READ record = %v", rec)
		}
		h.store.FailWrites(errors.New("outbox insert failed"))
		got, err = h.svc.GetThread(ctxAs(t, clinician), clinician, app.GetThreadCmd{ThreadID: th.ID})
		wantRefusal(t, "GetThread(unrecordable)", err, usererr.Unavailable, "ACCESS_NOT_RECORDED")
		if got != nil {
			t.Fatalf("GetThread(unrecordable) returned %+v", got)
		}
	})
	t.Run("break the glass", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		th := h.createThread(t, patient, "subject", "body").Thread.Thread
		_, err := h.svc.GetThread(ctxAs(t, otherClinician), otherClinician, app.GetThreadCmd{ThreadID: th.ID})
		wantRefusal(t, "GetThread(other pool, no reason)", err, usererr.PermissionDenied, "POLICY_DENIED")
		got, err := h.svc.GetThread(ctxAs(t, otherClinician), otherClinician, app.GetThreadCmd{ThreadID: th.ID, BreakGlassReason: "unconscious patient in ER"})
		if err != nil || !got.BreakGlass || got.Messages[0].Body != "body" {
			t.Fatalf("GetThread(break glass) = %+v, %v", got, err)
		}
		rec := h.findAudit(t, eventsv1.Action_ACTION_BREAK_GLASS, th.ID)
		if rec == nil || rec.GetSeverity() != eventsv1.Severity_SEVERITY_HIGH || rec.GetPurposeOfUse() != commonv1.PurposeOfUse_PURPOSE_OF_USE_EMERGENCY {
			t.Fatalf("BREAK_GLASS record = %v, want HIGH, EMERGENCY", rec)
		}
		if n := h.store.BreakGlassCount(th.ID); n != 1 {
			t.Fatalf("break-glass reasons stored = %d, want 1", n)
		}
		_, err = h.svc.GetThread(ctxAs(t, otherPatient), otherPatient, app.GetThreadCmd{ThreadID: th.ID, BreakGlassReason: "emergency"})
		wantRefusal(t, "GetThread(break glass by a patient)", err, usererr.PermissionDenied, "POLICY_DENIED")
	})
	t.Run("pages", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		th := h.createThread(t, patient, "s", "m1").Thread.Thread
		for i := range 4 {
			if _, err := h.svc.SendMessage(ctxAs(t, clinician), clinician, app.SendMessageCmd{ThreadID: th.ID, Body: "r" + string(rune('0'+i)), ClientRequestID: uuid.NewString()}); err != nil {
				t.Fatal(err)
			}
		}
		var bodies []string
		tok := ""
		for range 3 {
			page, err := h.svc.GetThread(ctxAs(t, patient), patient, app.GetThreadCmd{ThreadID: th.ID, PageSize: 2, PageToken: tok})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range page.Messages {
				bodies = append(bodies, m.Body)
			}
			if tok = page.NextPageToken; tok == "" {
				break
			}
		}
		if want := []string{"m1", "r0", "r1", "r2", "r3"}; !slices.Equal(bodies, want) {
			t.Fatalf("pages = %v, want %v", bodies, want)
		}
		other := h.createThread(t, patient, "s", "b").Thread.Thread
		first, _ := h.svc.GetThread(ctxAs(t, patient), patient, app.GetThreadCmd{ThreadID: th.ID, PageSize: 1})
		_, err := h.svc.GetThread(ctxAs(t, patient), patient, app.GetThreadCmd{ThreadID: other.ID, PageToken: first.NextPageToken})
		wantRefusal(t, "GetThread(another thread's token)", err, usererr.InvalidArgument, "PAGE_TOKEN_INVALID")
	})
}

func TestTriage(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	th := h.createThread(t, patient, "s", "b").Thread.Thread
	steps := []struct {
		name       string
		as         *auth.Principal
		cmd        app.TriageCmd
		wantStatus domain.Status
		wantEvent  string // "" when nothing changes
		wantKind   usererr.Kind
		wantReason string
	}{
		{"claim", clinician, app.TriageCmd{Kind: app.Claim}, domain.StatusAssigned, "thread.assigned.pool-cardiology", 0, ""},
		{"claim again: a no-op", clinician, app.TriageCmd{Kind: app.Claim}, domain.StatusAssigned, "", 0, ""},
		{"a colleague cannot claim it", colleague, app.TriageCmd{Kind: app.Claim}, 0, "", usererr.FailedPrecondition, "THREAD_ASSIGNED_ELSEWHERE"},
		{"assign to the colleague", clinician, app.TriageCmd{Kind: app.Assign, Assignee: colleague.Subject}, domain.StatusAssigned, "thread.assigned.pool-cardiology", 0, ""},
		{"transfer to the same pool", clinician, app.TriageCmd{Kind: app.Transfer, ToPoolID: "pool-cardiology", ReasonCode: "wrong_pool"}, 0, "", usererr.InvalidArgument, "TRANSFER_TO_SAME_POOL"},
		{"transfer without membership of the target", clinician, app.TriageCmd{Kind: app.Transfer, ToPoolID: "pool-dermatology", ReasonCode: "wrong_pool"}, 0, "", usererr.PermissionDenied, "POLICY_DENIED"},
		{"close", clinician, app.TriageCmd{Kind: app.Close, ReasonCode: "resolved"}, domain.StatusClosed, "thread.closed.pool-cardiology", 0, ""},
		{"close again: a no-op", clinician, app.TriageCmd{Kind: app.Close}, domain.StatusClosed, "", 0, ""},
		{"claim a closed thread", colleague, app.TriageCmd{Kind: app.Assign, Assignee: clinician.Subject}, 0, "", usererr.FailedPrecondition, "THREAD_CLOSED"},
		{"reopen", clinician, app.TriageCmd{Kind: app.Reopen}, domain.StatusOpen, "thread.reopened.pool-cardiology", 0, ""},
		{"a patient cannot triage", patient, app.TriageCmd{Kind: app.Close}, 0, "", usererr.PermissionDenied, "POLICY_DENIED"},
		{"unknown change", clinician, app.TriageCmd{Kind: 99}, 0, "", usererr.InvalidArgument, "TRIAGE_CHANGE_UNKNOWN"},
	}
	for _, st := range steps {
		before := h.eventSubjects()
		st.cmd.ThreadID = th.ID
		got, err := h.svc.Triage(ctxAs(t, st.as), st.as, st.cmd)
		if st.wantReason != "" {
			if err == nil {
				t.Fatalf("%s: Triage() succeeded, want %s", st.name, st.wantReason)
			}
			wantRefusal(t, st.name, err, st.wantKind, st.wantReason)
			continue
		}
		if err != nil || got.Status != st.wantStatus {
			t.Fatalf("%s: Triage() = %+v, %v; want status %d", st.name, got, err, st.wantStatus)
		}
		after := h.eventSubjects()
		switch {
		case st.wantEvent == "" && len(after) != len(before):
			t.Fatalf("%s: wrote events %v, want none", st.name, after[len(before):])
		case st.wantEvent != "" && (len(after) != len(before)+1 || after[len(after)-1] != st.wantEvent):
			t.Fatalf("%s: events %v, want one %s", st.name, after[len(before):], st.wantEvent)
		}
	}
	var codes []string
	for _, r := range h.auditRecords(t) {
		if r.GetAction() == eventsv1.Action_ACTION_UPDATE && r.GetRecordId() == th.ID {
			codes = append(codes, r.GetReasonCode())
		}
	}
	if want := []string{"claim", "assign", "close:resolved", "reopen"}; !slices.Equal(codes, want) {
		t.Fatalf("triage audit reason codes = %v, want %v", codes, want)
	}
}

func TestRetractMessage(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	created := h.createThread(t, patient, "s", "b")
	th, first := created.Thread.Thread, created.Message.Message
	sent, err := h.svc.SendMessage(ctxAs(t, clinician), clinician, app.SendMessageCmd{ThreadID: th.ID, Body: "wrong dose", ClientRequestID: uuid.NewString()})
	if err != nil {
		t.Fatal(err)
	}
	retract := func(as *auth.Principal, msgID, reason, correction, crid string) (*app.RetractResult, error) {
		return h.svc.RetractMessage(ctxAs(t, as), as, app.RetractCmd{ThreadID: th.ID, MessageID: msgID, ReasonCode: reason, CorrectedBody: correction, ClientRequestID: crid})
	}
	for _, tc := range []struct {
		name       string
		as         *auth.Principal
		msgID      string
		reason     string
		wantKind   usererr.Kind
		wantReason string
	}{
		{"reason outside the vocabulary", clinician, sent.Message.ID, "oops", usererr.InvalidArgument, "RETRACT_REASON_UNKNOWN"},
		{"not the sender", colleague, sent.Message.ID, "wrong_content", usererr.PermissionDenied, "POLICY_DENIED"},
		{"not in the thread", clinician, uuid.NewString(), "wrong_content", usererr.NotFound, "MESSAGE_NOT_FOUND"},
	} {
		_, err := retract(tc.as, tc.msgID, tc.reason, "", uuid.NewString())
		wantRefusal(t, tc.name, err, tc.wantKind, tc.wantReason)
	}

	crid := uuid.NewString()
	res, err := retract(clinician, sent.Message.ID, "wrong_content", "right dose", crid)
	if err != nil || !res.Retracted.Message.Retracted() || res.Correction == nil || res.Correction.Body != "right dose" ||
		res.Correction.Message.CorrectsMessageID != sent.Message.ID || res.Retracted.Message.CorrectionMessageID != res.Correction.Message.ID {
		t.Fatalf("RetractMessage() = %+v, %v; want the retraction and its correction", res, err)
	}
	again, err := retract(clinician, sent.Message.ID, "wrong_content", "right dose", crid)
	if err != nil || again.Correction == nil || again.Correction.Message.ID != res.Correction.Message.ID {
		t.Fatalf("retried RetractMessage() = %+v, %v; want the first result", again, err)
	}
	_, err = retract(clinician, sent.Message.ID, "wrong_content", "", uuid.NewString())
	wantRefusal(t, "RetractMessage(already retracted)", err, usererr.FailedPrecondition, "MESSAGE_ALREADY_RETRACTED")
	if rec := h.findAudit(t, eventsv1.Action_ACTION_UPDATE, sent.Message.ID); rec == nil || rec.GetReasonCode() != "retract:wrong_content" {
		t.Fatalf("retraction record = %v", rec)
	}

	h.clock.Advance(16 * time.Minute)
	_, err = retract(patient, first.ID, "sent_in_error", "", uuid.NewString())
	wantRefusal(t, "RetractMessage(after the window)", err, usererr.FailedPrecondition, "RETRACT_WINDOW_PASSED")
}

func TestListThreads(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mine := h.createThread(t, patient, "mine", "b").Thread.Thread
	h.clock.Advance(time.Second)
	theirs := h.createThread(t, otherPatient, "theirs", "b").Thread.Thread
	for _, tc := range []struct {
		name       string
		as         *auth.Principal
		cmd        app.ListThreadsCmd
		want       []string
		wantKind   usererr.Kind
		wantReason string
	}{
		{name: "a patient sees their own", as: patient, want: []string{mine.ID}},
		{name: "the pool sees both", as: clinician, want: []string{theirs.ID, mine.ID}},
		{name: "another pool sees none", as: otherClinician, want: nil},
		{name: "a proxy sees the granted patient's", as: proxy, want: []string{mine.ID}},
		{name: "a pool the caller is not in", as: clinician, cmd: app.ListThreadsCmd{PoolIDs: []string{"pool-dermatology"}},
			wantKind: usererr.PermissionDenied, wantReason: "NOT_POOL_MEMBER"},
		{name: "a patient the caller may not act for", as: patient, cmd: app.ListThreadsCmd{PatientID: "p-1002"},
			wantKind: usererr.PermissionDenied, wantReason: "NO_PATIENT_GRANT"},
		{name: "unknown box", as: patient, cmd: app.ListThreadsCmd{Box: 7}, wantKind: usererr.InvalidArgument, wantReason: "BOX_UNKNOWN"},
		{name: "forged page token", as: patient, cmd: app.ListThreadsCmd{PageToken: "e30"}, wantKind: usererr.InvalidArgument, wantReason: "PAGE_TOKEN_INVALID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := h.svc.ListThreads(ctxAs(t, tc.as), tc.as, tc.cmd)
			if tc.wantReason != "" {
				wantRefusal(t, "ListThreads()", err, tc.wantKind, tc.wantReason)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, v := range res.Threads {
				got = append(got, v.Thread.ID)
				if v.Subject == "" {
					t.Errorf("thread %s listed without its subject", v.Thread.ID)
				}
				if h.findAudit(t, eventsv1.Action_ACTION_READ, v.Thread.ID) == nil {
					t.Errorf("thread %s listed with its subject but no READ record", v.Thread.ID)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("ListThreads() = %v, want %v", got, tc.want)
			}
		})
	}
	if r := h.findAudit(t, eventsv1.Action_ACTION_DENY, "pool-dermatology"); r == nil || r.GetOutcome() != eventsv1.Outcome_OUTCOME_DENIED {
		t.Fatalf("denied pool listing recorded as %v", r)
	}
	if r := h.findAudit(t, eventsv1.Action_ACTION_DENY, "patient:p-1002"); r == nil || r.GetPatientId() != "p-1002" || r.GetReasonCode() != "no_grant" {
		t.Fatalf("denied patient listing recorded as %v", r)
	}
}

func TestMarkReadAndArchive(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	th := h.createThread(t, patient, "s", "b").Thread.Thread
	m, err := h.svc.SendMessage(ctxAs(t, clinician), clinician, app.SendMessageCmd{ThreadID: th.ID, Body: "r", ClientRequestID: uuid.NewString()})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := h.svc.MarkRead(ctxAs(t, patient), patient, th.ID, m.Message.ID); err != nil || n != 0 {
		t.Fatalf("MarkRead() = %d, %v; want 0 unread", n, err)
	}
	if got := h.eventSubjects(); got[len(got)-1] != "message.read.pool-cardiology" {
		t.Fatalf("events = %v, want MessageRead last", got)
	}
	_, err = h.svc.MarkRead(ctxAs(t, patient), patient, th.ID, uuid.NewString())
	wantRefusal(t, "MarkRead(message of no thread)", err, usererr.NotFound, "MESSAGE_NOT_FOUND")
	at, err := h.svc.SetArchived(ctxAs(t, patient), patient, th.ID, true)
	if err != nil || !at.Equal(h.clock.Now()) {
		t.Fatalf("SetArchived(on) = %v, %v", at, err)
	}
	res, err := h.svc.ListThreads(ctxAs(t, patient), patient, app.ListThreadsCmd{})
	if err != nil || len(res.Threads) != 0 {
		t.Fatalf("inbox after archiving = %v, %v; want empty", res, err)
	}
	if at, err := h.svc.SetArchived(ctxAs(t, patient), patient, th.ID, false); err != nil || !at.IsZero() {
		t.Fatalf("SetArchived(off) = %v, %v", at, err)
	}
	_, err = h.svc.SetArchived(ctxAs(t, otherPatient), otherPatient, th.ID, true)
	wantRefusal(t, "SetArchived(someone else's thread)", err, usererr.PermissionDenied, "POLICY_DENIED")
}

func TestPoolSettings(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mask := []string{"auto_reply_text"}
	st, err := h.svc.UpdatePoolSettings(ctxAs(t, admin), admin, domain.PoolSettings{PoolID: "pool-cardiology", AutoReplyText: "v1"}, "", mask)
	if err != nil || st.Version != 1 {
		t.Fatalf("UpdatePoolSettings() = %+v, %v; want version 1", st, err)
	}
	for _, tc := range []struct {
		name       string
		as         *auth.Principal
		in         domain.PoolSettings
		etag       string
		mask       []string
		wantKind   usererr.Kind
		wantReason string
	}{
		{"stale etag", admin, domain.PoolSettings{PoolID: "pool-cardiology"}, "0", mask, usererr.Aborted, "ETAG_MISMATCH"},
		{"etag not a number", admin, domain.PoolSettings{PoolID: "pool-cardiology"}, "x", mask, usererr.Aborted, "ETAG_MISMATCH"},
		{"no mask", admin, domain.PoolSettings{PoolID: "pool-cardiology"}, "", nil, usererr.InvalidArgument, "FIELD_REQUIRED"},
		{"read-only field", admin, domain.PoolSettings{PoolID: "pool-cardiology"}, "", []string{"version"}, usererr.InvalidArgument, "UPDATE_MASK_FIELD_UNKNOWN"},
		{"negative turnaround", admin, domain.PoolSettings{PoolID: "pool-cardiology", Turnaround: -time.Hour}, "", []string{"turnaround_time"}, usererr.InvalidArgument, "FIELD_OUT_OF_RANGE"},
		{"a clinician may not", clinician, domain.PoolSettings{PoolID: "pool-cardiology"}, "", mask, usererr.PermissionDenied, "POLICY_DENIED"},
	} {
		_, err := h.svc.UpdatePoolSettings(ctxAs(t, tc.as), tc.as, tc.in, tc.etag, tc.mask)
		wantRefusal(t, tc.name, err, tc.wantKind, tc.wantReason)
	}
	st, err = h.svc.UpdatePoolSettings(ctxAs(t, admin), admin, domain.PoolSettings{PoolID: "pool-cardiology", AutoReplyText: "v2"}, "1", mask)
	if err != nil || st.Version != 2 || st.AutoReplyText != "v2" {
		t.Fatalf("UpdatePoolSettings(etag 1) = %+v, %v; want version 2", st, err)
	}
	if got, err := h.svc.GetPoolSettings(ctxAs(t, clinician), clinician, "pool-cardiology"); err != nil || got.AutoReplyText != "v2" {
		t.Fatalf("GetPoolSettings() = %+v, %v", got, err)
	}
}

func TestRetentionPurgeAndLegalHold(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	expired := h.createThread(t, patient, "s", "b").Thread.Thread
	held := h.createThread(t, patient, "s", "b").Thread.Thread
	if _, err := h.svc.SetLegalHold(ctxAs(t, admin), admin, held.ID, "", true, "LIT-2026-0042"); err != nil {
		t.Fatalf("SetLegalHold() = %v", err)
	}
	_, err := h.svc.SetLegalHold(ctxAs(t, admin), admin, held.ID, "", true, "Jane Doe v Clinic")
	wantRefusal(t, "SetLegalHold(a name as case reference)", err, usererr.InvalidArgument, "CASE_REFERENCE_MALFORMED")
	_, err = h.svc.SetLegalHold(ctxAs(t, admin), admin, held.ID, "p-1001", true, "LIT-1")
	wantRefusal(t, "SetLegalHold(thread and patient)", err, usererr.InvalidArgument, "HOLD_TARGET_AMBIGUOUS")
	if rec := h.findAudit(t, eventsv1.Action_ACTION_UPDATE, held.ID); rec == nil || rec.GetReasonCode() != "legal_hold_placed" ||
		rec.GetPurposeOfUse() != commonv1.PurposeOfUse_PURPOSE_OF_USE_LEGAL || rec.GetSeverity() != eventsv1.Severity_SEVERITY_HIGH {
		t.Fatalf("legal hold record = %v", rec)
	}

	h.clock.Advance(31 * 24 * time.Hour)
	_, err = h.svc.RunRetentionPurge(ctxAs(t, clinician), clinician, app.PurgeCmd{})
	wantRefusal(t, "RunRetentionPurge(clinician)", err, usererr.PermissionDenied, "POLICY_DENIED")
	dry, err := h.svc.RunRetentionPurge(ctxAs(t, admin), admin, app.PurgeCmd{DryRun: true})
	if err != nil || dry.Total.Eligible != 1 || dry.Total.Purged != 0 || dry.Total.SkippedLegalHold != 1 {
		t.Fatalf("dry run = %+v, %v; want 1 eligible, 1 held, none purged", dry, err)
	}
	// The job runs as the service itself, without an rpc.
	res, err := h.svc.Purge(t.Context(), app.SystemPrincipal, app.PurgeCmd{})
	if err != nil || res.Total.Purged != 1 || res.Total.Messages != 1 || res.Total.SkippedLegalHold != 1 {
		t.Fatalf("Purge() = %+v, %v; want 1 purged, 1 held", res, err)
	}
	if _, err := h.store.Thread(t.Context(), expired.ID); !errors.Is(err, domain.ErrThreadNotFound) {
		t.Fatalf("purged thread: %v", err)
	}
	if !slices.Contains(h.att.purged, expired.ID) || slices.Contains(h.att.purged, held.ID) {
		t.Fatalf("attachments purged for %v, want the expired thread only", h.att.purged)
	}
	rec := h.findAudit(t, eventsv1.Action_ACTION_PURGE, expired.ID)
	if rec == nil || rec.GetOperation() != "messaging.retention-purge" || rec.GetReasonCode() != "retention" || rec.GetActor().GetRole() != commonv1.Role_ROLE_SERVICE {
		t.Fatalf("purge record = %v", rec)
	}
	_, err = h.svc.RunRetentionPurge(ctxAs(t, admin), admin, app.PurgeCmd{AsOf: h.clock.Now().Add(time.Hour)})
	wantRefusal(t, "RunRetentionPurge(as of the future)", err, usererr.InvalidArgument, "AS_OF_IN_FUTURE")
}

// TestRetentionPurgeLimitAcrossCategories: a run whose limit runs out exactly at the end of one
// category says it stopped short when a later category still has expired threads, so a caller
// that repeats while truncated purges everything.
func TestRetentionPurgeLimitAcrossCategories(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, cat := range []commonv1.ThreadCategory{commonv1.ThreadCategory_THREAD_CATEGORY_GENERAL, commonv1.ThreadCategory_THREAD_CATEGORY_BILLING} {
		if _, err := h.svc.CreateThread(ctxAs(t, patient), patient, app.CreateThreadCmd{PoolID: "pool-cardiology", Category: cat,
			Sensitivity: commonv1.Sensitivity_SENSITIVITY_NORMAL, Subject: "s", Body: "b", ClientRequestID: uuid.NewString()}); err != nil {
			t.Fatalf("CreateThread(%v) = %v", cat, err)
		}
	}
	h.clock.Advance(31 * 24 * time.Hour)
	for _, dry := range []bool{true, false} {
		res, err := h.svc.RunRetentionPurge(ctxAs(t, admin), admin, app.PurgeCmd{DryRun: dry, Limit: 1})
		if err != nil || res.Total.Eligible != 1 || !res.Truncated {
			t.Fatalf("RunRetentionPurge(limit 1, dry run %v) = %+v, %v; want 1 eligible and truncated", dry, res, err)
		}
	}
	res, err := h.svc.RunRetentionPurge(ctxAs(t, admin), admin, app.PurgeCmd{Limit: 1})
	if err != nil || res.Total.Purged != 1 || res.Truncated {
		t.Fatalf("RunRetentionPurge(the last one) = %+v, %v; want 1 purged, not truncated", res, err)
	}
}

func TestCheckMessageAccess(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	created := h.createThread(t, patient, "s", "b")
	m := created.Message.Message
	for _, tc := range []struct {
		name        string
		caller      *auth.Principal
		check       app.AccessCheck
		wantAllowed bool
		wantCode    string
		wantKind    usererr.Kind
		wantReason  string
	}{
		{name: "the patient may download", caller: attachments, check: app.AccessCheck{User: patient, MessageID: m.ID, Action: app.AccessDownload}, wantAllowed: true},
		{name: "another patient may not", caller: attachments, check: app.AccessCheck{User: otherPatient, MessageID: m.ID, Action: app.AccessDownload}},
		{name: "an admin never reads content", caller: attachments, check: app.AccessCheck{User: admin, ThreadID: created.Thread.Thread.ID, Action: app.AccessRead}},
		{name: "a person may not ask", caller: patient, check: app.AccessCheck{User: patient, MessageID: m.ID, Action: app.AccessRead},
			wantKind: usererr.PermissionDenied, wantReason: "SERVICE_CALLERS_ONLY"},
		{name: "no such message", caller: attachments, check: app.AccessCheck{User: patient, MessageID: uuid.NewString(), Action: app.AccessRead},
			wantKind: usererr.NotFound, wantReason: "MESSAGE_NOT_FOUND"},
		{name: "no target", caller: attachments, check: app.AccessCheck{User: patient, Action: app.AccessRead},
			wantKind: usererr.InvalidArgument, wantReason: "FIELD_REQUIRED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ans, err := h.svc.CheckMessageAccess(ctxAs(t, tc.caller), tc.caller, tc.check)
			if tc.wantReason != "" {
				wantRefusal(t, "CheckMessageAccess()", err, tc.wantKind, tc.wantReason)
				return
			}
			if err != nil || ans.Allowed != tc.wantAllowed || ans.ThreadID != created.Thread.Thread.ID || ans.PatientID != "p-1001" {
				t.Fatalf("CheckMessageAccess() = %+v, %v; want allowed %v with the thread's facts", ans, err, tc.wantAllowed)
			}
		})
	}
}

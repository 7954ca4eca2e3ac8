package wire_test

import (
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
)

// TestReadFailsClosed makes the outbox refuse the read's audit record (a trigger raising an
// exception for rows that name the thread) and proves GetThread then returns no content.
func TestReadFailsClosed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	body := marker(t, "body")
	th := e.createThread(t, servicetest.Patient, &messagingv1.CreateThreadRequest{Subject: marker(t, "s"), Body: body}).GetThread()
	schema := e.h.Schema
	// The guard's own rpc-level record names no thread, so only the use case's record fails.
	for _, q := range []string{
		`CREATE FUNCTION ` + schema + `.refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN RAISE EXCEPTION 'audit outbox unavailable'; END $$`,
		`CREATE TRIGGER refuse_audit BEFORE INSERT ON ` + schema + `.outbox FOR EACH ROW
			WHEN (position(convert_to('` + th.GetThreadId() + `', 'UTF8') in NEW.payload) > 0)
			EXECUTE FUNCTION ` + schema + `.refuse_audit()`,
	} {
		if _, err := e.h.Proc.Pool.Exec(t.Context(), q); err != nil {
			t.Fatalf("install failing trigger: %v", err)
		}
	}
	resp, err := e.api.GetThread(e.as(t, servicetest.Patient), &messagingv1.GetThreadRequest{ThreadId: th.GetThreadId()})
	if c := codesOf(err); c != codes.Unavailable && c != codes.Internal {
		t.Fatalf("GetThread with the audit outbox failing = %v, want UNAVAILABLE or INTERNAL", err)
	}
	if resp != nil {
		t.Fatalf("GetThread returned %v while its access could not be recorded", resp)
	}
	if _, err := e.h.Proc.Pool.Exec(t.Context(), `DROP TRIGGER refuse_audit ON `+schema+`.outbox`); err != nil {
		t.Fatal(err)
	}
	resp, err = e.api.GetThread(e.as(t, servicetest.Patient), &messagingv1.GetThreadRequest{ThreadId: th.GetThreadId()})
	if err != nil || resp.GetMessages()[0].GetBody() != body {
		t.Fatalf("GetThread after recovery = %v, want the body", err)
	}
}

// TestRetractAndCorrect retracts within the window, keeps the sealed original, and shows the
// marker and the correction to readers.
func TestRetractAndCorrect(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	created := e.createThread(t, servicetest.Patient, &messagingv1.CreateThreadRequest{Subject: "s", Body: marker(t, "b")})
	th := created.GetThread().GetThreadId()
	sent, err := e.api.SendMessage(e.as(t, servicetest.Clinician), &messagingv1.SendMessageRequest{ThreadId: th, Body: marker(t, "wrong"), ClientRequestId: uuid.NewString()})
	if err != nil {
		t.Fatal(err)
	}
	msg := sent.GetMessage().GetMessageId()

	_, err = e.api.RetractMessage(e.as(t, servicetest.Patient), &messagingv1.RetractMessageRequest{ThreadId: th, MessageId: msg, ReasonCode: "wrong_content", ClientRequestId: uuid.NewString()})
	wantCode(t, "RetractMessage(not the sender)", err, codes.PermissionDenied)
	_, err = e.api.RetractMessage(e.as(t, servicetest.Clinician), &messagingv1.RetractMessageRequest{ThreadId: th, MessageId: msg, ReasonCode: "Oops I typed", ClientRequestId: uuid.NewString()})
	wantCode(t, "RetractMessage(free-text reason)", err, codes.InvalidArgument)

	corrected := marker(t, "corrected")
	req := &messagingv1.RetractMessageRequest{ThreadId: th, MessageId: msg, ReasonCode: "wrong_content", CorrectedBody: corrected, ClientRequestId: uuid.NewString()}
	res, err := e.api.RetractMessage(e.as(t, servicetest.Clinician), req)
	if err != nil {
		t.Fatalf("RetractMessage = %v", err)
	}
	again, err := e.api.RetractMessage(e.as(t, servicetest.Clinician), req)
	if err != nil || again.GetCorrection().GetMessageId() != res.GetCorrection().GetMessageId() {
		t.Fatalf("RetractMessage retry = %v, %v, want the same correction", again, err)
	}
	_, err = e.api.RetractMessage(e.as(t, servicetest.Clinician), &messagingv1.RetractMessageRequest{ThreadId: th, MessageId: msg, ReasonCode: "wrong_content", ClientRequestId: uuid.NewString()})
	wantCode(t, "RetractMessage(again, new request)", err, codes.FailedPrecondition)

	got, err := e.api.GetThread(e.as(t, servicetest.Patient), &messagingv1.GetThreadRequest{ThreadId: th})
	if err != nil {
		t.Fatal(err)
	}
	var retracted, correction *messagingv1.Message
	for _, m := range got.GetMessages() {
		switch m.GetMessageId() {
		case msg:
			retracted = m
		case res.GetCorrection().GetMessageId():
			correction = m
		}
	}
	if retracted.GetBody() != "" || retracted.GetRetraction().GetReasonCode() != "wrong_content" || retracted.GetRetraction().GetCorrectionMessageId() != correction.GetMessageId() {
		t.Fatalf("retracted message as read = %v, want no body and a marker pointing at the correction", retracted)
	}
	if correction.GetBody() != corrected || correction.GetCorrectsMessageId() != msg {
		t.Fatalf("correction as read = %v, want the corrected body referencing %s", correction, msg)
	}
	// The original stays sealed in the record.
	var sealed []byte
	if err := e.h.Proc.Pool.QueryRow(t.Context(), `SELECT body_sealed FROM messages WHERE id = $1`, msg).Scan(&sealed); err != nil || len(sealed) == 0 {
		t.Fatalf("sealed original after retraction = %d bytes (%v), want it kept", len(sealed), err)
	}
	if !slices.Contains(e.eventSubjects(t), e.h.Topology.EventsSubject+".message.retracted.pool-cardiology") {
		t.Fatalf("no message.retracted event")
	}
}

// TestTriageLifecycle claims, assigns, transfers, closes and reopens a thread.
func TestTriageLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	th := e.createThread(t, servicetest.Patient, &messagingv1.CreateThreadRequest{Subject: "s", Body: "b"}).GetThread().GetThreadId()
	clin := e.as(t, servicetest.Clinician)

	if r, err := e.api.ClaimThread(clin, &messagingv1.ClaimThreadRequest{ThreadId: th}); err != nil || r.GetThread().GetAssigneeSubject() != "user-clinician" || r.GetThread().GetSubject() != "" {
		t.Fatalf("ClaimThread = %v, %v, want assigned to user-clinician, no subject", r.GetThread(), err)
	}
	_, err := e.api.ClaimThread(e.as(t, TwoPoolClinician), &messagingv1.ClaimThreadRequest{ThreadId: th})
	wantCode(t, "ClaimThread(held by someone else)", err, codes.FailedPrecondition)
	if r, err := e.api.AssignThread(clin, &messagingv1.AssignThreadRequest{ThreadId: th, AssigneeSubject: "user-clinician-3"}); err != nil || r.GetThread().GetAssigneeSubject() != "user-clinician-3" {
		t.Fatalf("AssignThread = %v, %v", r.GetThread(), err)
	}
	_, err = e.api.TransferThread(clin, &messagingv1.TransferThreadRequest{ThreadId: th, ToPoolId: "pool-dermatology", ReasonCode: "wrong_pool"})
	wantCode(t, "TransferThread(not a member of the target pool)", err, codes.PermissionDenied)
	note := marker(t, "note")
	r, err := e.api.TransferThread(e.as(t, TwoPoolClinician), &messagingv1.TransferThreadRequest{ThreadId: th, ToPoolId: "pool-dermatology", ReasonCode: "wrong_pool", Reason: note})
	if err != nil || r.GetThread().GetPoolId() != "pool-dermatology" || r.GetThread().GetAssigneeSubject() != "" || r.GetThread().GetStatus() != messagingv1.ThreadStatus_THREAD_STATUS_OPEN {
		t.Fatalf("TransferThread = %v, %v, want open in pool-dermatology", r.GetThread(), err)
	}
	// The old pool has lost it; the new pool has it.
	_, err = e.api.GetThread(clin, &messagingv1.GetThreadRequest{ThreadId: th})
	wantCode(t, "GetThread(old pool after transfer)", err, codes.PermissionDenied)
	derm := e.as(t, servicetest.OtherClinician)
	if r, err := e.api.CloseThread(derm, &messagingv1.CloseThreadRequest{ThreadId: th, ReasonCode: "resolved"}); err != nil || r.GetThread().GetStatus() != messagingv1.ThreadStatus_THREAD_STATUS_CLOSED || r.GetThread().GetCloseTime() == nil {
		t.Fatalf("CloseThread = %v, %v", r.GetThread(), err)
	}
	_, err = e.api.SendMessage(e.as(t, servicetest.Patient), &messagingv1.SendMessageRequest{ThreadId: th, Body: "x", ClientRequestId: uuid.NewString()})
	wantCode(t, "SendMessage(closed thread)", err, codes.FailedPrecondition)
	if r, err := e.api.ReopenThread(derm, &messagingv1.ReopenThreadRequest{ThreadId: th}); err != nil || r.GetThread().GetStatus() != messagingv1.ThreadStatus_THREAD_STATUS_OPEN {
		t.Fatalf("ReopenThread = %v, %v", r.GetThread(), err)
	}
	_, err = e.api.ClaimThread(e.as(t, servicetest.Patient), &messagingv1.ClaimThreadRequest{ThreadId: th})
	wantCode(t, "ClaimThread(patient)", err, codes.PermissionDenied)

	subs := e.eventSubjects(t)
	for _, want := range []string{"thread.assigned.pool-cardiology", "thread.transferred.pool-dermatology", "thread.closed.pool-dermatology", "thread.reopened.pool-dermatology"} {
		if !slices.Contains(subs, e.h.Topology.EventsSubject+"."+want) {
			t.Errorf("no %s event; got %v", want, subs)
		}
	}
	if hits := e.rawRowsContain(t, note); len(hits) > 0 {
		t.Errorf("transfer note stored in plaintext in %v", hits)
	}
}

// TestCheckMessageAccess answers the attachment service for end users, and only for services.
func TestCheckMessageAccess(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	created := e.createThread(t, servicetest.Patient, &messagingv1.CreateThreadRequest{Subject: "s", Body: "b"})
	teen := e.createThread(t, servicetest.Teen, &messagingv1.CreateThreadRequest{Subject: "s", Body: "b", Sensitivity: commonv1.Sensitivity_SENSITIVITY_ADOLESCENT_CONFIDENTIAL})
	svc := messagingv1.NewMessagingServiceClient(e.h.ServiceConn(t, "attachment"))
	for _, tc := range []struct {
		name    string
		persona servicetest.Persona
		req     *messagingv1.CheckMessageAccessRequest
		allowed bool
	}{
		{"patient downloads own", servicetest.Patient, &messagingv1.CheckMessageAccessRequest{Target: &messagingv1.CheckMessageAccessRequest_MessageId{MessageId: created.GetMessage().GetMessageId()}, Action: messagingv1.AccessAction_ACCESS_ACTION_DOWNLOAD}, true},
		{"other patient may not", servicetest.OtherPatient, &messagingv1.CheckMessageAccessRequest{Target: &messagingv1.CheckMessageAccessRequest_MessageId{MessageId: created.GetMessage().GetMessageId()}, Action: messagingv1.AccessAction_ACCESS_ACTION_DOWNLOAD}, false},
		{"clinician of the pool reads", servicetest.Clinician, &messagingv1.CheckMessageAccessRequest{Target: &messagingv1.CheckMessageAccessRequest_ThreadId{ThreadId: created.GetThread().GetThreadId()}, Action: messagingv1.AccessAction_ACCESS_ACTION_READ}, true},
		{"proxy never on adolescent-confidential", servicetest.Proxy, &messagingv1.CheckMessageAccessRequest{Target: &messagingv1.CheckMessageAccessRequest_ThreadId{ThreadId: teen.GetThread().GetThreadId()}, Action: messagingv1.AccessAction_ACCESS_ACTION_DOWNLOAD}, false},
		{"patient attaches to own thread", servicetest.Patient, &messagingv1.CheckMessageAccessRequest{Target: &messagingv1.CheckMessageAccessRequest_ThreadId{ThreadId: created.GetThread().GetThreadId()}, Action: messagingv1.AccessAction_ACCESS_ACTION_ATTACH}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Principal = tc.persona.Principal()
			r, err := svc.CheckMessageAccess(t.Context(), tc.req)
			if err != nil || r.GetAllowed() != tc.allowed || r.GetThreadId() == "" {
				t.Fatalf("CheckMessageAccess(%s) = %v, %v, want allowed=%v", tc.persona.Subject, r, err, tc.allowed)
			}
		})
	}
	// A person cannot ask.
	_, err := e.api.CheckMessageAccess(e.as(t, servicetest.Patient), &messagingv1.CheckMessageAccessRequest{Principal: servicetest.Patient.Principal(),
		Target: &messagingv1.CheckMessageAccessRequest_ThreadId{ThreadId: created.GetThread().GetThreadId()}, Action: messagingv1.AccessAction_ACCESS_ACTION_READ})
	wantCode(t, "CheckMessageAccess(as a person)", err, codes.PermissionDenied)
	_, err = svc.CheckMessageAccess(t.Context(), &messagingv1.CheckMessageAccessRequest{Principal: servicetest.Patient.Principal(), Target: &messagingv1.CheckMessageAccessRequest_ThreadId{ThreadId: uuid.NewString()}, Action: messagingv1.AccessAction_ACCESS_ACTION_READ})
	wantCode(t, "CheckMessageAccess(unknown thread)", err, codes.NotFound)
}

// TestRetentionPurgeAndLegalHold purges expired threads (their attachments through the
// attachment service, their DEKs crypto-shredded), skips held ones, and audits the purge.
func TestRetentionPurgeAndLegalHold(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	att := e.stub.add("user-patient", attachmentv1.ScanState_SCAN_STATE_CLEAN)
	expired := e.createThread(t, servicetest.Patient, &messagingv1.CreateThreadRequest{Subject: "s", Body: "b", AttachmentIds: []string{att}}).GetThread().GetThreadId()
	held := e.createThread(t, servicetest.Patient, &messagingv1.CreateThreadRequest{Subject: "s", Body: "b"}).GetThread().GetThreadId()
	patientHeld := e.createThread(t, servicetest.OtherPatient, &messagingv1.CreateThreadRequest{Subject: "s", Body: "b"}).GetThread().GetThreadId()
	fresh := e.createThread(t, servicetest.Patient, &messagingv1.CreateThreadRequest{Subject: "s", Body: "b"}).GetThread().GetThreadId()
	if _, err := e.h.Proc.Pool.Exec(t.Context(), `UPDATE threads SET last_message_at = now() - interval '40 days' WHERE id = ANY($1)`,
		[]string{expired, held, patientHeld}); err != nil {
		t.Fatal(err)
	}
	admin := e.as(t, servicetest.Admin)
	_, err := e.api.SetLegalHold(admin, &messagingv1.SetLegalHoldRequest{Target: &messagingv1.SetLegalHoldRequest_ThreadId{ThreadId: held}, On: true})
	wantCode(t, "SetLegalHold(no case reference)", err, codes.InvalidArgument)
	if r, err := e.api.SetLegalHold(admin, &messagingv1.SetLegalHoldRequest{Target: &messagingv1.SetLegalHoldRequest_ThreadId{ThreadId: held}, On: true, CaseReference: "LIT-2026-0042"}); err != nil || r.GetThreadsAffected() != 1 {
		t.Fatalf("SetLegalHold(thread) = %v, %v", r, err)
	}
	if r, err := e.api.SetLegalHold(admin, &messagingv1.SetLegalHoldRequest{Target: &messagingv1.SetLegalHoldRequest_PatientId{PatientId: "p-1002"}, On: true, CaseReference: "LIT-2026-0043"}); err != nil || r.GetThreadsAffected() != 1 {
		t.Fatalf("SetLegalHold(patient) = %v, %v", r, err)
	}
	_, err = e.api.SetLegalHold(e.as(t, servicetest.Clinician), &messagingv1.SetLegalHoldRequest{Target: &messagingv1.SetLegalHoldRequest_ThreadId{ThreadId: held}, On: false})
	wantCode(t, "SetLegalHold(clinician)", err, codes.PermissionDenied)
	_, err = e.api.RunRetentionPurge(e.as(t, servicetest.Clinician), &messagingv1.RunRetentionPurgeRequest{})
	wantCode(t, "RunRetentionPurge(clinician)", err, codes.PermissionDenied)

	dry, err := e.api.RunRetentionPurge(admin, &messagingv1.RunRetentionPurgeRequest{DryRun: true})
	if err != nil || dry.GetTotal().GetThreadsEligible() != 1 || dry.GetTotal().GetThreadsPurged() != 0 || dry.GetTotal().GetThreadsSkippedLegalHold() != 2 || dry.GetTotal().GetAttachmentsPurged() != 1 {
		t.Fatalf("RunRetentionPurge(dry run) = %v, %v, want 1 eligible (1 attachment), 2 held, none purged", dry.GetTotal(), err)
	}
	res, err := e.api.RunRetentionPurge(admin, &messagingv1.RunRetentionPurgeRequest{AsOf: timestamppb.New(time.Now())})
	if err != nil || res.GetTotal().GetThreadsPurged() != 1 || res.GetTotal().GetMessagesPurged() != 1 || res.GetTotal().GetThreadsSkippedLegalHold() != 2 {
		t.Fatalf("RunRetentionPurge = %v, %v, want 1 purged, 2 held", res.GetTotal(), err)
	}
	var left []string
	rows, _ := e.h.Proc.Pool.Query(t.Context(), `SELECT id::text FROM threads ORDER BY id`)
	for rows.Next() {
		var id string
		_ = rows.Scan(&id)
		left = append(left, id)
	}
	if slices.Contains(left, expired) || !slices.Contains(left, held) || !slices.Contains(left, patientHeld) || !slices.Contains(left, fresh) {
		t.Fatalf("threads after purge = %v; want %s gone, the held and fresh ones kept", left, expired)
	}
	var n int
	_ = e.h.Proc.Pool.QueryRow(t.Context(), `SELECT count(*) FROM messages WHERE thread_id = $1`, expired).Scan(&n)
	if n != 0 || !slices.Contains(e.stub.purged, expired) {
		t.Fatalf("after purge: %d messages left, attachment purge for %v; want 0 and the thread", n, e.stub.purged)
	}
	if r := findAudit(e.auditRecords(t), eventsv1.Action_ACTION_PURGE, expired, ""); r == nil || r.GetSeverity() != eventsv1.Severity_SEVERITY_HIGH {
		t.Fatalf("purge audit record = %v, want ACTION_PURGE at HIGH", r)
	}
	// Lifting the hold lets the next run purge; a second run is idempotent.
	if _, err := e.api.SetLegalHold(admin, &messagingv1.SetLegalHoldRequest{Target: &messagingv1.SetLegalHoldRequest_ThreadId{ThreadId: held}, On: false}); err != nil {
		t.Fatal(err)
	}
	if res, err := e.api.RunRetentionPurge(admin, &messagingv1.RunRetentionPurgeRequest{}); err != nil || res.GetTotal().GetThreadsPurged() != 1 {
		t.Fatalf("RunRetentionPurge after lifting the hold = %v, %v, want 1 purged", res.GetTotal(), err)
	}
	// The attachment service down: nothing is deleted, the run reports UNAVAILABLE.
	if _, err := e.api.SetLegalHold(admin, &messagingv1.SetLegalHoldRequest{Target: &messagingv1.SetLegalHoldRequest_PatientId{PatientId: "p-1002"}, On: false}); err != nil {
		t.Fatal(err)
	}
	e.stub.mu.Lock()
	e.stub.down = true
	e.stub.mu.Unlock()
	_, err = e.api.RunRetentionPurge(admin, &messagingv1.RunRetentionPurgeRequest{})
	wantCode(t, "RunRetentionPurge(attachment service down)", err, codes.Unavailable)
	if err := e.h.Proc.Pool.QueryRow(t.Context(), `SELECT count(*) FROM threads WHERE id = $1`, patientHeld).Scan(&n); err != nil || n != 1 {
		t.Fatalf("thread purged although its attachments were not")
	}
}

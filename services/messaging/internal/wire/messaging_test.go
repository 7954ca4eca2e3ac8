package wire_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
)

// TestConversationEndToEnd walks a patient's question through the care team and back, over
// TLS with real tokens, and then proves that no plaintext reached a table, an event or an
// audit record.
func TestConversationEndToEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	subject, body, reply := marker(t, "subject"), marker(t, "body"), marker(t, "reply")

	// An admin sets the pool's auto-reply.
	_, err := e.api.UpdatePoolSettings(e.as(t, servicetest.Admin), &messagingv1.UpdatePoolSettingsRequest{
		Settings: &messagingv1.PoolSettings{PoolId: "pool-cardiology", AutoReplyEnabled: true,
			AutoReplyText: "Thank you, we received your message.", TurnaroundTime: durationpb.New(48 * time.Hour),
			EmergencyDisclaimer: "For emergencies call 911."},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"auto_reply_enabled", "auto_reply_text", "turnaround_time", "emergency_disclaimer"}},
	})
	if err != nil {
		t.Fatalf("UpdatePoolSettings = %v", err)
	}

	created := e.createThread(t, servicetest.Patient, &messagingv1.CreateThreadRequest{Subject: subject, Body: body})
	th := created.GetThread()
	if th.GetSubject() != subject || created.GetMessage().GetBody() != body || th.GetPatientId() != "p-1001" {
		t.Fatalf("CreateThread() = %v, want the subject, body and patient p-1001", created)
	}
	if created.GetAutoReply() == nil || !strings.Contains(created.GetAutoReply().GetBody(), "call 911") ||
		!strings.Contains(created.GetAutoReply().GetBody(), "2 days") || created.GetEmergencyDisclaimer() == "" {
		t.Fatalf("CreateThread().AutoReply = %v, want the pool's auto-reply with turnaround and disclaimer", created.GetAutoReply())
	}

	// The clinician of the pool sees it in the inbox, with the subject and one unread message
	// (the auto-reply counts for the patient only).
	list, err := e.api.ListThreads(e.as(t, servicetest.Clinician), &messagingv1.ListThreadsRequest{})
	if err != nil {
		t.Fatalf("ListThreads(clinician) = %v", err)
	}
	if len(list.GetThreads()) != 1 || list.GetThreads()[0].GetSubject() != subject || list.GetThreads()[0].GetUnreadCount() != 2 {
		t.Fatalf("ListThreads(clinician) = %v, want the new thread with 2 unread", list.GetThreads())
	}
	// A clinician of another pool does not.
	other, err := e.api.ListThreads(e.as(t, servicetest.OtherClinician), &messagingv1.ListThreadsRequest{})
	if err != nil || len(other.GetThreads()) != 0 {
		t.Fatalf("ListThreads(other pool) = %v, %v, want nothing", other.GetThreads(), err)
	}

	// The clinician claims and answers.
	if _, err := e.api.ClaimThread(e.as(t, servicetest.Clinician), &messagingv1.ClaimThreadRequest{ThreadId: th.GetThreadId()}); err != nil {
		t.Fatalf("ClaimThread = %v", err)
	}
	sent, err := e.api.SendMessage(e.as(t, servicetest.Clinician), &messagingv1.SendMessageRequest{ThreadId: th.GetThreadId(), Body: reply, ClientRequestId: uuid.NewString()})
	if err != nil {
		t.Fatalf("SendMessage(clinician) = %v", err)
	}

	// The patient reads the thread: three messages, oldest first, the reply unread.
	got, err := e.api.GetThread(e.as(t, servicetest.Patient), &messagingv1.GetThreadRequest{ThreadId: th.GetThreadId()})
	if err != nil {
		t.Fatalf("GetThread(patient) = %v", err)
	}
	var bodies []string
	for _, m := range got.GetMessages() {
		bodies = append(bodies, m.GetBody())
	}
	if len(bodies) != 3 || bodies[0] != body || bodies[2] != reply || got.GetThread().GetSubject() != subject {
		t.Fatalf("GetThread(patient) bodies = %q, want [body auto-reply reply]", bodies)
	}
	if got.GetThread().GetUnreadCount() != 2 || got.GetThread().GetStatus() != messagingv1.ThreadStatus_THREAD_STATUS_ASSIGNED {
		t.Fatalf("GetThread(patient).Thread = %v, want 2 unread and ASSIGNED", got.GetThread())
	}
	mr, err := e.api.MarkRead(e.as(t, servicetest.Patient), &messagingv1.MarkReadRequest{ThreadId: th.GetThreadId(), UpToMessageId: sent.GetMessage().GetMessageId()})
	if err != nil || mr.GetUnreadCount() != 0 {
		t.Fatalf("MarkRead = %v, %v, want 0 unread", mr, err)
	}

	// The proxy with a read grant sees the thread too.
	if _, err := e.api.GetThread(e.as(t, servicetest.Proxy), &messagingv1.GetThreadRequest{ThreadId: th.GetThreadId()}); err != nil {
		t.Fatalf("GetThread(proxy with grant) = %v", err)
	}

	// Archive is per viewer.
	if _, err := e.api.ArchiveThread(e.as(t, servicetest.Patient), &messagingv1.ArchiveThreadRequest{ThreadId: th.GetThreadId()}); err != nil {
		t.Fatalf("ArchiveThread = %v", err)
	}
	inbox, _ := e.api.ListThreads(e.as(t, servicetest.Patient), &messagingv1.ListThreadsRequest{})
	archived, _ := e.api.ListThreads(e.as(t, servicetest.Patient), &messagingv1.ListThreadsRequest{Box: messagingv1.Box_BOX_ARCHIVED})
	if len(inbox.GetThreads()) != 0 || len(archived.GetThreads()) != 1 {
		t.Fatalf("after archive: inbox %d, archived %d threads, want 0 and 1", len(inbox.GetThreads()), len(archived.GetThreads()))
	}

	// Audit: create, read, update records; events on the documented subjects.
	recs := e.auditRecords(t)
	for _, want := range []struct {
		action eventsv1.Action
		id     string
		actor  string
	}{
		{eventsv1.Action_ACTION_CREATE, th.GetThreadId(), "user-patient"},
		{eventsv1.Action_ACTION_CREATE, created.GetMessage().GetMessageId(), "user-patient"},
		{eventsv1.Action_ACTION_UPDATE, th.GetThreadId(), "user-clinician"},
		{eventsv1.Action_ACTION_CREATE, sent.GetMessage().GetMessageId(), "user-clinician"},
		{eventsv1.Action_ACTION_READ, th.GetThreadId(), "user-patient"},
		{eventsv1.Action_ACTION_READ, th.GetThreadId(), "user-proxy"},
	} {
		if findAudit(recs, want.action, want.id, want.actor) == nil {
			t.Errorf("no audit record %v of %s by %s", want.action, want.id, want.actor)
		}
	}
	if r := findAudit(recs, eventsv1.Action_ACTION_READ, th.GetThreadId(), "user-proxy"); r != nil && r.GetActor().GetOnBehalfOf() != "p-1001" {
		t.Errorf("proxy read record on_behalf_of = %q, want p-1001", r.GetActor().GetOnBehalfOf())
	}
	subs := e.eventSubjects(t)
	for _, want := range []string{"thread.created.pool-cardiology", "message.created.pool-cardiology", "thread.assigned.pool-cardiology", "message.read.pool-cardiology"} {
		if !slices.Contains(subs, e.h.Topology.EventsSubject+"."+want) {
			t.Errorf("no event on %s; got %v", want, subs)
		}
	}

	// No plaintext anywhere at rest, nor in what was published.
	for _, m := range []string{subject, body, reply} {
		if hits := e.rawRowsContain(t, m); len(hits) > 0 {
			t.Errorf("plaintext marker found in raw rows of %v", hits)
		}
		if e.publishedContain(t, m) {
			t.Errorf("plaintext marker found in published events or audit records")
		}
	}
}

// TestAccessRules proves the record-level rules end to end, and that every denial is audited.
func TestAccessRules(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	mine := e.createThread(t, servicetest.Patient, &messagingv1.CreateThreadRequest{Subject: marker(t, "s"), Body: marker(t, "b")}).GetThread()
	teen := e.createThread(t, servicetest.Teen, &messagingv1.CreateThreadRequest{Subject: marker(t, "s"), Body: marker(t, "b"),
		Sensitivity: commonv1.Sensitivity_SENSITIVITY_ADOLESCENT_CONFIDENTIAL}).GetThread()

	for _, tc := range []struct {
		name    string
		persona servicetest.Persona
		thread  string
		want    codes.Code
	}{
		{"patient reads own thread", servicetest.Patient, mine.GetThreadId(), codes.OK},
		{"other patient is denied", servicetest.OtherPatient, mine.GetThreadId(), codes.PermissionDenied},
		{"proxy with grant reads", servicetest.Proxy, mine.GetThreadId(), codes.OK},
		{"proxy without grant is denied", StrangerProxy, mine.GetThreadId(), codes.PermissionDenied},
		{"proxy never sees adolescent-confidential", servicetest.Proxy, teen.GetThreadId(), codes.NotFound},
		{"teen reads own confidential thread", servicetest.Teen, teen.GetThreadId(), codes.OK},
		{"clinician of the pool reads", servicetest.Clinician, mine.GetThreadId(), codes.OK},
		{"clinician outside the pool is denied", servicetest.OtherClinician, mine.GetThreadId(), codes.PermissionDenied},
		{"staff without MFA is denied", servicetest.StaffNoMFA, mine.GetThreadId(), codes.PermissionDenied},
		{"admin reads no PHI", servicetest.Admin, mine.GetThreadId(), codes.PermissionDenied},
		{"auditor reads no content", servicetest.Auditor, mine.GetThreadId(), codes.PermissionDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := e.api.GetThread(e.as(t, tc.persona), &messagingv1.GetThreadRequest{ThreadId: tc.thread})
			wantCode(t, "GetThread(as "+tc.persona.Subject+")", err, tc.want)
			if tc.want != codes.OK && resp != nil {
				t.Fatalf("GetThread() returned content with an error")
			}
		})
	}

	// Writes: a read-only proxy may read but not reply; nobody replies into someone else's thread.
	for _, tc := range []struct {
		name    string
		persona servicetest.Persona
		want    codes.Code
	}{
		{"read-only proxy may not reply", ReadOnlyProxy, codes.PermissionDenied},
		{"other patient may not reply", servicetest.OtherPatient, codes.PermissionDenied},
		{"clinician outside the pool may not reply", servicetest.OtherClinician, codes.PermissionDenied},
		{"proxy with write grant replies", servicetest.Proxy, codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.api.SendMessage(e.as(t, tc.persona), &messagingv1.SendMessageRequest{ThreadId: mine.GetThreadId(), Body: marker(t, "w"), ClientRequestId: uuid.NewString()})
			wantCode(t, "SendMessage(as "+tc.persona.Subject+")", err, tc.want)
		})
	}

	// A proxy may not create an adolescent-confidential thread, nor write for another patient.
	_, err := e.api.CreateThread(e.as(t, servicetest.Proxy), &messagingv1.CreateThreadRequest{PoolId: "pool-cardiology", PatientId: "p-1001",
		Category: commonv1.ThreadCategory_THREAD_CATEGORY_GENERAL, Sensitivity: commonv1.Sensitivity_SENSITIVITY_ADOLESCENT_CONFIDENTIAL,
		Subject: "s", Body: "b", ClientRequestId: uuid.NewString()})
	wantCode(t, "CreateThread(proxy, adolescent-confidential)", err, codes.PermissionDenied)
	_, err = e.api.CreateThread(e.as(t, servicetest.Patient), &messagingv1.CreateThreadRequest{PoolId: "pool-cardiology", PatientId: "p-1002",
		Category: commonv1.ThreadCategory_THREAD_CATEGORY_GENERAL, Sensitivity: commonv1.Sensitivity_SENSITIVITY_NORMAL,
		Subject: "s", Body: "b", ClientRequestId: uuid.NewString()})
	wantCode(t, "CreateThread(patient for someone else)", err, codes.PermissionDenied)

	// Lists never show what a read would refuse.
	pl, err := e.api.ListThreads(e.as(t, servicetest.Proxy), &messagingv1.ListThreadsRequest{})
	if err != nil {
		t.Fatalf("ListThreads(proxy) = %v", err)
	}
	for _, s := range pl.GetThreads() {
		if s.GetThreadId() == teen.GetThreadId() {
			t.Fatalf("ListThreads(proxy) lists the adolescent-confidential thread")
		}
	}

	// Every record-level denial is on record.
	recs := e.auditRecords(t)
	for _, want := range []struct{ actor, thread string }{
		{"user-patient-2", mine.GetThreadId()},
		{"user-proxy-3", mine.GetThreadId()},
		{"user-proxy", teen.GetThreadId()},
		{"user-clinician-2", mine.GetThreadId()},
		{"user-proxy-ro", ""}, // refused at the rpc level (no write grant at all): no record id
	} {
		r := findAudit(recs, eventsv1.Action_ACTION_DENY, want.thread, want.actor)
		if r == nil || r.GetOutcome() != eventsv1.Outcome_OUTCOME_DENIED {
			t.Errorf("no DENY audit record for %s on %s", want.actor, want.thread)
		}
	}
}

// TestBreakGlass lets a clinician outside the pool read with a reason, audited HIGH, reason
// sealed.
func TestBreakGlass(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	th := e.createThread(t, servicetest.Patient, &messagingv1.CreateThreadRequest{Subject: marker(t, "s"), Body: marker(t, "b")}).GetThread()
	reason := marker(t, "reason")
	got, err := e.api.GetThread(e.as(t, servicetest.OtherClinician), &messagingv1.GetThreadRequest{ThreadId: th.GetThreadId(), BreakGlassReason: reason})
	if err != nil || !got.GetBreakGlass() {
		t.Fatalf("GetThread(break glass) = %v, %v, want access flagged break_glass", got.GetBreakGlass(), err)
	}
	r := findAudit(e.auditRecords(t), eventsv1.Action_ACTION_BREAK_GLASS, th.GetThreadId(), "user-clinician-2")
	if r == nil || r.GetSeverity() != eventsv1.Severity_SEVERITY_HIGH || r.GetPurposeOfUse() != commonv1.PurposeOfUse_PURPOSE_OF_USE_EMERGENCY {
		t.Fatalf("break-glass audit record = %v, want HIGH, EMERGENCY", r)
	}
	if hits := e.rawRowsContain(t, reason); len(hits) > 0 {
		t.Fatalf("break-glass reason stored in plaintext in %v", hits)
	}
	// A patient cannot break the glass.
	_, err = e.api.GetThread(e.as(t, servicetest.OtherPatient), &messagingv1.GetThreadRequest{ThreadId: th.GetThreadId(), BreakGlassReason: "emergency"})
	wantCode(t, "GetThread(patient, break glass)", err, codes.PermissionDenied)
}

// TestIdempotentRetries proves a retried send returns the first result and a reused request id
// with different content is refused.
func TestIdempotentRetries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	crid := uuid.NewString()
	req := &messagingv1.CreateThreadRequest{Subject: marker(t, "s"), Body: marker(t, "b"), ClientRequestId: crid}
	first := e.createThread(t, servicetest.Patient, req)
	again := e.createThread(t, servicetest.Patient, req)
	if again.GetThread().GetThreadId() != first.GetThread().GetThreadId() || again.GetMessage().GetMessageId() != first.GetMessage().GetMessageId() ||
		again.GetThread().GetSubject() != req.Subject {
		t.Fatalf("CreateThread retry = %v, want the first thread %s", again.GetThread(), first.GetThread().GetThreadId())
	}
	thread := first.GetThread().GetThreadId()

	send := &messagingv1.SendMessageRequest{ThreadId: thread, Body: marker(t, "reply"), ClientRequestId: uuid.NewString()}
	ctx := e.as(t, servicetest.Clinician)
	var ids []string
	for range 3 {
		r, err := e.api.SendMessage(ctx, send)
		if err != nil {
			t.Fatalf("SendMessage = %v", err)
		}
		ids = append(ids, r.GetMessage().GetMessageId())
	}
	if ids[0] != ids[1] || ids[1] != ids[2] {
		t.Fatalf("SendMessage retries = %v, want one message id", ids)
	}
	var n int
	if err := e.h.Proc.Pool.QueryRow(t.Context(), `SELECT count(*) FROM messages WHERE thread_id = $1`, thread).Scan(&n); err != nil || n != 2 {
		t.Fatalf("messages in thread = %d (%v), want 2", n, err)
	}
	changed := &messagingv1.SendMessageRequest{ThreadId: thread, Body: "something else", ClientRequestId: send.ClientRequestId}
	_, err := e.api.SendMessage(ctx, changed)
	wantCode(t, "SendMessage(reused request id, new body)", err, codes.AlreadyExists)

	for _, tc := range []struct {
		name string
		req  *messagingv1.SendMessageRequest
		want codes.Code
	}{
		{"no request id", &messagingv1.SendMessageRequest{ThreadId: thread, Body: "x"}, codes.InvalidArgument},
		{"empty body", &messagingv1.SendMessageRequest{ThreadId: thread, ClientRequestId: uuid.NewString()}, codes.InvalidArgument},
		{"body too long", &messagingv1.SendMessageRequest{ThreadId: thread, Body: strings.Repeat("x", 20001), ClientRequestId: uuid.NewString()}, codes.InvalidArgument},
		{"too many attachments", &messagingv1.SendMessageRequest{ThreadId: thread, Body: "x", ClientRequestId: uuid.NewString(),
			AttachmentIds: slices.Repeat([]string{uuid.NewString()}, 11)}, codes.InvalidArgument},
		{"unknown thread", &messagingv1.SendMessageRequest{ThreadId: uuid.NewString(), Body: "x", ClientRequestId: uuid.NewString()}, codes.NotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.api.SendMessage(e.as(t, servicetest.Clinician), tc.req)
			wantCode(t, "SendMessage", err, tc.want)
		})
	}
}

// TestAttachmentsBoundThroughAttachmentService binds clean uploads of the sender and refuses
// infected ones or someone else's.
func TestAttachmentsBoundThroughAttachmentService(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	clean := e.stub.add("user-patient", attachmentv1.ScanState_SCAN_STATE_CLEAN)
	infected := e.stub.add("user-patient", attachmentv1.ScanState_SCAN_STATE_INFECTED)
	pending := e.stub.add("user-patient", attachmentv1.ScanState_SCAN_STATE_PENDING)
	foreign := e.stub.add("user-patient-2", attachmentv1.ScanState_SCAN_STATE_CLEAN)

	created := e.createThread(t, servicetest.Patient, &messagingv1.CreateThreadRequest{Subject: "s", Body: "b", AttachmentIds: []string{clean}})
	if got := created.GetMessage().GetAttachmentIds(); len(got) != 1 || got[0] != clean {
		t.Fatalf("CreateThread().Message.AttachmentIds = %v, want [%s]", got, clean)
	}
	if e.stub.files[clean].GetMessageId() != created.GetMessage().GetMessageId() {
		t.Fatalf("attachment bound to %q, want %q", e.stub.files[clean].GetMessageId(), created.GetMessage().GetMessageId())
	}
	for _, tc := range []struct {
		name string
		id   string
		want codes.Code
	}{
		{"infected", infected, codes.FailedPrecondition},
		{"not yet scanned", pending, codes.FailedPrecondition},
		{"someone else's", foreign, codes.NotFound},
		{"unknown", uuid.NewString(), codes.NotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.api.SendMessage(e.as(t, servicetest.Patient), &messagingv1.SendMessageRequest{ThreadId: created.GetThread().GetThreadId(),
				Body: "b", AttachmentIds: []string{tc.id}, ClientRequestId: uuid.NewString()})
			wantCode(t, "SendMessage(attachment "+tc.name+")", err, tc.want)
		})
	}
	if !slices.Contains(e.stub.callers, "messaging") {
		t.Fatalf("attachment stub saw callers %v, want messaging", e.stub.callers)
	}
}

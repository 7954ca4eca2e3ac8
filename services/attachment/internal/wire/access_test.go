package wire_test

import (
	"testing"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
)

// bind binds a to message msg in thread as messaging does.
func (e *env) bind(t testing.TB, a *attachmentv1.Attachment, thread, msg string) (*attachmentv1.Attachment, error) {
	t.Helper()
	resp, err := e.asService(t, "messaging").BindAttachment(t.Context(), &attachmentv1.BindAttachmentRequest{
		AttachmentId: a.GetAttachmentId(), ThreadId: thread, MessageId: msg, UploaderSubject: a.GetUploaderSubject(),
	})
	return resp.GetAttachment(), err
}

func TestAccessToAttachments(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	thread, msg := "thr-"+uuid.NewString(), "msg-"+uuid.NewString()
	e.stub.allow(thread, servicetest.Patient.Subject, "p-1001")
	e.stub.allow(msg, servicetest.Patient.Subject, "p-1001")
	e.stub.set(msg, servicetest.Proxy.Subject, &messagingv1.CheckMessageAccessResponse{Allowed: true, ReasonCode: "proxy_grant", PatientId: "p-1001", PoolId: "pool-cardiology"})
	e.stub.set(msg, servicetest.Clinician.Subject, &messagingv1.CheckMessageAccessResponse{Allowed: true, ReasonCode: "pool_member", PatientId: "p-1001", PoolId: "pool-cardiology"})
	e.stub.set(msg, servicetest.Teen.Subject, &messagingv1.CheckMessageAccessResponse{Allowed: false, ReasonCode: "adolescent_confidential"})

	draft := e.mustUpload(t, servicetest.Patient, &attachmentv1.UploadMetadata{FileName: "d.txt", DeclaredMediaType: "text/plain", ThreadId: thread}, []byte("draft text"))
	if draft.GetThreadId() != thread {
		t.Fatalf("UploadAttachment(thread).ThreadId = %q, want %q", draft.GetThreadId(), thread)
	}

	t.Run("unbound upload is the uploader's alone", func(t *testing.T) {
		for _, p := range []servicetest.Persona{servicetest.OtherPatient, servicetest.Clinician, servicetest.Proxy} {
			_, _, err := download(e.as(t, p), e.api, draft.GetAttachmentId(), 0, 0)
			wantCode(t, "DownloadAttachment(draft as "+p.Subject+")", err, codes.NotFound)
			_, err = e.api.GetAttachment(e.as(t, p), &attachmentv1.GetAttachmentRequest{AttachmentId: draft.GetAttachmentId()})
			wantCode(t, "GetAttachment(draft as "+p.Subject+")", err, codes.NotFound)
		}
		if _, _, err := download(e.as(t, servicetest.Patient), e.api, draft.GetAttachmentId(), 0, 0); err != nil {
			t.Errorf("DownloadAttachment(own draft) = %v", err)
		}
	})

	t.Run("upload to a thread needs write access", func(t *testing.T) {
		md := &attachmentv1.UploadMetadata{FileName: "x.txt", DeclaredMediaType: "text/plain", ThreadId: thread}
		_, err := upload(e.as(t, servicetest.OtherPatient), e.api, md, []byte("hello"), 0)
		wantCode(t, "UploadAttachment(other patient's thread)", err, codes.PermissionDenied)
		md = &attachmentv1.UploadMetadata{FileName: "x.txt", DeclaredMediaType: "text/plain", ThreadId: "thr-missing"}
		_, err = upload(e.as(t, servicetest.Patient), e.api, md, []byte("hello"), 0)
		wantCode(t, "UploadAttachment(missing thread)", err, codes.NotFound)
	})

	bound, err := e.bind(t, draft, thread, msg)
	if err != nil || bound.GetMessageId() != msg || bound.GetBindTime() == nil {
		t.Fatalf("BindAttachment = %+v, %v, want bound to %s", bound, err, msg)
	}

	t.Run("bound attachment follows its message", func(t *testing.T) {
		tests := []struct {
			persona servicetest.Persona
			code    codes.Code
		}{
			{servicetest.Patient, codes.OK},
			{servicetest.Proxy, codes.OK},
			{servicetest.Clinician, codes.OK},
			{servicetest.OtherPatient, codes.PermissionDenied},
			{servicetest.OtherClinician, codes.PermissionDenied},
			{servicetest.Teen, codes.NotFound},
			{servicetest.Auditor, codes.PermissionDenied}, // phi-read forbidden at the rpc level
			{servicetest.Admin, codes.PermissionDenied},
		}
		for _, tt := range tests {
			t.Run(tt.persona.Subject, func(t *testing.T) {
				got, _, err := download(e.as(t, tt.persona), e.api, draft.GetAttachmentId(), 0, 0)
				wantCode(t, "DownloadAttachment(as "+tt.persona.Subject+")", err, tt.code)
				if tt.code == codes.OK && string(got) != "draft text" {
					t.Errorf("DownloadAttachment(as %s) = %q, want the file", tt.persona.Subject, got)
				}
			})
		}
		recs := findAudit(e.auditRecords(t), eventsv1.Action_ACTION_DENY, draft.GetAttachmentId())
		var deniedOther bool
		for _, r := range recs {
			if r.GetActor().GetSubject() == servicetest.OtherPatient.Subject && r.GetOutcome() == eventsv1.Outcome_OUTCOME_DENIED {
				deniedOther = true
			}
		}
		if !deniedOther {
			t.Errorf("no DENY audit record for the other patient's download attempt")
		}
		var proxyDL bool
		for _, r := range findAudit(e.auditRecords(t), eventsv1.Action_ACTION_DOWNLOAD, draft.GetAttachmentId()) {
			if r.GetActor().GetSubject() == servicetest.Proxy.Subject && r.GetActor().GetOnBehalfOf() == "p-1001" {
				proxyDL = true
			}
		}
		if !proxyDL {
			t.Errorf("the proxy's download is not audited on behalf of p-1001")
		}
	})

	t.Run("positive answers cached, denials not", func(t *testing.T) {
		e.access.Purge()
		before := e.stub.calls.Load()
		ctx := e.as(t, servicetest.Patient)
		for range 3 {
			if _, _, err := download(ctx, e.api, draft.GetAttachmentId(), 0, 0); err != nil {
				t.Fatal(err)
			}
		}
		if got := e.stub.calls.Load() - before; got != 1 {
			t.Errorf("CheckMessageAccess calls for 3 downloads with one token = %d, want 1", got)
		}
		before = e.stub.calls.Load()
		ctx = e.as(t, servicetest.OtherPatient)
		for range 2 {
			_, _, err := download(ctx, e.api, draft.GetAttachmentId(), 0, 0)
			wantCode(t, "DownloadAttachment(as the other patient)", err, codes.PermissionDenied)
		}
		if got := e.stub.calls.Load() - before; got != 2 {
			t.Errorf("CheckMessageAccess calls for 2 denied downloads = %d, want 2", got)
		}
		e.stub.mu.Lock()
		callers := append([]string(nil), e.stub.callers...)
		e.stub.mu.Unlock()
		for _, c := range callers {
			if c != "attachment" {
				t.Errorf("messaging saw caller %q, want service identity attachment", c)
			}
		}
	})
}

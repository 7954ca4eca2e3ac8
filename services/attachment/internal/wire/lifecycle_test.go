package wire_test

import (
	"testing"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/attachment/internal/adapters/clamd"
	"github.com/securemsg/securemsg/services/attachment/internal/wire"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
)

func TestBindAttachment(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{tune: func(c *wire.Config) { c.Attachment.MaxPerMessage = 2 }})
	thread, msg := "thr-"+uuid.NewString(), "msg-"+uuid.NewString()
	up := func() *attachmentv1.Attachment {
		return e.mustUpload(t, servicetest.Patient, &attachmentv1.UploadMetadata{FileName: "b.txt", DeclaredMediaType: "text/plain"}, []byte("bind me"))
	}
	a := up()
	if _, err := e.bind(t, a, thread, msg); err != nil {
		t.Fatalf("BindAttachment = %v", err)
	}
	if _, err := e.bind(t, a, thread, msg); err != nil {
		t.Errorf("BindAttachment(again, same message) = %v, want idempotent success", err)
	}
	_, err := e.bind(t, a, thread, "msg-other")
	wantCode(t, "BindAttachment(another message)", err, codes.FailedPrecondition)

	b := up()
	wrong := &attachmentv1.Attachment{AttachmentId: b.GetAttachmentId(), UploaderSubject: servicetest.OtherPatient.Subject}
	_, err = e.bind(t, wrong, thread, msg)
	wantCode(t, "BindAttachment(not the uploader's)", err, codes.NotFound)
	_, err = e.bind(t, &attachmentv1.Attachment{AttachmentId: uuid.NewString(), UploaderSubject: "x"}, thread, msg)
	wantCode(t, "BindAttachment(missing)", err, codes.NotFound)

	e.stub.allow("thr-a", servicetest.Patient.Subject, "p-1001")
	forThread := e.mustUpload(t, servicetest.Patient, &attachmentv1.UploadMetadata{FileName: "c.txt", DeclaredMediaType: "text/plain", ThreadId: "thr-a"}, []byte("for a"))
	_, err = e.bind(t, forThread, thread, msg)
	wantCode(t, "BindAttachment(uploaded for another thread)", err, codes.FailedPrecondition)

	for _, svc := range []string{"notification", "audit"} {
		_, err = e.asService(t, svc).BindAttachment(t.Context(), &attachmentv1.BindAttachmentRequest{
			AttachmentId: b.GetAttachmentId(), ThreadId: thread, MessageId: msg, UploaderSubject: b.GetUploaderSubject()})
		wantCode(t, "BindAttachment(as service "+svc+")", err, codes.PermissionDenied)
	}
	_, err = e.api.BindAttachment(e.as(t, servicetest.Patient), &attachmentv1.BindAttachmentRequest{
		AttachmentId: b.GetAttachmentId(), ThreadId: thread, MessageId: msg, UploaderSubject: b.GetUploaderSubject()})
	wantCode(t, "BindAttachment(as a patient)", err, codes.PermissionDenied)

	if _, err := e.bind(t, b, thread, msg); err != nil {
		t.Fatalf("BindAttachment(second) = %v", err)
	}
	_, err = e.bind(t, up(), thread, msg)
	wantCode(t, "BindAttachment(over the per-message limit)", err, codes.ResourceExhausted)

	_, err = e.api.DeleteAttachment(e.as(t, servicetest.Patient), &attachmentv1.DeleteAttachmentRequest{AttachmentId: a.GetAttachmentId()})
	wantCode(t, "DeleteAttachment(bound)", err, codes.FailedPrecondition)
	// Messaging reads metadata without a person.
	got, err := e.asService(t, "messaging").GetAttachment(t.Context(), &attachmentv1.GetAttachmentRequest{AttachmentId: a.GetAttachmentId()})
	if err != nil || got.GetAttachment().GetMessageId() != msg {
		t.Errorf("GetAttachment(as messaging) = %v, %v", got, err)
	}
}

func TestDeleteAttachment(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	a := e.mustUpload(t, servicetest.Patient, &attachmentv1.UploadMetadata{FileName: "del.txt", DeclaredMediaType: "text/plain"}, []byte("delete me"))
	_, err := e.api.DeleteAttachment(e.as(t, servicetest.OtherPatient), &attachmentv1.DeleteAttachmentRequest{AttachmentId: a.GetAttachmentId()})
	wantCode(t, "DeleteAttachment(someone else's)", err, codes.NotFound)
	for i := range 2 {
		if _, err := e.api.DeleteAttachment(e.as(t, servicetest.Patient), &attachmentv1.DeleteAttachmentRequest{AttachmentId: a.GetAttachmentId()}); err != nil {
			t.Fatalf("DeleteAttachment(#%d) = %v", i+1, err)
		}
	}
	if objs := e.objects(t); len(objs) != 0 {
		t.Errorf("objects after delete = %d, want 0", len(objs))
	}
	var wrapped *string
	if err := e.h.Proc.Pool.QueryRow(t.Context(), `SELECT wrapped_dek FROM attachments WHERE id = $1::uuid`, a.GetAttachmentId()).Scan(&wrapped); err != nil || wrapped != nil {
		t.Errorf("wrapped key after delete = %v, %v, want NULL (crypto-shredded)", wrapped, err)
	}
	_, _, err = download(e.as(t, servicetest.Patient), e.api, a.GetAttachmentId(), 0, 0)
	wantCode(t, "DownloadAttachment(deleted)", err, codes.NotFound)
	if len(findAudit(e.auditRecords(t), eventsv1.Action_ACTION_DELETE, a.GetAttachmentId())) != 1 {
		t.Errorf("DELETE audit records: want 1")
	}
}

func TestPurgeAttachments(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	threads := []string{"thr-" + uuid.NewString(), "thr-" + uuid.NewString()}
	keep := "thr-" + uuid.NewString()
	var total int64
	for i, th := range append(threads, keep) {
		a := e.mustUpload(t, servicetest.Patient, &attachmentv1.UploadMetadata{FileName: "p.txt", DeclaredMediaType: "text/plain"}, textFile("purge", 1000*(i+1)))
		if _, err := e.bind(t, a, th, "msg-"+uuid.NewString()); err != nil {
			t.Fatal(err)
		}
		if th != keep {
			total += a.GetSizeBytes()
		}
	}
	msgAPI := e.asService(t, "messaging")
	req := &attachmentv1.PurgeAttachmentsRequest{ThreadIds: threads, ReasonCode: "retention", DryRun: true}
	resp, err := msgAPI.PurgeAttachments(t.Context(), req)
	if err != nil || resp.GetAttachmentsPurged() != 2 || resp.GetBytesPurged() != total {
		t.Fatalf("PurgeAttachments(dry run) = %v, %v, want 2 attachments, %d bytes", resp, err, total)
	}
	if len(e.objects(t)) != 3 {
		t.Fatalf("a dry run removed objects")
	}
	req.DryRun = false
	resp, err = msgAPI.PurgeAttachments(t.Context(), req)
	if err != nil || resp.GetAttachmentsPurged() != 2 || resp.GetBytesPurged() != total {
		t.Fatalf("PurgeAttachments = %v, %v, want 2 attachments, %d bytes", resp, err, total)
	}
	if n := len(e.objects(t)); n != 1 {
		t.Errorf("objects after purge = %d, want 1 (the kept thread's)", n)
	}
	resp, err = msgAPI.PurgeAttachments(t.Context(), req)
	if err != nil || resp.GetAttachmentsPurged() != 0 {
		t.Errorf("PurgeAttachments(again) = %v, %v, want zero counts", resp, err)
	}
	var purges int
	for _, r := range e.auditRecords(t) {
		if r.GetAction() == eventsv1.Action_ACTION_PURGE && r.GetReasonCode() == "retention" {
			purges++
		}
	}
	if purges != 2 {
		t.Errorf("PURGE audit records = %d, want 2", purges)
	}
	tests := []struct {
		name string
		ids  []string
	}{
		{name: "empty", ids: nil},
		{name: "empty id", ids: []string{""}},
		{name: "too many", ids: make([]string, 1001)},
	}
	for _, tt := range tests {
		_, err := msgAPI.PurgeAttachments(t.Context(), &attachmentv1.PurgeAttachmentsRequest{ThreadIds: tt.ids})
		wantCode(t, "PurgeAttachments("+tt.name+")", err, codes.InvalidArgument)
	}
	_, err = e.api.PurgeAttachments(e.as(t, servicetest.Admin), &attachmentv1.PurgeAttachmentsRequest{ThreadIds: threads})
	wantCode(t, "PurgeAttachments(as admin)", err, codes.PermissionDenied)
}

func TestCleanUpDrafts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	draft := e.mustUpload(t, servicetest.Patient, &attachmentv1.UploadMetadata{FileName: "old.txt", DeclaredMediaType: "text/plain"}, []byte("old draft"))
	bound := e.mustUpload(t, servicetest.Patient, &attachmentv1.UploadMetadata{FileName: "kept.txt", DeclaredMediaType: "text/plain"}, []byte("bound file"))
	if _, err := e.bind(t, bound, "thr-keep", "msg-keep"); err != nil {
		t.Fatal(err)
	}
	// An upload whose process died: a row stuck Uploading.
	if _, err := e.h.Proc.Pool.Exec(t.Context(), `INSERT INTO attachments (id, uploader_subject, state, object_name, declared_media_type, size_bytes, create_time)
		VALUES ($1::uuid, 'user-patient', 'uploading', 'obj/crashed', 'text/plain', 10, now() - interval '2 hours')`, uuid.NewString()); err != nil {
		t.Fatal(err)
	}
	if n, err := e.svc.CleanUp(t.Context(), 100); err != nil || n != 1 {
		t.Fatalf("CleanUp(fresh draft) = %d, %v, want 1 (the crashed upload only)", n, err)
	}
	if _, err := e.h.Proc.Pool.Exec(t.Context(), `UPDATE attachments SET create_time = now() - interval '25 hours'`); err != nil {
		t.Fatal(err)
	}
	if n, err := e.svc.CleanUp(t.Context(), 100); err != nil || n != 1 {
		t.Fatalf("CleanUp(expired draft) = %d, %v, want 1", n, err)
	}
	e.wantState(t, "expired draft (removed)", draft.GetAttachmentId(), "")
	e.wantState(t, "bound attachment (kept)", bound.GetAttachmentId(), "clean")
	if n := len(e.objects(t)); n != 1 {
		t.Errorf("objects after clean-up = %d, want 1", n)
	}
	recs := findAudit(e.auditRecords(t), eventsv1.Action_ACTION_DELETE, draft.GetAttachmentId())
	if len(recs) != 1 || recs[0].GetReasonCode() != "draft_expired" {
		t.Errorf("audit of the expired draft = %v, want one DELETE draft_expired", recs)
	}
}

func TestPendingWhileScannerDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.scanner.cur.Store(clamd.New(deadAddr(t)))
	clean := e.mustUpload(t, servicetest.Patient, &attachmentv1.UploadMetadata{FileName: "p.txt", DeclaredMediaType: "text/plain"}, textFile("pending", 200<<10))
	infected := e.mustUpload(t, servicetest.Patient, &attachmentv1.UploadMetadata{FileName: "e.txt", DeclaredMediaType: "text/plain"}, eicar())
	for _, a := range []*attachmentv1.Attachment{clean, infected} {
		if a.GetScanState() != attachmentv1.ScanState_SCAN_STATE_PENDING {
			t.Fatalf("UploadAttachment(scanner down).ScanState = %v, want PENDING", a.GetScanState())
		}
		_, _, err := download(e.as(t, servicetest.Patient), e.api, a.GetAttachmentId(), 0, 0)
		wantCode(t, "DownloadAttachment(pending)", err, codes.FailedPrecondition)
		_, err = e.bind(t, a, "thr-p", "msg-p")
		wantCode(t, "BindAttachment(pending)", err, codes.FailedPrecondition)
	}
	if n, err := e.svc.RescanPending(t.Context(), 10); err != nil || n != 0 {
		t.Errorf("RescanPending(scanner still down) = %d, %v, want 0, nil", n, err)
	}
	e.scanner.cur.Store(clamd.New(e.clamd))
	if n, err := e.svc.RescanPending(t.Context(), 10); err != nil || n != 2 {
		t.Fatalf("RescanPending(scanner back) = %d, %v, want 2", n, err)
	}
	e.wantState(t, "clean file after re-scan", clean.GetAttachmentId(), "clean")
	e.wantState(t, "EICAR after re-scan", infected.GetAttachmentId(), "infected")
	if _, _, err := download(e.as(t, servicetest.Patient), e.api, clean.GetAttachmentId(), 0, 0); err != nil {
		t.Errorf("DownloadAttachment(after re-scan) = %v", err)
	}
	if n := len(e.objects(t)); n != 1 {
		t.Errorf("objects after re-scan = %d, want 1 (the infected one removed)", n)
	}
	var high bool
	for _, r := range findAudit(e.auditRecords(t), eventsv1.Action_ACTION_UPDATE, infected.GetAttachmentId()) {
		high = high || (r.GetSeverity() == eventsv1.Severity_SEVERITY_HIGH && r.GetReasonCode() == "malware_detected")
	}
	if !high {
		t.Errorf("no HIGH malware_detected audit record for the re-scanned EICAR")
	}
}

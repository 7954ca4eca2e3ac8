package app_test

import (
	"bytes"
	"crypto/sha256"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/attachment/internal/app"
	"github.com/securemsg/securemsg/services/attachment/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// text returns n bytes of plain text.
func text(n int) []byte {
	return bytes.Repeat([]byte("the rash is better today.\n"), n/26+1)[:n]
}

func TestNewRefusesMissingParts(t *testing.T) {
	t.Parallel()
	if _, err := app.New(app.Config{}, app.Deps{}); err == nil || !strings.Contains(err.Error(), "key name") || !strings.Contains(err.Error(), "dependencies") {
		t.Errorf("app.New(nothing) = %v, want an error naming what is missing", err)
	}
}

func TestUploadThenDownload(t *testing.T) {
	t.Parallel()
	for _, size := range []int{1, 3072, 64 << 10, 64<<10 + 1, 300 << 10} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			data := text(size)
			a := f.mustUpload(t, patient, app.UploadRequest{FileName: "../secret/note.txt", ClientRequestID: uuid.NewString()}, data)
			sum := sha256.Sum256(data)
			if a.State != domain.StateClean || a.SizeBytes != int64(size) || !bytes.Equal(a.SHA256, sum[:]) ||
				a.MediaType != "text/plain" || a.FileName != "note.txt" || a.PatientID != "p-1001" {
				t.Fatalf("Upload() = %+v, want a clean text/plain of %d bytes named note.txt", a, size)
			}
			got, err := f.download(t, patient, a.ID, 0, 0)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("download = %d bytes, %v; want the %d bytes uploaded", len(got), err, size)
			}
			if stored := f.objects.get(a.ObjectName); bytes.Contains(stored, []byte("rash")) {
				t.Errorf("the stored object holds plaintext")
			}
			if recs := f.findAudit(t, eventsv1.Action_ACTION_CREATE, a.ID); len(recs) != 1 ||
				recs[0].GetPurposeOfUse() != commonv1.PurposeOfUse_PURPOSE_OF_USE_PATIENT_REQUEST || recs[0].GetClientApp() != "portal-web" {
				t.Errorf("CREATE audit records = %v, want one by the patient for a patient request", recs)
			}
			if recs := f.findAudit(t, eventsv1.Action_ACTION_DOWNLOAD, a.ID); len(recs) != 1 || recs[0].GetPatientId() != "p-1001" {
				t.Errorf("DOWNLOAD audit records = %v, want one of patient p-1001", recs)
			}
			if evs := f.scanned(t); len(evs) != 1 || evs[0].GetVerdict() != eventsv1.ScanVerdict_SCAN_VERDICT_CLEAN ||
				evs[0].GetMeta().GetProducer() != commonv1.Component_COMPONENT_ATTACHMENT || evs[0].GetMeta().GetEventId() == "" {
				t.Errorf("AttachmentScanned events = %v, want one CLEAN with its meta", evs)
			}
			meta, err := f.svc.GetAttachment(as(t, patient), patient, a.ID)
			if err != nil || meta.FileName != "note.txt" {
				t.Errorf("GetAttachment = %+v, %v, want the file name opened", meta, err)
			}
		})
	}
}

func TestUploadRefusals(t *testing.T) {
	t.Parallel()
	png := append([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), make([]byte, 64)...)
	tests := []struct {
		name   string
		req    app.UploadRequest
		data   []byte
		kind   usererr.Kind
		reason string
	}{
		{name: "file name too long", req: app.UploadRequest{FileName: strings.Repeat("a", 256)}, data: text(10), kind: usererr.InvalidArgument, reason: "FILE_NAME_TOO_LONG"},
		{name: "type not allowed", req: app.UploadRequest{DeclaredMediaType: "application/x-msdownload"}, data: text(10), kind: usererr.InvalidArgument, reason: "MEDIA_TYPE_NOT_ALLOWED"},
		{name: "over the size limit", req: app.UploadRequest{DeclaredSize: 25<<20 + 1}, data: text(10), kind: usererr.ResourceExhausted, reason: "FILE_TOO_LARGE"},
		{name: "fewer bytes than declared", req: app.UploadRequest{DeclaredSize: 11}, data: text(10), kind: usererr.InvalidArgument, reason: "SIZE_MISMATCH"},
		{name: "more bytes than declared", req: app.UploadRequest{DeclaredSize: 5000}, data: text(5001), kind: usererr.InvalidArgument, reason: "SIZE_MISMATCH"},
		{name: "content differs from the declared type", req: app.UploadRequest{DeclaredMediaType: "application/pdf"}, data: png, kind: usererr.InvalidArgument, reason: "CONTENT_TYPE_MISMATCH"},
		{name: "client request id not a uuid", req: app.UploadRequest{ClientRequestID: "abc"}, data: text(10), kind: usererr.InvalidArgument, reason: "INVALID_CLIENT_REQUEST_ID"},
		{name: "malformed thread id", req: app.UploadRequest{ThreadID: "thr one"}, data: text(10), kind: usererr.InvalidArgument, reason: "MALFORMED_ID"},
		{name: "unknown thread", req: app.UploadRequest{ThreadID: "thr-missing"}, data: text(10), kind: usererr.NotFound, reason: "THREAD_NOT_FOUND"},
		{name: "thread without write access", req: app.UploadRequest{ThreadID: "thr-other"}, data: text(10), kind: usererr.PermissionDenied, reason: "THREAD_ACCESS_DENIED"},
		{name: "confidential thread is hidden", req: app.UploadRequest{ThreadID: "thr-teen"}, data: text(10), kind: usererr.NotFound, reason: "THREAD_NOT_FOUND"},
		{name: "malware", data: eicar(), kind: usererr.InvalidArgument, reason: "MALWARE_DETECTED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			f.access.set("thr-other", otherPatient.Subject, domain.Access{Allowed: true})
			f.access.set("thr-teen", patient.Subject, domain.Access{Allowed: false, ReasonCode: "adolescent_confidential"})
			_, err := f.upload(t, patient, tt.req, tt.data)
			wantRefusal(t, "Upload("+tt.name+")", err, tt.kind, tt.reason)
			if n := f.objects.count(); n != 0 {
				t.Errorf("objects left by a refused upload = %d, want 0", n)
			}
			visible, _ := f.repo.StaleAttachments(t.Context(), f.clock.Now().Add(1e12), f.clock.Now().Add(1e12), 100)
			for _, a := range visible {
				if a.State != domain.StateInfected || a.WrappedDEK != "" {
					t.Errorf("a refused upload left %+v, want nothing or an infected row without its key", a)
				}
			}
		})
	}
}

func TestUploadAuditsRefusalsAndMalware(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	f.access.set("thr-other", otherPatient.Subject, domain.Access{Allowed: true})
	if _, err := f.upload(t, patient, app.UploadRequest{ThreadID: "thr-other"}, text(10)); err == nil {
		t.Fatal("Upload(to a thread without access) succeeded")
	}
	var denied bool
	for _, r := range f.auditRecords(t) {
		denied = denied || (r.GetAction() == eventsv1.Action_ACTION_DENY && r.GetOutcome() == eventsv1.Outcome_OUTCOME_DENIED &&
			r.GetReasonCode() == "no_grant" && r.GetActor().GetSubject() == patient.Subject)
	}
	if !denied {
		t.Errorf("no DENY record for the refused thread upload")
	}
	if _, err := f.upload(t, patient, app.UploadRequest{}, eicar()); err == nil {
		t.Fatal("Upload(EICAR) succeeded")
	}
	var infected *eventsv1.AttachmentScanned
	for _, ev := range f.scanned(t) {
		if ev.GetVerdict() == eventsv1.ScanVerdict_SCAN_VERDICT_INFECTED {
			infected = ev
		}
	}
	if infected == nil || infected.GetSignatureName() != "Eicar-Signature" {
		t.Fatalf("AttachmentScanned events = %v, want an INFECTED one with the signature", f.scanned(t))
	}
	recs := f.findAudit(t, eventsv1.Action_ACTION_CREATE, infected.GetAttachmentId())
	if len(recs) != 1 || recs[0].GetOutcome() != eventsv1.Outcome_OUTCOME_DENIED || recs[0].GetReasonCode() != "malware_detected" ||
		recs[0].GetSeverity() != eventsv1.Severity_SEVERITY_HIGH {
		t.Errorf("audit of the infected upload = %v, want one HIGH malware_detected denial", recs)
	}
}

func TestUploadQuotaAndRetries(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *app.Config) { c.Limits.QuotaBytes = 150 << 10 })
	data := text(100 << 10)
	crid := uuid.NewString()
	first := f.mustUpload(t, patient, app.UploadRequest{ClientRequestID: crid}, data)
	again := f.mustUpload(t, patient, app.UploadRequest{ClientRequestID: crid}, data)
	if again.ID != first.ID {
		t.Errorf("retried upload id = %s, want the first's %s", again.ID, first.ID)
	}
	_, err := f.upload(t, patient, app.UploadRequest{ClientRequestID: crid}, data[:10])
	wantRefusal(t, "Upload(request id reused for another file)", err, usererr.AlreadyExists, "CLIENT_REQUEST_ID_REUSED")
	_, err = f.upload(t, patient, app.UploadRequest{}, data)
	wantRefusal(t, "Upload(over quota)", err, usererr.ResourceExhausted, "QUOTA_EXCEEDED")
	if n := f.objects.count(); n != 1 {
		t.Errorf("objects after an upload over quota = %d, want 1", n)
	}
	f.mustUpload(t, otherPatient, app.UploadRequest{}, data)
	if err := f.svc.DeleteAttachment(as(t, patient), patient, first.ID); err != nil {
		t.Fatal(err)
	}
	f.mustUpload(t, patient, app.UploadRequest{}, data) // deleting freed the quota
}

func TestScannerDownThenRescan(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	f.scanner.down.Store(true)
	clean := f.mustUpload(t, patient, app.UploadRequest{}, text(1000))
	infected := f.mustUpload(t, patient, app.UploadRequest{}, eicar())
	for _, a := range []*domain.Attachment{clean, infected} {
		if a.State != domain.StatePending {
			t.Fatalf("Upload(scanner down).State = %s, want pending", a.State)
		}
		_, err := f.download(t, patient, a.ID, 0, 0)
		wantRefusal(t, "download(pending)", err, usererr.FailedPrecondition, "ATTACHMENT_NOT_CLEAN")
		_, err = f.bind(t, a, "thr-p", "msg-p")
		wantRefusal(t, "bind(pending)", err, usererr.FailedPrecondition, "SCAN_PENDING")
	}
	if n, err := f.svc.RescanPending(t.Context(), 10); err != nil || n != 0 {
		t.Errorf("RescanPending(scanner still down) = %d, %v, want 0, nil", n, err)
	}
	f.scanner.down.Store(false)
	if n, err := f.svc.RescanPending(t.Context(), 10); err != nil || n != 2 {
		t.Fatalf("RescanPending(scanner back) = %d, %v, want 2", n, err)
	}
	if got, err := f.download(t, patient, clean.ID, 0, 0); err != nil || len(got) != 1000 {
		t.Errorf("download(after the re-scan) = %d bytes, %v", len(got), err)
	}
	_, err := f.download(t, patient, infected.ID, 0, 0)
	wantRefusal(t, "download(infected)", err, usererr.FailedPrecondition, "ATTACHMENT_NOT_CLEAN")
	if n := f.objects.count(); n != 1 {
		t.Errorf("objects after the re-scan = %d, want 1 (the infected one removed)", n)
	}
	recs := f.findAudit(t, eventsv1.Action_ACTION_UPDATE, infected.ID)
	if len(recs) != 1 || recs[0].GetReasonCode() != "malware_detected" || recs[0].GetSeverity() != eventsv1.Severity_SEVERITY_HIGH ||
		recs[0].GetActor().GetSubject() != "service:attachment" || recs[0].GetOperation() != "attachment.rescan_pending" {
		t.Errorf("audit of the re-scanned EICAR = %v, want one HIGH malware_detected by the job", recs)
	}
}

func TestReadAccess(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	teen := &auth.Principal{Kind: auth.KindUser, Subject: "user-teen", Roles: []auth.Role{auth.RolePatient}, PatientID: "p-3003", ClientID: "portal-web"}
	draft := f.mustUpload(t, patient, app.UploadRequest{}, text(100))
	bound := f.mustUpload(t, patient, app.UploadRequest{}, text(100))
	if _, err := f.bind(t, bound, "thr-1", "msg-1"); err != nil {
		t.Fatal(err)
	}
	f.access.set("msg-1", patient.Subject, domain.Access{Allowed: true, PatientID: "p-1001", PoolID: "pool-a"})
	f.access.set("msg-1", proxy.Subject, domain.Access{Allowed: true, ReasonCode: "proxy_grant", PatientID: "p-1001", PoolID: "pool-a"})
	f.access.set("msg-1", teen.Subject, domain.Access{Allowed: false, ReasonCode: "adolescent_confidential"})
	tests := []struct {
		name   string
		p      *auth.Principal
		a      *domain.Attachment
		kind   usererr.Kind // 0: allowed
		reason string
		denial bool // a DENY record names the attachment
	}{
		{name: "own draft", p: patient, a: draft},
		{name: "someone else's draft", p: otherPatient, a: draft, kind: usererr.NotFound, reason: "ATTACHMENT_NOT_FOUND", denial: true},
		{name: "bound, messaging allows", p: patient, a: bound},
		{name: "bound, proxy allowed", p: proxy, a: bound},
		{name: "bound, messaging denies", p: otherPatient, a: bound, kind: usererr.PermissionDenied, reason: "MESSAGE_ACCESS_DENIED", denial: true},
		{name: "bound, confidential", p: teen, a: bound, kind: usererr.NotFound, reason: "ATTACHMENT_NOT_FOUND", denial: true},
		{name: "service", p: notification, a: bound, kind: usererr.PermissionDenied, reason: "SERVICE_NOT_ALLOWED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			deniesBefore := len(f.findAudit(t, eventsv1.Action_ACTION_DENY, tt.a.ID))
			got, err := f.download(t, tt.p, tt.a.ID, 0, 0)
			if tt.kind == 0 {
				if err != nil || len(got) != 100 {
					t.Fatalf("download(as %s) = %d bytes, %v, want the file", tt.p.Subject, len(got), err)
				}
			} else {
				wantRefusal(t, "download(as "+tt.p.Subject+")", err, tt.kind, tt.reason)
			}
			if denied := len(f.findAudit(t, eventsv1.Action_ACTION_DENY, tt.a.ID)) > deniesBefore; denied != tt.denial {
				t.Errorf("download(as %s) recorded a denial: %v, want %v", tt.p.Subject, denied, tt.denial)
			}
		})
	}
	var onBehalf bool
	for _, r := range f.findAudit(t, eventsv1.Action_ACTION_DOWNLOAD, bound.ID) {
		onBehalf = onBehalf || (r.GetActor().GetSubject() == proxy.Subject && r.GetActor().GetOnBehalfOf() == "p-1001")
	}
	if !onBehalf {
		t.Errorf("the proxy's download is not recorded on behalf of p-1001")
	}
	// Messaging reads metadata without a person, and that read is not a PHI read to audit.
	if got, err := f.svc.GetAttachment(as(t, messaging), messaging, bound.ID); err != nil || got.MessageID != "msg-1" {
		t.Errorf("GetAttachment(as messaging) = %+v, %v", got, err)
	}
	_, err := f.download(t, patient, uuid.NewString(), 0, 0)
	wantRefusal(t, "download(missing)", err, usererr.NotFound, "ATTACHMENT_NOT_FOUND")
	_, err = f.download(t, patient, "not-a-uuid", 0, 0)
	wantRefusal(t, "download(malformed id)", err, usererr.NotFound, "ATTACHMENT_NOT_FOUND")
}

func TestDownloadRanges(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	size := int64(3*65536 + 5)
	data := text(int(size))
	a := f.mustUpload(t, patient, app.UploadRequest{}, data)
	tests := []struct {
		name     string
		off, n   int64
		from, to int64
		kind     usererr.Kind
	}{
		{name: "whole", from: 0, to: size},
		{name: "across a segment boundary", off: 65535, n: 2, from: 65535, to: 65537},
		{name: "to the end", off: 100000, from: 100000, to: size},
		{name: "past the end is cut", off: size - 10, n: 100, from: size - 10, to: size},
		{name: "offset at the end", off: size, n: 1, kind: usererr.OutOfRange},
		{name: "negative offset", off: -1, n: 1, kind: usererr.InvalidArgument},
		{name: "negative length", n: -1, kind: usererr.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.download(t, patient, a.ID, tt.off, tt.n)
			if tt.kind != 0 {
				wantRefusal(t, "download("+tt.name+")", err, tt.kind, "")
				return
			}
			if err != nil || !bytes.Equal(got, data[tt.from:tt.to]) {
				t.Errorf("download(%d, %d) = %d bytes, %v, want bytes [%d, %d)", tt.off, tt.n, len(got), err, tt.from, tt.to)
			}
		})
	}
	if n := f.countAudit(t, eventsv1.Action_ACTION_DOWNLOAD, "range"); n != 3 {
		t.Errorf("DOWNLOAD records with reason range = %d, want 3", n)
	}
}

func TestDownloadFailsClosedAndTampering(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	data := text(200 << 10)
	a := f.mustUpload(t, patient, app.UploadRequest{}, data)
	f.audit.refuse.Store(true)
	_, err := f.svc.OpenDownload(as(t, patient), patient, a.ID, 0, 0)
	wantRefusal(t, "OpenDownload(audit outbox refusing)", err, usererr.Unavailable, "ACTION_NOT_RECORDED")
	_, err = f.svc.GetAttachment(as(t, patient), patient, a.ID)
	wantRefusal(t, "GetAttachment(audit outbox refusing)", err, usererr.Unavailable, "ACTION_NOT_RECORDED")
	f.audit.refuse.Store(false)

	orig := f.objects.get(a.ObjectName)
	flipped := bytes.Clone(orig)
	flipped[len(flipped)/2] ^= 1
	f.objects.set(a.ObjectName, flipped)
	got, err := f.download(t, patient, a.ID, 0, 0)
	wantRefusal(t, "download(tampered)", err, usererr.DataLoss, "")
	if !bytes.Equal(got, data[:len(got)]) {
		t.Errorf("download(tampered) released bytes that are not the plaintext")
	}
	f.objects.set(a.ObjectName, orig[:len(orig)-1])
	_, err = f.download(t, patient, a.ID, 0, 0)
	wantRefusal(t, "download(truncated)", err, usererr.DataLoss, "STORED_ATTACHMENT_WRONG_SIZE")
	f.objects.down.Store(true)
	_, err = f.download(t, patient, a.ID, 0, 0)
	wantRefusal(t, "download(store down)", err, usererr.Unavailable, "OBJECT_STORE_UNAVAILABLE")
}

func TestBindAttachment(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *app.Config) { c.Limits.MaxPerMessage = 2 })
	a := f.mustUpload(t, patient, app.UploadRequest{}, text(10))
	if got, err := f.bind(t, a, "thr-1", "msg-1"); err != nil || got.MessageID != "msg-1" || got.BindTime.IsZero() {
		t.Fatalf("bind = %+v, %v, want bound to msg-1", got, err)
	}
	if _, err := f.bind(t, a, "thr-1", "msg-1"); err != nil {
		t.Errorf("bind(again, same message) = %v, want idempotent success", err)
	}
	if recs := f.findAudit(t, eventsv1.Action_ACTION_UPDATE, a.ID); len(recs) != 1 || recs[0].GetReasonCode() != "bound_to_message" {
		t.Errorf("UPDATE records of the binding = %v, want one bound_to_message", recs)
	}
	f.access.set("thr-a", patient.Subject, domain.Access{Allowed: true, PatientID: "p-1001"})
	forThread := f.mustUpload(t, patient, app.UploadRequest{ThreadID: "thr-a"}, text(10))
	second := f.mustUpload(t, patient, app.UploadRequest{}, text(10))
	tests := []struct {
		name   string
		req    app.BindRequest
		p      *domain.Attachment
		kind   usererr.Kind
		reason string
	}{
		{name: "another message", req: app.BindRequest{AttachmentID: a.ID, ThreadID: "thr-1", MessageID: "msg-2", UploaderSubject: patient.Subject}, kind: usererr.FailedPrecondition, reason: "ATTACHMENT_BOUND_ELSEWHERE"},
		{name: "not the uploader's", req: app.BindRequest{AttachmentID: second.ID, ThreadID: "thr-1", MessageID: "msg-1", UploaderSubject: otherPatient.Subject}, kind: usererr.NotFound, reason: "ATTACHMENT_NOT_FOUND"},
		{name: "missing", req: app.BindRequest{AttachmentID: uuid.NewString(), ThreadID: "thr-1", MessageID: "msg-1", UploaderSubject: "x"}, kind: usererr.NotFound, reason: "ATTACHMENT_NOT_FOUND"},
		{name: "uploaded for another thread", req: app.BindRequest{AttachmentID: forThread.ID, ThreadID: "thr-1", MessageID: "msg-1", UploaderSubject: patient.Subject}, kind: usererr.FailedPrecondition, reason: "ATTACHMENT_FOR_ANOTHER_THREAD"},
		{name: "message id missing", req: app.BindRequest{AttachmentID: second.ID, ThreadID: "thr-1", UploaderSubject: patient.Subject}, kind: usererr.InvalidArgument, reason: "FIELD_REQUIRED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.svc.BindAttachment(as(t, messaging), messaging, tt.req)
			wantRefusal(t, "BindAttachment("+tt.name+")", err, tt.kind, tt.reason)
		})
	}
	for _, p := range []*auth.Principal{notification, patient} {
		_, err := f.svc.BindAttachment(as(t, p), p, app.BindRequest{AttachmentID: second.ID, ThreadID: "thr-1", MessageID: "msg-1", UploaderSubject: patient.Subject})
		wantRefusal(t, "BindAttachment(as "+p.Subject+")", err, usererr.PermissionDenied, "MESSAGING_ONLY")
	}
	if _, err := f.bind(t, second, "thr-1", "msg-1"); err != nil {
		t.Fatalf("bind(second) = %v", err)
	}
	_, err := f.bind(t, f.mustUpload(t, patient, app.UploadRequest{}, text(10)), "thr-1", "msg-1")
	wantRefusal(t, "bind(over the per-message limit)", err, usererr.ResourceExhausted, "TOO_MANY_ATTACHMENTS")
	err = f.svc.DeleteAttachment(as(t, patient), patient, a.ID)
	wantRefusal(t, "DeleteAttachment(bound)", err, usererr.FailedPrecondition, "ATTACHMENT_BOUND")
}

func TestDeleteAttachment(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	a := f.mustUpload(t, patient, app.UploadRequest{}, text(10))
	err := f.svc.DeleteAttachment(as(t, otherPatient), otherPatient, a.ID)
	wantRefusal(t, "DeleteAttachment(someone else's)", err, usererr.NotFound, "ATTACHMENT_NOT_FOUND")
	if len(f.findAudit(t, eventsv1.Action_ACTION_DENY, a.ID)) != 1 {
		t.Errorf("no DENY record for deleting someone else's draft")
	}
	for i := range 2 {
		if err := f.svc.DeleteAttachment(as(t, patient), patient, a.ID); err != nil {
			t.Fatalf("DeleteAttachment(#%d) = %v", i+1, err)
		}
	}
	got, err := f.repo.Attachment(t.Context(), a.ID)
	if err != nil || got.State != domain.StateDeleted || got.WrappedDEK != "" || got.FileNameSealed != nil || got.DeleteTime.IsZero() {
		t.Errorf("row after delete = %+v, %v, want a shredded tombstone", got, err)
	}
	if n := f.objects.count(); n != 0 {
		t.Errorf("objects after delete = %d, want 0", n)
	}
	if len(f.findAudit(t, eventsv1.Action_ACTION_DELETE, a.ID)) != 1 {
		t.Errorf("DELETE records: want exactly 1")
	}
	_, err = f.download(t, patient, a.ID, 0, 0)
	wantRefusal(t, "download(deleted)", err, usererr.NotFound, "ATTACHMENT_NOT_FOUND")
}

func TestPurgeAttachments(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	threads := []string{"thr-1", "thr-2"}
	var total int64
	for i, th := range []string{"thr-1", "thr-2", "thr-keep"} {
		a := f.mustUpload(t, patient, app.UploadRequest{}, text(1000*(i+1)))
		if _, err := f.bind(t, a, th, "msg-"+th); err != nil {
			t.Fatal(err)
		}
		if th != "thr-keep" {
			total += a.SizeBytes
		}
	}
	ctx := as(t, messaging)
	res, err := f.svc.PurgeAttachments(ctx, messaging, threads, "retention", true)
	if err != nil || res.Attachments != 2 || res.Bytes != total || f.objects.count() != 3 {
		t.Fatalf("PurgeAttachments(dry run) = %+v, %v (%d objects), want 2 attachments, %d bytes, nothing removed", res, err, f.objects.count(), total)
	}
	res, err = f.svc.PurgeAttachments(ctx, messaging, threads, "retention", false)
	if err != nil || res.Attachments != 2 || res.Bytes != total || f.objects.count() != 1 {
		t.Fatalf("PurgeAttachments = %+v, %v (%d objects), want 2 attachments, %d bytes, 1 object left", res, err, f.objects.count(), total)
	}
	if res, err := f.svc.PurgeAttachments(ctx, messaging, threads, "retention", false); err != nil || res.Attachments != 0 {
		t.Errorf("PurgeAttachments(again) = %+v, %v, want nothing", res, err)
	}
	if n := f.countAudit(t, eventsv1.Action_ACTION_PURGE, "retention"); n != 2 {
		t.Errorf("PURGE records = %d, want 2", n)
	}
	for _, ids := range [][]string{nil, {""}, make([]string, 1001)} {
		_, err := f.svc.PurgeAttachments(ctx, messaging, ids, "retention", false)
		wantRefusal(t, "PurgeAttachments(bad thread ids)", err, usererr.InvalidArgument, "")
	}
	_, err = f.svc.PurgeAttachments(as(t, patient), patient, threads, "retention", false)
	wantRefusal(t, "PurgeAttachments(as a patient)", err, usererr.PermissionDenied, "MESSAGING_ONLY")
}

func TestCleanUp(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	draft := f.mustUpload(t, patient, app.UploadRequest{}, text(10))
	bound := f.mustUpload(t, patient, app.UploadRequest{}, text(10))
	if _, err := f.bind(t, bound, "thr-1", "msg-1"); err != nil {
		t.Fatal(err)
	}
	if n, err := f.svc.CleanUp(t.Context(), 100); err != nil || n != 0 {
		t.Fatalf("CleanUp(fresh drafts) = %d, %v, want 0", n, err)
	}
	f.clock.Advance(25 * time.Hour)
	if n, err := f.svc.CleanUp(t.Context(), 100); err != nil || n != 1 {
		t.Fatalf("CleanUp(an expired draft) = %d, %v, want 1", n, err)
	}
	if _, err := f.repo.Attachment(t.Context(), draft.ID); err == nil {
		t.Errorf("the expired draft is still stored")
	}
	if _, err := f.repo.Attachment(t.Context(), bound.ID); err != nil {
		t.Errorf("the bound attachment was cleaned up: %v", err)
	}
	if n := f.objects.count(); n != 1 {
		t.Errorf("objects after clean-up = %d, want 1", n)
	}
	recs := f.findAudit(t, eventsv1.Action_ACTION_DELETE, draft.ID)
	if len(recs) != 1 || recs[0].GetReasonCode() != "draft_expired" || recs[0].GetOperation() != "attachment.clean_up" {
		t.Errorf("audit of the expired draft = %v, want one DELETE draft_expired by the clean-up job", recs)
	}
}

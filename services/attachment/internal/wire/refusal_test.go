package wire_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/attachment/internal/wire"
	"github.com/securemsg/securemsg/services/internal/testkit"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
)

var (
	pngHead = append([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), make([]byte, 4000)...)
	elfHead = append([]byte("\x7fELF\x02\x01\x01\x00"), make([]byte, 4000)...)
	peHead  = append([]byte("MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff"), make([]byte, 4000)...)
)

func TestUploadRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	text := textFile(marker("refused"), 100<<10)
	tests := []struct {
		name  string
		md    *attachmentv1.UploadMetadata
		data  []byte
		chunk int
		code  codes.Code
	}{
		{name: "eicar", md: &attachmentv1.UploadMetadata{FileName: "eicar.txt", DeclaredMediaType: "text/plain"}, data: eicar(), code: codes.InvalidArgument},
		{name: "png declared as pdf", md: &attachmentv1.UploadMetadata{FileName: "x.pdf", DeclaredMediaType: "application/pdf"}, data: pngHead, code: codes.InvalidArgument},
		{name: "elf executable", md: &attachmentv1.UploadMetadata{FileName: "x.pdf", DeclaredMediaType: "application/pdf"}, data: elfHead, code: codes.InvalidArgument},
		{name: "windows executable as png", md: &attachmentv1.UploadMetadata{FileName: "x.png", DeclaredMediaType: "image/png"}, data: peHead, code: codes.InvalidArgument},
		{name: "declared executable type", md: &attachmentv1.UploadMetadata{FileName: "x.exe", DeclaredMediaType: "application/x-msdownload"}, data: peHead, code: codes.InvalidArgument},
		{name: "html declared as text", md: &attachmentv1.UploadMetadata{FileName: "x.txt", DeclaredMediaType: "text/plain"}, data: []byte("<html><script>alert(1)</script></html>"), code: codes.InvalidArgument},
		{name: "over the size limit", md: &attachmentv1.UploadMetadata{FileName: "x.txt", DeclaredMediaType: "text/plain", DeclaredSizeBytes: 25<<20 + 1}, data: text, code: codes.ResourceExhausted},
		{name: "fewer bytes than declared", md: &attachmentv1.UploadMetadata{FileName: "x.txt", DeclaredMediaType: "text/plain", DeclaredSizeBytes: int64(len(text)) + 1}, data: text, code: codes.InvalidArgument},
		{name: "more bytes than declared", md: &attachmentv1.UploadMetadata{FileName: "x.txt", DeclaredMediaType: "text/plain", DeclaredSizeBytes: int64(len(text)) - 1}, data: text, code: codes.InvalidArgument},
		{name: "chunk over 1 MiB", md: &attachmentv1.UploadMetadata{FileName: "x.txt", DeclaredMediaType: "text/plain"}, data: textFile("big", 2<<20), chunk: 2 << 20, code: codes.InvalidArgument},
		{name: "missing type", md: &attachmentv1.UploadMetadata{FileName: "x.txt"}, data: text, code: codes.InvalidArgument},
		{name: "file name too long", md: &attachmentv1.UploadMetadata{FileName: string(bytes.Repeat([]byte("a"), 256)), DeclaredMediaType: "text/plain"}, data: text, code: codes.InvalidArgument},
		{name: "client request id not a uuid", md: &attachmentv1.UploadMetadata{FileName: "x.txt", DeclaredMediaType: "text/plain", ClientRequestId: "abc"}, data: text, code: codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := upload(e.as(t, servicetest.Patient), e.api, tt.md, tt.data, tt.chunk)
			wantCode(t, "UploadAttachment("+tt.name+")", err, tt.code)
		})
	}
	t.Run("nothing kept", func(t *testing.T) {
		var n int
		if err := e.h.Proc.Pool.QueryRow(t.Context(), `SELECT count(*) FROM attachments WHERE state <> 'infected'`).Scan(&n); err != nil || n != 0 {
			t.Errorf("rows left by refused uploads = %d, %v, want 0", n, err)
		}
		if objs := e.objects(t); len(objs) != 0 {
			t.Errorf("objects left by refused uploads = %d, want 0", len(objs))
		}
	})
	t.Run("infected audited and announced", func(t *testing.T) {
		var id string
		if err := e.h.Proc.Pool.QueryRow(t.Context(), `SELECT id::text FROM attachments WHERE state = 'infected' AND wrapped_dek IS NULL`).Scan(&id); err != nil {
			t.Fatalf("infected row: %v", err)
		}
		recs := findAudit(e.auditRecords(t), eventsv1.Action_ACTION_CREATE, id)
		if len(recs) != 1 || recs[0].GetSeverity() != eventsv1.Severity_SEVERITY_HIGH || recs[0].GetReasonCode() != "malware_detected" ||
			recs[0].GetOutcome() != eventsv1.Outcome_OUTCOME_DENIED {
			t.Errorf("audit of the infected upload = %v, want one HIGH malware_detected denial", recs)
		}
		var found bool
		for _, ev := range e.scannedEvents(t) {
			if ev.GetAttachmentId() == id && ev.GetVerdict() == eventsv1.ScanVerdict_SCAN_VERDICT_INFECTED && ev.GetSignatureName() != "" {
				found = true
			}
		}
		if !found {
			t.Errorf("no AttachmentScanned INFECTED event for %s", id)
		}
		_, _, err := download(e.as(t, servicetest.Patient), e.api, id, 0, 0)
		wantCode(t, "DownloadAttachment(infected)", err, codes.FailedPrecondition)
	})
}

func TestUploadStreamProtocol(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	md := &attachmentv1.UploadMetadata{FileName: "a.txt", DeclaredMediaType: "text/plain", DeclaredSizeBytes: 4}
	tests := []struct {
		name string
		msgs []*attachmentv1.UploadAttachmentRequest
	}{
		{name: "no messages"},
		{name: "chunk first", msgs: []*attachmentv1.UploadAttachmentRequest{{Payload: &attachmentv1.UploadAttachmentRequest_Chunk{Chunk: []byte("abcd")}}}},
		{name: "metadata twice", msgs: []*attachmentv1.UploadAttachmentRequest{
			{Payload: &attachmentv1.UploadAttachmentRequest_Metadata{Metadata: md}},
			{Payload: &attachmentv1.UploadAttachmentRequest_Metadata{Metadata: md}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream, err := e.api.UploadAttachment(e.as(t, servicetest.Patient))
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range tt.msgs {
				if err := stream.Send(m); err != nil {
					break
				}
			}
			_, err = stream.CloseAndRecv()
			wantCode(t, "UploadAttachment("+tt.name+")", err, codes.InvalidArgument)
		})
	}
	t.Run("client cancels", func(t *testing.T) {
		ctx, cancel := context.WithCancel(e.as(t, servicetest.Patient))
		stream, err := e.api.UploadAttachment(ctx)
		if err != nil {
			t.Fatal(err)
		}
		data := textFile("cancel", 2<<20)
		if err := stream.Send(&attachmentv1.UploadAttachmentRequest{Payload: &attachmentv1.UploadAttachmentRequest_Metadata{Metadata: &attachmentv1.UploadMetadata{
			FileName: "c.txt", DeclaredMediaType: "text/plain", DeclaredSizeBytes: int64(len(data))}}}); err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&attachmentv1.UploadAttachmentRequest{Payload: &attachmentv1.UploadAttachmentRequest_Chunk{Chunk: data[:1<<20]}}); err != nil {
			t.Fatal(err)
		}
		cancel()
		if _, err := stream.CloseAndRecv(); err == nil {
			t.Fatal("cancelled upload succeeded")
		}
		waitNoRows(t, e)
	})
}

// waitNoRows waits until no attachment row is left (a cancelled upload is cleaned up after
// the rpc returns to the client).
func waitNoRows(t *testing.T, e *env) {
	t.Helper()
	var n int
	testkit.WaitFor(t, 15*time.Second, "rows of the cancelled upload removed", func() bool {
		_ = e.h.Proc.Pool.QueryRow(t.Context(), `SELECT count(*) FROM attachments`).Scan(&n)
		return n == 0 && len(e.objects(t)) == 0
	})
}

func TestFileNameNeutralised(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	tests := []struct{ in, want string }{
		{in: "../../etc/passwd.txt", want: "passwd.txt"},
		{in: `..\..\boot.ini.txt`, want: "boot.ini.txt"},
		{in: "re\x00port\x1b[31m.txt", want: "report[31m.txt"},
		{in: "photo\u202Egnp.txt", want: "photognp.txt"},
		{in: "..", want: "file"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			a := e.mustUpload(t, servicetest.Patient, &attachmentv1.UploadMetadata{FileName: tt.in, DeclaredMediaType: "text/plain"}, []byte("plain text"))
			if a.GetFileName() != tt.want {
				t.Errorf("UploadAttachment(file name %q).FileName = %q, want %q", tt.in, a.GetFileName(), tt.want)
			}
			got, err := e.api.GetAttachment(e.as(t, servicetest.Patient), &attachmentv1.GetAttachmentRequest{AttachmentId: a.GetAttachmentId()})
			if err != nil || got.GetAttachment().GetFileName() != tt.want {
				t.Errorf("GetAttachment().FileName = %q, %v, want %q", got.GetAttachment().GetFileName(), err, tt.want)
			}
		})
	}
}

func TestQuotaAndIdempotency(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{tune: func(c *wire.Config) { c.Attachment.QuotaBytes = 150 << 10 }})
	data := textFile("quota", 100<<10)
	crid := uuid.NewString()
	md := func() *attachmentv1.UploadMetadata {
		return &attachmentv1.UploadMetadata{FileName: "q.txt", DeclaredMediaType: "text/plain", ClientRequestId: crid}
	}
	first := e.mustUpload(t, servicetest.Patient, md(), data)
	again := e.mustUpload(t, servicetest.Patient, md(), data)
	if again.GetAttachmentId() != first.GetAttachmentId() {
		t.Errorf("retried upload id = %s, want the original %s", again.GetAttachmentId(), first.GetAttachmentId())
	}
	other := md()
	other.DeclaredSizeBytes = 10
	_, err := upload(e.as(t, servicetest.Patient), e.api, other, data[:10], 0)
	wantCode(t, "UploadAttachment(reused client_request_id)", err, codes.AlreadyExists)

	_, err = upload(e.as(t, servicetest.Patient), e.api, &attachmentv1.UploadMetadata{FileName: "q2.txt", DeclaredMediaType: "text/plain"}, data, 0)
	wantCode(t, "UploadAttachment(over quota)", err, codes.ResourceExhausted)
	// The refused upload's bytes streamed while its row was being refused; none was stored.
	if objs := e.objects(t); len(objs) != 1 {
		t.Errorf("objects stored after an upload over quota = %d, want 1 (the first upload's)", len(objs))
	}
	// Another user has their own quota.
	e.mustUpload(t, servicetest.OtherPatient, &attachmentv1.UploadMetadata{FileName: "q3.txt", DeclaredMediaType: "text/plain"}, data)
	// Deleting frees the quota.
	if _, err := e.api.DeleteAttachment(e.as(t, servicetest.Patient), &attachmentv1.DeleteAttachmentRequest{AttachmentId: first.GetAttachmentId()}); err != nil {
		t.Fatalf("DeleteAttachment = %v", err)
	}
	e.mustUpload(t, servicetest.Patient, &attachmentv1.UploadMetadata{FileName: "q4.txt", DeclaredMediaType: "text/plain"}, data)
}

// TestQuotaUnderConcurrentUploads starts more uploads at once than the quota holds: exactly
// as many as fit succeed, however their row inserts interleave.
func TestQuotaUnderConcurrentUploads(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{tune: func(c *wire.Config) { c.Attachment.QuotaBytes = 250 << 10 }})
	data := textFile("quota-race", 100<<10)
	const uploads = 8
	errs := make(chan error, uploads)
	for i := range uploads {
		go func() {
			_, err := upload(e.as(t, servicetest.Patient), e.api, &attachmentv1.UploadMetadata{
				FileName: fmt.Sprintf("r%d.txt", i), DeclaredMediaType: "text/plain"}, data, 0)
			errs <- err
		}()
	}
	ok := 0
	for range uploads {
		switch err := <-errs; status.Code(err) {
		case codes.OK:
			ok++
		case codes.ResourceExhausted:
		default:
			t.Errorf("concurrent UploadAttachment = %v, want OK or RESOURCE_EXHAUSTED", err)
		}
	}
	if ok != 2 {
		t.Errorf("concurrent uploads of 100 KiB under a 250 KiB quota: %d succeeded, want 2", ok)
	}
	if objs := e.objects(t); len(objs) != ok {
		t.Errorf("objects stored = %d, want %d (one per accepted upload)", len(objs), ok)
	}
}

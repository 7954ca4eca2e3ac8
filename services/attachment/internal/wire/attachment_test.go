package wire_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
)

func TestUploadDownloadRoundTrip(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	sizes := []int{1, 3072, 64 << 10, 64<<10 + 1, 1<<20 + 17, 3 << 20}
	var marks []string
	for _, size := range sizes {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			mark := marker("content")
			nameMark := marker("name")
			marks = append(marks, mark, nameMark)
			data := textFile(mark, size)
			if size < len(mark) {
				data = []byte("x")
			}
			a := e.mustUpload(t, servicetest.Patient, &attachmentv1.UploadMetadata{
				FileName: nameMark + ".txt", DeclaredMediaType: "text/plain", ClientRequestId: uuid.NewString(),
			}, data)
			sum := sha256.Sum256(data)
			if a.GetScanState() != attachmentv1.ScanState_SCAN_STATE_CLEAN || a.GetSizeBytes() != int64(size) ||
				!bytes.Equal(a.GetSha256(), sum[:]) || a.GetMediaType() != "text/plain" || a.GetFileName() != nameMark+".txt" {
				t.Fatalf("UploadAttachment() = %+v, want clean text/plain of %d bytes named %s.txt", a, size, nameMark)
			}
			got, meta, err := download(e.as(t, servicetest.Patient), e.api, a.GetAttachmentId(), 0, 0)
			if err != nil {
				t.Fatalf("DownloadAttachment(%s) = %v", a.GetAttachmentId(), err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("DownloadAttachment(%d bytes) returned %d different bytes", size, len(got))
			}
			if meta.GetFileName() != nameMark+".txt" || !bytes.Equal(meta.GetSha256(), sum[:]) {
				t.Errorf("download metadata = %+v, want the file name and sha256", meta)
			}
			recs := e.auditRecords(t)
			if len(findAudit(recs, eventsv1.Action_ACTION_CREATE, a.GetAttachmentId())) != 1 {
				t.Errorf("audit CREATE records for %s: want 1", a.GetAttachmentId())
			}
			dl := findAudit(recs, eventsv1.Action_ACTION_DOWNLOAD, a.GetAttachmentId())
			if len(dl) != 1 || dl[0].GetSourceIp() == "" || dl[0].GetClientApp() != "portal-web" || dl[0].GetPatientId() != "p-1001" ||
				dl[0].GetActor().GetSubject() != servicetest.Patient.Subject {
				t.Errorf("audit DOWNLOAD records = %v, want one with source ip, client app portal-web, patient p-1001", dl)
			}
		})
	}
	var clean int
	for _, ev := range e.scannedEvents(t) {
		if ev.GetVerdict() == eventsv1.ScanVerdict_SCAN_VERDICT_CLEAN {
			clean++
		}
	}
	if clean != len(sizes) {
		t.Errorf("AttachmentScanned CLEAN events = %d, want %d", clean, len(sizes))
	}
	// No plaintext at rest: not in MinIO's objects (names or bytes), not in any row or event.
	objs := e.objects(t)
	if len(objs) != len(sizes) {
		t.Errorf("objects stored = %d, want %d", len(objs), len(sizes))
	}
	dump := e.dump(t)
	for _, m := range marks {
		for key, b := range objs {
			if strings.Contains(key, m) || bytes.Contains(b, []byte(m)) || bytes.Contains(b, []byte("patient note")) {
				t.Errorf("object %s holds plaintext marker", key)
			}
		}
		if strings.Contains(dump, m) {
			t.Errorf("a database row or event holds PHI marker %s", m)
		}
	}
}

func TestRangeDownloads(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	size := 3*65536 + 5
	data := make([]byte, size)
	copy(data, "%PDF-1.7\n")
	rand.Read(data[16:])
	a := e.mustUpload(t, servicetest.Patient, &attachmentv1.UploadMetadata{FileName: "scan.pdf", DeclaredMediaType: "application/pdf"}, data)
	ctx := e.as(t, servicetest.Patient)
	tests := []struct {
		name     string
		off, n   int64
		wantFrom int64
		wantTo   int64
		code     codes.Code
	}{
		{name: "whole", off: 0, n: 0, wantFrom: 0, wantTo: int64(size)},
		{name: "first byte", off: 0, n: 1, wantFrom: 0, wantTo: 1},
		{name: "across a segment boundary", off: 65535, n: 2, wantFrom: 65535, wantTo: 65537},
		{name: "exactly one segment", off: 65536, n: 65536, wantFrom: 65536, wantTo: 131072},
		{name: "middle to end", off: 100000, n: 0, wantFrom: 100000, wantTo: int64(size)},
		{name: "last byte", off: int64(size) - 1, n: 0, wantFrom: int64(size) - 1, wantTo: int64(size)},
		{name: "past the end is cut", off: int64(size) - 10, n: 100, wantFrom: int64(size) - 10, wantTo: int64(size)},
		{name: "offset at end", off: int64(size), n: 1, code: codes.OutOfRange},
		{name: "negative offset", off: -1, n: 1, code: codes.InvalidArgument},
		{name: "negative length", off: 0, n: -1, code: codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := download(ctx, e.api, a.GetAttachmentId(), tt.off, tt.n)
			if tt.code != codes.OK {
				wantCode(t, "DownloadAttachment("+tt.name+")", err, tt.code)
				return
			}
			if err != nil {
				t.Fatalf("DownloadAttachment(%d, %d) = %v", tt.off, tt.n, err)
			}
			if !bytes.Equal(got, data[tt.wantFrom:tt.wantTo]) {
				t.Errorf("DownloadAttachment(%d, %d) = %d bytes, want bytes [%d, %d)", tt.off, tt.n, len(got), tt.wantFrom, tt.wantTo)
			}
		})
	}
}

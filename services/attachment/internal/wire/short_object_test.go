package wire_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/minio/minio-go/v7"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	"github.com/securemsg/securemsg/services/attachment/internal/adapters/clamd"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
)

// An object that is empty, shorter than its stream header or cut inside a segment is damaged
// for good: the answer is DataLoss with the fixed message, never Unavailable ("object storage
// unavailable"), which the API documents as safe to retry.

// objectKey is the bucket key of attachment id's object.
func (e *env) objectKey(t *testing.T, id string) string {
	t.Helper()
	var name string
	if err := e.h.Proc.Pool.QueryRow(t.Context(), `SELECT object_name FROM attachments WHERE id = $1::uuid`, id).Scan(&name); err != nil {
		t.Fatal(err)
	}
	return e.store.Key(name)
}

// putRaw replaces the object at key with body, behind the service's back.
func (e *env) putRaw(t *testing.T, key string, body []byte) {
	t.Helper()
	if _, err := e.store.Client().PutObject(t.Context(), e.store.Bucket(), key, bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
}

// rowText is attachment id's whole row as text, to see that a failed download changed nothing.
func (e *env) rowText(t *testing.T, id string) string {
	t.Helper()
	var s string
	if err := e.h.Proc.Pool.QueryRow(t.Context(), `SELECT row_to_json(a)::text FROM attachments a WHERE id = $1::uuid`, id).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// wantFixedDataLoss checks err is DataLoss with exactly the fixed message of request reqID.
func wantFixedDataLoss(t *testing.T, what string, err error, reqID string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != codes.DataLoss {
		t.Fatalf("%s = %v, want DataLoss (Unavailable would have the client retry for ever)", what, err)
	}
	if want := fmt.Sprintf(grpcserver.DataLossMessage, reqID); st.Message() != want {
		t.Errorf("%s message = %q, want the fixed %q", what, st.Message(), want)
	}
}

func TestShortObjectsFailAsDataLoss(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	mark := marker("short")
	pdf := func(size int) []byte {
		b := make([]byte, size)
		rand.Read(b)
		copy(b, "%PDF-1.7\n"+mark+"\n")
		return b
	}
	// A file of five segments and one of a single segment, each with its original object.
	type file struct {
		id, key    string
		data, orig []byte
	}
	files := map[string]file{}
	for name, data := range map[string][]byte{"big": pdf(4*seg + 100), "small": pdf(100)} {
		a := e.mustUpload(t, servicetest.Patient, &attachmentv1.UploadMetadata{FileName: mark + ".pdf", DeclaredMediaType: "application/pdf"}, data)
		key := e.objectKey(t, a.GetAttachmentId())
		files[name] = file{id: a.GetAttachmentId(), key: key, data: data, orig: e.objects(t)[key]}
	}

	tests := []struct {
		name string
		file string
		cut  int // the damaged object is the first cut bytes of the original
	}{
		{name: "empty object", file: "big", cut: 0},
		{name: "empty object of a one-segment file", file: "small", cut: 0},
		{name: "one byte", file: "small", cut: 1},
		{name: "shorter than its header", file: "big", cut: header - 1},
		{name: "header only", file: "big", cut: header},
		{name: "truncated mid-segment", file: "big", cut: segOff(2) + 50},
		{name: "truncated inside the only segment", file: "small", cut: header + 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := files[tt.file]
			damaged := bytes.Clone(f.orig[:tt.cut])
			e.putRaw(t, f.key, damaged)
			defer e.putRaw(t, f.key, f.orig)
			before := e.rowText(t, f.id)

			reqID := uuid.NewString()
			ctx := metadata.AppendToOutgoingContext(e.as(t, servicetest.Patient), grpcserver.RequestIDHeader, reqID)
			got, _, err := download(ctx, e.api, f.id, 0, 0)
			wantFixedDataLoss(t, "DownloadAttachment("+tt.name+")", err, reqID)
			if msg := status.Convert(err).Message(); strings.Contains(msg, mark) || strings.Contains(msg, f.key) {
				t.Errorf("DownloadAttachment(%s) message %q names the file or its object", tt.name, msg)
			}
			if len(got) != 0 {
				t.Errorf("DownloadAttachment(%s) released %d bytes, want none", tt.name, len(got))
			}
			// A range inside what is left is refused too: the size no longer matches the record.
			reqID = uuid.NewString()
			ctx = metadata.AppendToOutgoingContext(e.as(t, servicetest.Patient), grpcserver.RequestIDHeader, reqID)
			_, _, err = download(ctx, e.api, f.id, 0, 10)
			wantFixedDataLoss(t, "DownloadAttachment("+tt.name+", first 10 bytes)", err, reqID)

			// The use case itself: ErrDataLoss, not ErrUnavailable.
			_, err = appDownload(t, e, f.id, 0, 0)
			if !errors.Is(err, usererr.ErrDataLoss) || errors.Is(err, usererr.ErrUnavailable) {
				t.Errorf("OpenDownload(%s) = %v, want ErrDataLoss", tt.name, err)
			}
			// Nothing else changed: the row as it was, the damaged object left for inspection.
			if after := e.rowText(t, f.id); after != before {
				t.Errorf("row after the failed download:\n%s\nwant unchanged:\n%s", after, before)
			}
			if cur := e.objects(t)[f.key]; !bytes.Equal(cur, damaged) {
				t.Errorf("object after the failed download = %d bytes, want the %d damaged ones untouched", len(cur), len(damaged))
			}
		})
	}
	for name, f := range files {
		if got, _, err := download(e.as(t, servicetest.Patient), e.api, f.id, 0, 0); err != nil || !bytes.Equal(got, f.data) {
			t.Errorf("DownloadAttachment(%s, restored) = %d bytes, %v, want the file", name, len(got), err)
		}
	}
}

// TestRescanOfEmptyObjectFails: a pending file whose object is found empty is damaged, so the
// re-scan marks it Failed once, instead of keeping it pending and retrying it on every run.
func TestRescanOfEmptyObjectFails(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.scanner.cur.Store(clamd.New(deadAddr(t)))
	a := e.mustUpload(t, servicetest.Patient, &attachmentv1.UploadMetadata{FileName: "p.txt", DeclaredMediaType: "text/plain"}, textFile(marker("rescan-empty"), 10<<10))
	if a.GetScanState() != attachmentv1.ScanState_SCAN_STATE_PENDING {
		t.Fatalf("UploadAttachment(scanner down).ScanState = %v, want PENDING", a.GetScanState())
	}
	e.putRaw(t, e.objectKey(t, a.GetAttachmentId()), nil)
	e.scanner.cur.Store(clamd.New(e.clamd))
	if n, err := e.svc.RescanPending(t.Context(), 10); err != nil || n != 1 {
		t.Errorf("RescanPending(empty object) = %d, %v, want 1 (a verdict: failed)", n, err)
	}
	e.wantState(t, "pending file with an empty object after re-scan", a.GetAttachmentId(), "failed")
	if n, err := e.svc.RescanPending(t.Context(), 10); err != nil || n != 0 {
		t.Errorf("RescanPending(again) = %d, %v, want 0: nothing left to retry", n, err)
	}
}

// TestEmptyStagedChunkFailsAsDataLoss: an upload session whose staged chunk is found empty
// cannot finish, and says so with DataLoss rather than Unavailable.
func TestEmptyStagedChunkFailsAsDataLoss(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := e.as(t, servicetest.Patient)
	data := textFile(marker("staged-empty"), 10<<10)
	created, err := e.api.CreateUploadSession(ctx, &attachmentv1.CreateUploadSessionRequest{Metadata: &attachmentv1.UploadMetadata{
		FileName: "s.txt", DeclaredMediaType: "text/plain", DeclaredSizeBytes: int64(len(data))}})
	if err != nil {
		t.Fatalf("CreateUploadSession = %v", err)
	}
	id := created.GetSession().GetUploadId()
	if _, err := e.api.AppendUploadChunk(ctx, &attachmentv1.AppendUploadChunkRequest{UploadId: id, Offset: 0, Data: data}); err != nil {
		t.Fatalf("AppendUploadChunk = %v", err)
	}
	var staged []string
	for key := range e.objects(t) {
		if strings.Contains(key, "stage/") {
			staged = append(staged, key)
		}
	}
	if len(staged) != 1 {
		t.Fatalf("staged objects = %d, want 1", len(staged))
	}
	e.putRaw(t, staged[0], nil)
	reqID := uuid.NewString()
	_, err = e.api.FinishUploadSession(metadata.AppendToOutgoingContext(ctx, grpcserver.RequestIDHeader, reqID),
		&attachmentv1.FinishUploadSessionRequest{UploadId: id})
	wantFixedDataLoss(t, "FinishUploadSession(empty staged chunk)", err, reqID)
}

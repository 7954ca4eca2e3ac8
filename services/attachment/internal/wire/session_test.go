package wire_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/attachment/internal/wire"
	"github.com/securemsg/securemsg/services/internal/testkit"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
)

// sessionUpload sends data through an upload session in chunks of chunk bytes (0: 1 MiB) and
// finishes it; it returns the attachment or the first error.
func sessionUpload(ctx context.Context, api attachmentv1.AttachmentServiceClient, md *attachmentv1.UploadMetadata, data []byte, chunk int) (*attachmentv1.Attachment, error) {
	if chunk == 0 {
		chunk = 1 << 20
	}
	if md.DeclaredSizeBytes == 0 {
		md.DeclaredSizeBytes = int64(len(data))
	}
	created, err := api.CreateUploadSession(ctx, &attachmentv1.CreateUploadSessionRequest{Metadata: md})
	if err != nil {
		return nil, err
	}
	id := created.GetSession().GetUploadId()
	for off := 0; off < len(data); off += chunk {
		end := min(off+chunk, len(data))
		if _, err := api.AppendUploadChunk(ctx, &attachmentv1.AppendUploadChunkRequest{UploadId: id, Offset: int64(off), Data: data[off:end]}); err != nil {
			return nil, err
		}
	}
	resp, err := api.FinishUploadSession(ctx, &attachmentv1.FinishUploadSessionRequest{UploadId: id})
	if err != nil {
		return nil, err
	}
	return resp.GetAttachment(), nil
}

// errorInfo returns the reason and metadata of err's google.rpc.ErrorInfo.
func errorInfo(err error) (string, map[string]string) {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason(), info.GetMetadata()
		}
	}
	return "", nil
}

// wantRefusal checks err's code and ErrorInfo reason.
func wantRefusal(t *testing.T, what string, err error, code codes.Code, reason string) {
	t.Helper()
	if got, _ := errorInfo(err); status.Code(err) != code || got != reason {
		t.Fatalf("%s = %v (reason %q), want %v %s", what, err, got, code, reason)
	}
}

// stagedObjects counts the test's objects whose key holds part (e.g. "stage/", "obj/").
func (e *env) stagedObjects(t *testing.T, part string) int {
	t.Helper()
	n := 0
	for key := range e.objects(t) {
		if strings.Contains(key, part) {
			n++
		}
	}
	return n
}

func TestUploadSessionEndToEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := e.as(t, servicetest.Patient)
	mark := marker("session")
	data := textFile(mark, 3<<20+12345)
	md := &attachmentv1.UploadMetadata{FileName: mark + ".txt", DeclaredMediaType: "text/plain", DeclaredSizeBytes: int64(len(data)), ClientRequestId: uuid.NewString()}

	created, err := e.api.CreateUploadSession(ctx, &attachmentv1.CreateUploadSessionRequest{Metadata: md})
	if err != nil {
		t.Fatalf("CreateUploadSession = %v", err)
	}
	s := created.GetSession()
	if s.GetState() != attachmentv1.UploadSessionState_UPLOAD_SESSION_STATE_OPEN || s.GetNextOffset() != 0 ||
		s.GetDeclaredSizeBytes() != int64(len(data)) || s.GetMaxChunkBytes() != 2<<20 {
		t.Fatalf("CreateUploadSession = %v, want an open session at 0", s)
	}
	id := s.GetUploadId()
	// A retried create (same client request id) is the same session.
	again, err := e.api.CreateUploadSession(ctx, &attachmentv1.CreateUploadSessionRequest{Metadata: md})
	if err != nil || again.GetSession().GetUploadId() != id {
		t.Fatalf("CreateUploadSession(retried) = %v, %v, want session %s", again, err, id)
	}
	// The session is invisible as an attachment until it is finished.
	_, err = e.api.GetAttachment(ctx, &attachmentv1.GetAttachmentRequest{AttachmentId: id})
	wantCode(t, "GetAttachment(open session)", err, codes.NotFound)

	const chunk = 1 << 20
	appendAt := func(off int) (*attachmentv1.UploadSession, error) {
		resp, err := e.api.AppendUploadChunk(ctx, &attachmentv1.AppendUploadChunkRequest{UploadId: id, Offset: int64(off), Data: data[off:min(off+chunk, len(data))]})
		return resp.GetSession(), err
	}
	if _, err := appendAt(0); err != nil {
		t.Fatalf("AppendUploadChunk(0) = %v", err)
	}
	// A duplicated chunk (a retry after a lost answer) is harmless.
	if s, err := appendAt(0); err != nil || s.GetNextOffset() != chunk {
		t.Fatalf("AppendUploadChunk(0 again) = %v, %v, want success at %d", s, err, chunk)
	}
	// A chunk at a wrong offset is refused with the expected offset.
	_, err = appendAt(2 * chunk)
	wantRefusal(t, "AppendUploadChunk(gap)", err, codes.Aborted, "UPLOAD_OFFSET_MISMATCH")
	if _, md := errorInfo(err); md["expected_offset"] != strconv.Itoa(chunk) {
		t.Errorf("AppendUploadChunk(gap) expected_offset = %q, want %d", md["expected_offset"], chunk)
	}
	// Different bytes at a received offset are not a duplicate.
	_, err = e.api.AppendUploadChunk(ctx, &attachmentv1.AppendUploadChunkRequest{UploadId: id, Offset: 0, Data: bytes.Repeat([]byte("x"), chunk)})
	wantRefusal(t, "AppendUploadChunk(other bytes at 0)", err, codes.Aborted, "UPLOAD_OFFSET_MISMATCH")
	// Finishing early says how far it got.
	_, err = e.api.FinishUploadSession(ctx, &attachmentv1.FinishUploadSessionRequest{UploadId: id})
	wantRefusal(t, "FinishUploadSession(incomplete)", err, codes.FailedPrecondition, "UPLOAD_INCOMPLETE")
	// Resuming: the session says where to go on from.
	got, err := e.api.GetUploadSession(ctx, &attachmentv1.GetUploadSessionRequest{UploadId: id})
	if err != nil || got.GetSession().GetNextOffset() != chunk {
		t.Fatalf("GetUploadSession = %v, %v, want next offset %d", got, err, chunk)
	}
	for off := chunk; off < len(data); off += chunk {
		if _, err := appendAt(off); err != nil {
			t.Fatalf("AppendUploadChunk(%d) = %v", off, err)
		}
	}
	// Someone else cannot see, finish or cancel it.
	other := e.as(t, servicetest.OtherPatient)
	_, err = e.api.FinishUploadSession(other, &attachmentv1.FinishUploadSessionRequest{UploadId: id})
	wantRefusal(t, "FinishUploadSession(as another patient)", err, codes.NotFound, "UPLOAD_NOT_FOUND")
	// Only ciphertext is staged.
	for key, b := range e.objects(t) {
		if bytes.Contains(b, []byte(mark)) {
			t.Errorf("staged object %s holds the file's plaintext", key)
		}
	}

	fin, err := e.api.FinishUploadSession(ctx, &attachmentv1.FinishUploadSessionRequest{UploadId: id})
	if err != nil {
		t.Fatalf("FinishUploadSession = %v", err)
	}
	a := fin.GetAttachment()
	sum := sha256.Sum256(data)
	if a.GetAttachmentId() != id || a.GetScanState() != attachmentv1.ScanState_SCAN_STATE_CLEAN || a.GetSizeBytes() != int64(len(data)) ||
		!bytes.Equal(a.GetSha256(), sum[:]) || a.GetMediaType() != "text/plain" || a.GetFileName() != mark+".txt" {
		t.Fatalf("FinishUploadSession = %v, want the clean attachment %s", a, id)
	}
	// Finishing again returns it again; so does the session.
	if again, err := e.api.FinishUploadSession(ctx, &attachmentv1.FinishUploadSessionRequest{UploadId: id}); err != nil || again.GetAttachment().GetAttachmentId() != id {
		t.Errorf("FinishUploadSession(again) = %v, %v, want the attachment", again, err)
	}
	if got, err := e.api.GetUploadSession(ctx, &attachmentv1.GetUploadSessionRequest{UploadId: id}); err != nil ||
		got.GetSession().GetState() != attachmentv1.UploadSessionState_UPLOAD_SESSION_STATE_FINISHED || got.GetSession().GetAttachment().GetAttachmentId() != id {
		t.Errorf("GetUploadSession(finished) = %v, %v, want FINISHED with the attachment", got, err)
	}
	_, err = appendAt(0)
	wantRefusal(t, "AppendUploadChunk(finished)", err, codes.FailedPrecondition, "UPLOAD_FINISHED")

	back, _, err := download(ctx, e.api, id, 0, 0)
	if err != nil || !bytes.Equal(back, data) {
		t.Fatalf("DownloadAttachment(session upload) = %d bytes, %v, want the %d uploaded", len(back), err, len(data))
	}
	if n := e.stagedObjects(t, "stage/"); n != 0 {
		t.Errorf("staged objects after finish = %d, want 0", n)
	}
	if recs := findAudit(e.auditRecords(t), eventsv1.Action_ACTION_CREATE, id); len(recs) != 1 || recs[0].GetActor().GetSubject() != servicetest.Patient.Subject {
		t.Errorf("audit of the session upload = %v, want one CREATE by the patient", recs)
	}
	if strings.Contains(e.dump(t), mark) {
		t.Errorf("the file's marker is in the database")
	}
}

func TestUploadSessionRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{tune: func(c *wire.Config) { c.Attachment.SessionTTL = time.Second }})
	ctx := e.as(t, servicetest.Patient)
	create := func(t *testing.T, md *attachmentv1.UploadMetadata) string {
		t.Helper()
		resp, err := e.api.CreateUploadSession(ctx, &attachmentv1.CreateUploadSessionRequest{Metadata: md})
		if err != nil {
			t.Fatalf("CreateUploadSession = %v", err)
		}
		return resp.GetSession().GetUploadId()
	}
	gone := func(t *testing.T, what, id string) {
		t.Helper()
		_, err := e.api.GetUploadSession(ctx, &attachmentv1.GetUploadSessionRequest{UploadId: id})
		wantRefusal(t, "GetUploadSession("+what+")", err, codes.NotFound, "UPLOAD_NOT_FOUND")
		e.wantState(t, what, id, "")
	}

	t.Run("eicar", func(t *testing.T) {
		_, err := sessionUpload(ctx, e.api, &attachmentv1.UploadMetadata{FileName: "eicar.txt", DeclaredMediaType: "text/plain"}, eicar(), 0)
		wantRefusal(t, "session upload(EICAR)", err, codes.InvalidArgument, "MALWARE_DETECTED")
		var id string
		if err := e.h.Proc.Pool.QueryRow(t.Context(), `SELECT id::text FROM attachments WHERE state = 'infected' AND wrapped_dek IS NULL`).Scan(&id); err != nil {
			t.Fatalf("infected row: %v", err)
		}
		// Never bindable or served: infected, its key shredded, nothing stored.
		_, _, err = download(ctx, e.api, id, 0, 0)
		wantCode(t, "DownloadAttachment(infected)", err, codes.FailedPrecondition)
		if n := e.stagedObjects(t, "stage/"); n != 0 {
			t.Errorf("staged objects after EICAR = %d, want 0", n)
		}
	})
	t.Run("type mismatch", func(t *testing.T) {
		id := create(t, &attachmentv1.UploadMetadata{FileName: "x.pdf", DeclaredMediaType: "application/pdf", DeclaredSizeBytes: int64(len(pngHead))})
		_, err := e.api.AppendUploadChunk(ctx, &attachmentv1.AppendUploadChunkRequest{UploadId: id, Data: pngHead})
		wantRefusal(t, "AppendUploadChunk(png declared as pdf)", err, codes.InvalidArgument, "CONTENT_TYPE_MISMATCH")
		gone(t, "session refused by type", id)
	})
	t.Run("one byte over the limit", func(t *testing.T) {
		_, err := e.api.CreateUploadSession(ctx, &attachmentv1.CreateUploadSessionRequest{Metadata: &attachmentv1.UploadMetadata{
			FileName: "x.txt", DeclaredMediaType: "text/plain", DeclaredSizeBytes: e.cfg.Attachment.MaxFileBytes + 1}})
		wantRefusal(t, "CreateUploadSession(limit + 1)", err, codes.ResourceExhausted, "FILE_TOO_LARGE")
		data := textFile("over", 8000)
		id := create(t, &attachmentv1.UploadMetadata{FileName: "x.txt", DeclaredMediaType: "text/plain", DeclaredSizeBytes: int64(len(data)) - 1})
		_, err = e.api.AppendUploadChunk(ctx, &attachmentv1.AppendUploadChunkRequest{UploadId: id, Data: data})
		wantRefusal(t, "AppendUploadChunk(one byte past the declared size)", err, codes.InvalidArgument, "CHUNK_BEYOND_DECLARED_SIZE")
		_, err = e.api.AppendUploadChunk(ctx, &attachmentv1.AppendUploadChunkRequest{UploadId: id, Data: textFile("big", 2<<20+1)})
		wantRefusal(t, "AppendUploadChunk(over 2 MiB)", err, codes.InvalidArgument, "CHUNK_TOO_LARGE")
		_, err = e.api.AppendUploadChunk(ctx, &attachmentv1.AppendUploadChunkRequest{UploadId: id, Data: data[:100]})
		wantRefusal(t, "AppendUploadChunk(first chunk too short to sniff)", err, codes.InvalidArgument, "FIRST_CHUNK_TOO_SHORT")
		if _, err := e.api.CancelUploadSession(ctx, &attachmentv1.CancelUploadSessionRequest{UploadId: id}); err != nil {
			t.Fatalf("CancelUploadSession = %v", err)
		}
		gone(t, "cancelled session", id)
		_, err = e.api.CancelUploadSession(ctx, &attachmentv1.CancelUploadSessionRequest{UploadId: id})
		wantRefusal(t, "CancelUploadSession(cancelled)", err, codes.NotFound, "UPLOAD_NOT_FOUND")
	})
	t.Run("traversal name", func(t *testing.T) {
		a, err := sessionUpload(ctx, e.api, &attachmentv1.UploadMetadata{FileName: "../../etc/" + marker("trav") + ".txt", DeclaredMediaType: "text/plain"}, textFile("t", 5000), 0)
		if err != nil {
			t.Fatalf("session upload(traversal name) = %v", err)
		}
		if n := a.GetFileName(); strings.ContainsAny(n, `/\`) || !strings.HasPrefix(n, markerPrefix) {
			t.Errorf("file name = %q, want the last element only", n)
		}
	})
	t.Run("abandoned session cleaned up", func(t *testing.T) {
		data := textFile(marker("abandoned"), 3<<20)
		id := create(t, &attachmentv1.UploadMetadata{FileName: "a.txt", DeclaredMediaType: "text/plain", DeclaredSizeBytes: int64(len(data))})
		for off := 0; off < 2<<20; off += 1 << 20 {
			if _, err := e.api.AppendUploadChunk(ctx, &attachmentv1.AppendUploadChunkRequest{UploadId: id, Offset: int64(off), Data: data[off : off+1<<20]}); err != nil {
				t.Fatalf("AppendUploadChunk(%d) = %v", off, err)
			}
		}
		if n := e.stagedObjects(t, "stage/"); n != 2 {
			t.Fatalf("staged objects = %d, want 2", n)
		}
		e.wantState(t, "abandoned session before clean-up", id, "uploading")
		// The session TTL is a second here: a session that just got a chunk is kept, one left
		// alone for longer is removed, staged bytes included.
		if _, err := e.svc.CleanUp(t.Context(), 100); err != nil {
			t.Fatalf("CleanUp = %v", err)
		}
		e.wantState(t, "active session after clean-up", id, "uploading")
		testkit.WaitFor(t, 10*time.Second, "the clean-up to remove the abandoned session", func() bool {
			if _, err := e.svc.CleanUp(t.Context(), 100); err != nil {
				t.Fatalf("CleanUp = %v", err)
			}
			return e.rowState(t, id) == ""
		})
		gone(t, "abandoned session", id)
		if n := e.stagedObjects(t, "stage/"); n != 0 {
			t.Errorf("staged objects after clean-up = %d, want 0", n)
		}
		var sessions int
		if err := e.h.Proc.Pool.QueryRow(t.Context(), `SELECT count(*) FROM upload_sessions WHERE attachment_id = $1::uuid`, id).Scan(&sessions); err != nil || sessions != 0 {
			t.Errorf("session rows after clean-up = %d, %v, want 0", sessions, err)
		}
	})
	t.Run("nothing half-visible", func(t *testing.T) {
		var n int
		if err := e.h.Proc.Pool.QueryRow(t.Context(), `SELECT count(*) FROM attachments WHERE state NOT IN ('infected', 'clean')`).Scan(&n); err != nil || n != 0 {
			t.Errorf("rows left by refused sessions = %d, %v, want 0", n, err)
		}
		if n := e.stagedObjects(t, "stage/"); n != 0 {
			t.Errorf("staged objects left = %d, want 0", n)
		}
	})
}

package wire_test

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	"github.com/securemsg/securemsg/services/attachment/internal/wire"
	"github.com/securemsg/securemsg/services/internal/platform/config"
	"github.com/securemsg/securemsg/services/internal/testkit"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
)

// scratchMinIO is a MinIO server of the test's own, on a free port, so the test can stop it.
type scratchMinIO struct {
	cmd  *exec.Cmd
	addr string
}

func startMinIO(t *testing.T) *scratchMinIO {
	t.Helper()
	bins, _ := filepath.Glob(filepath.Join(testkit.LoadStack().ToolsDir, "minio@*", "minio"))
	if len(bins) == 0 {
		testkit.Unavailable(t, "minio binary (scripts/lib/tools.sh installs it)", os.ErrNotExist)
	}
	m := &scratchMinIO{addr: deadAddr(t)}
	m.cmd = exec.Command(bins[0], "server", "--quiet", "--address", m.addr, "--console-address", deadAddr(t), t.TempDir())
	m.cmd.Env = append(os.Environ(), "MINIO_ROOT_USER=scratch-user", "MINIO_ROOT_PASSWORD=scratch-secret", "MINIO_UPDATE=off")
	if err := m.cmd.Start(); err != nil {
		testkit.Unavailable(t, "minio", err)
	}
	t.Cleanup(m.stop)
	testkit.WaitFor(t, 30*time.Second, "scratch minio live", func() bool {
		resp, err := http.Get("http://" + m.addr + "/minio/health/live")
		if err != nil {
			return false
		}
		_ = resp.Body.Close() // only the status matters
		return resp.StatusCode == http.StatusOK
	})
	return m
}

func (m *scratchMinIO) stop() {
	if m.cmd.Process != nil && m.cmd.ProcessState == nil {
		_ = m.cmd.Process.Kill()
		_ = m.cmd.Wait()
	}
}

func (m *scratchMinIO) config() *wire.S3 {
	return &wire.S3{Endpoint: m.addr, AccessKey: config.Secret("scratch-user"), SecretKey: config.Secret("scratch-secret"), Bucket: "scratch", PartSize: 5 << 20}
}

func TestMinIOStoppedMidUpload(t *testing.T) {
	t.Parallel()
	m := startMinIO(t)
	e := newEnv(t, envOptions{s3: m.config()})
	ok := e.mustUpload(t, servicetest.Patient, &attachmentv1.UploadMetadata{FileName: "before.txt", DeclaredMediaType: "text/plain"}, []byte("stored before the outage"))

	data := textFile(marker("outage"), 20<<20)
	stream, err := e.api.UploadAttachment(e.as(t, servicetest.Patient))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&attachmentv1.UploadAttachmentRequest{Payload: &attachmentv1.UploadAttachmentRequest_Metadata{Metadata: &attachmentv1.UploadMetadata{
		FileName: "during.txt", DeclaredMediaType: "text/plain", DeclaredSizeBytes: int64(len(data))}}}); err != nil {
		t.Fatal(err)
	}
	const chunk = 256 << 10
	for off := 0; off < len(data); off += chunk {
		if off == 8<<20 {
			m.stop() // a part or more is in MinIO, a multipart upload is open
		}
		if err := stream.Send(&attachmentv1.UploadAttachmentRequest{Payload: &attachmentv1.UploadAttachmentRequest_Chunk{Chunk: data[off : off+chunk]}}); err != nil {
			break
		}
	}
	_, err = stream.CloseAndRecv()
	wantCode(t, "UploadAttachment(MinIO stopped mid-upload)", err, codes.Unavailable)

	// Nothing visible, nothing ready: only the earlier upload, and at most a row Uploading
	// (the object could not be removed while MinIO is down) that clean-up removes later.
	rows, err := e.h.Proc.Pool.Query(t.Context(), `SELECT id::text, state FROM attachments`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, state string
		if err := rows.Scan(&id, &state); err != nil {
			t.Fatal(err)
		}
		if id != ok.GetAttachmentId() && state != "uploading" {
			t.Errorf("attachment %s left in state %s after the failed upload, want none or uploading", id, state)
		}
	}
	_, _, err = download(e.as(t, servicetest.Patient), e.api, ok.GetAttachmentId(), 0, 0)
	wantCode(t, "DownloadAttachment(MinIO down)", err, codes.Unavailable)
}

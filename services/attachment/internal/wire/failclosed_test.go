package wire_test

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
)

// TestDownloadFailsClosed makes the outbox refuse the download's audit record (a trigger
// raising an exception for rows that name the attachment) and proves DownloadAttachment then
// sends no bytes; once the outbox works again the same download succeeds.
func TestDownloadFailsClosed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	data := textFile(marker("failclosed"), 4096)
	a := e.mustUpload(t, servicetest.Patient, &attachmentv1.UploadMetadata{FileName: "n.txt", DeclaredMediaType: "text/plain"}, data)
	id := a.GetAttachmentId()
	schema := e.h.Schema
	// The rpc-level record names no attachment, so only the use case's record fails.
	for _, q := range []string{
		`CREATE FUNCTION ` + schema + `.refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN RAISE EXCEPTION 'audit outbox unavailable'; END $$`,
		`CREATE TRIGGER refuse_audit BEFORE INSERT ON ` + schema + `.outbox FOR EACH ROW
			WHEN (position(convert_to('` + id + `', 'UTF8') in NEW.payload) > 0)
			EXECUTE FUNCTION ` + schema + `.refuse_audit()`,
	} {
		if _, err := e.h.Proc.Pool.Exec(t.Context(), q); err != nil {
			t.Fatalf("install failing trigger: %v", err)
		}
	}
	got, _, err := download(e.as(t, servicetest.Patient), e.api, id, 0, 0)
	if c := status.Code(err); c != codes.Unavailable && c != codes.Internal {
		t.Fatalf("DownloadAttachment with the audit outbox failing = %v, want UNAVAILABLE or INTERNAL", err)
	}
	if len(got) != 0 {
		t.Fatalf("DownloadAttachment sent %d bytes while its access could not be recorded, want 0", len(got))
	}
	if _, err := e.h.Proc.Pool.Exec(t.Context(), `DROP TRIGGER refuse_audit ON `+schema+`.outbox`); err != nil {
		t.Fatal(err)
	}
	got, _, err = download(e.as(t, servicetest.Patient), e.api, id, 0, 0)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("DownloadAttachment after recovery = %d bytes, %v; want the %d bytes uploaded", len(got), err, len(data))
	}
}

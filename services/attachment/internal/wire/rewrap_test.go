package wire_test

import (
	"testing"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	"github.com/securemsg/securemsg/services/attachment/internal/adapters/pgstore"
	"github.com/securemsg/securemsg/services/internal/platform/keys"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
)

// TestRewrapStore checks the table works as the key-rewrap job's store
// (securemsgctl keys rewrap --store pg:attachment.attachments.id.wrapped_dek): live keys are
// listed, crypto-shredded (NULL) ones skipped.
func TestRewrapStore(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	keep := e.mustUpload(t, servicetest.Patient, &attachmentv1.UploadMetadata{FileName: "k.txt", DeclaredMediaType: "text/plain"}, []byte("kept"))
	gone := e.mustUpload(t, servicetest.Patient, &attachmentv1.UploadMetadata{FileName: "g.txt", DeclaredMediaType: "text/plain"}, []byte("gone"))
	if _, err := e.api.DeleteAttachment(e.as(t, servicetest.Patient), &attachmentv1.DeleteAttachmentRequest{AttachmentId: gone.GetAttachmentId()}); err != nil {
		t.Fatal(err)
	}
	spec, err := keys.ParsePGStoreSpec("pg:" + e.h.Schema + "." + pgstore.Table + "." + pgstore.IDColumn + "." + pgstore.WrappedColumn)
	if err != nil {
		t.Fatalf("ParsePGStoreSpec = %v", err)
	}
	store, err := keys.NewPGStore(t.Context(), e.h.Proc.Pool, spec)
	if err != nil {
		t.Fatalf("NewPGStore = %v", err)
	}
	got, err := store.ScanWrapped(t.Context(), "", 100)
	if err != nil || len(got) != 1 || got[0].ID != keep.GetAttachmentId() {
		t.Fatalf("ScanWrapped = %v, %v, want only %s", got, err, keep.GetAttachmentId())
	}
}

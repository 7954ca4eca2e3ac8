package wire_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"testing"

	"github.com/minio/minio-go/v7"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/crypto"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
)

// The stream layout (platform/crypto): a 44-byte header, then segments of 64 KiB plaintext
// plus a 16-byte tag.
const (
	seg    = crypto.DefaultSegmentSize
	segCT  = seg + 16
	header = crypto.StreamHeaderSize
)

func segOff(i int) int { return header + i*segCT }

func TestTamperedObjectsFailAsDataLoss(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	size := 4*seg + 100 // five segments
	pdf := func() []byte {
		b := make([]byte, size)
		rand.Read(b)
		copy(b, "%PDF-1.7\n")
		return b
	}
	data, otherData := pdf(), pdf()
	a := e.mustUpload(t, servicetest.Patient, &attachmentv1.UploadMetadata{FileName: "a.pdf", DeclaredMediaType: "application/pdf"}, data)
	b := e.mustUpload(t, servicetest.Patient, &attachmentv1.UploadMetadata{FileName: "b.pdf", DeclaredMediaType: "application/pdf"}, otherData)
	key := func(id string) string {
		var name string
		if err := e.h.Proc.Pool.QueryRow(t.Context(), `SELECT object_name FROM attachments WHERE id = $1::uuid`, id).Scan(&name); err != nil {
			t.Fatal(err)
		}
		return e.store.Key(name)
	}
	keyA, keyB := key(a.GetAttachmentId()), key(b.GetAttachmentId())
	objs := e.objects(t)
	origA, origB := objs[keyA], objs[keyB]
	if len(origA) != int(crypto.CiphertextSize(int64(size))) {
		t.Fatalf("stored size = %d, want %d", len(origA), crypto.CiphertextSize(int64(size)))
	}
	put := func(t *testing.T, k string, body []byte) {
		t.Helper()
		if _, err := e.store.Client().PutObject(t.Context(), e.store.Bucket(), k, bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	clone := func(b []byte) []byte { return append([]byte(nil), b...) }

	tests := []struct {
		name string
		// tamper returns the object to store for a (nil: leave it) and may change rows.
		tamper func(t *testing.T) []byte
		undo   func(t *testing.T)
		// off and n is the range downloaded; maxGood is how many bytes may arrive before the
		// failure (all of them verified plaintext); wantOK means the range avoids the damage.
		off, n  int64
		maxGood int
		wantOK  bool
	}{
		{name: "flipped byte in segment 2", tamper: func(*testing.T) []byte { c := clone(origA); c[segOff(2)+10] ^= 1; return c }, maxGood: 2 * seg},
		{name: "flipped tag byte in segment 0", tamper: func(*testing.T) []byte { c := clone(origA); c[segOff(1)-1] ^= 0x80; return c }, maxGood: 0},
		{name: "flipped header byte", tamper: func(*testing.T) []byte { c := clone(origA); c[20] ^= 1; return c }, maxGood: 0},
		{name: "dropped final segment", tamper: func(*testing.T) []byte { return clone(origA[:segOff(4)]) }, maxGood: 0},
		{name: "truncated final segment", tamper: func(*testing.T) []byte { return clone(origA[:len(origA)-5]) }, maxGood: 0},
		{name: "appended bytes", tamper: func(*testing.T) []byte { return append(clone(origA), 1, 2, 3) }, maxGood: 0},
		{name: "segments 1 and 2 reordered", tamper: func(*testing.T) []byte {
			c := clone(origA)
			copy(c[segOff(1):segOff(2)], origA[segOff(2):segOff(3)])
			copy(c[segOff(2):segOff(3)], origA[segOff(1):segOff(2)])
			return c
		}, maxGood: seg},
		{name: "segment 1 spliced from another object", tamper: func(*testing.T) []byte {
			c := clone(origA)
			copy(c[segOff(1):segOff(2)], origB[segOff(1):segOff(2)])
			return c
		}, maxGood: seg},
		{name: "header grafted from another object", tamper: func(*testing.T) []byte {
			c := clone(origA)
			copy(c[:header], origB[:header])
			return c
		}, maxGood: 0},
		{name: "wrapped keys swapped between objects", tamper: func(t *testing.T) []byte {
			swapKeys(t, e, a.GetAttachmentId(), b.GetAttachmentId())
			return nil
		}, undo: func(t *testing.T) { swapKeys(t, e, a.GetAttachmentId(), b.GetAttachmentId()) }, maxGood: 0},
		{name: "range avoiding a flipped segment 3 still served", tamper: func(*testing.T) []byte { c := clone(origA); c[segOff(3)+1] ^= 1; return c },
			off: 10, n: seg, wantOK: true},
		{name: "range inside a flipped segment 3", tamper: func(*testing.T) []byte { c := clone(origA); c[segOff(3)+1] ^= 1; return c },
			off: 3*seg + 5, n: 10, maxGood: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if body := tt.tamper(t); body != nil {
				put(t, keyA, body)
				defer put(t, keyA, origA)
			}
			if tt.undo != nil {
				defer tt.undo(t)
			}
			got, _, err := download(e.as(t, servicetest.Patient), e.api, a.GetAttachmentId(), tt.off, tt.n)
			end := int64(size)
			if tt.n != 0 {
				end = tt.off + tt.n
			}
			if tt.wantOK {
				if err != nil || !bytes.Equal(got, data[tt.off:end]) {
					t.Fatalf("DownloadAttachment(%s) = %d bytes, %v, want the range intact", tt.name, len(got), err)
				}
				return
			}
			wantDataLoss(t, "DownloadAttachment("+tt.name+")", err)
			if len(got) > tt.maxGood {
				t.Errorf("DownloadAttachment(%s) released %d bytes, want at most %d (the verified segments)", tt.name, len(got), tt.maxGood)
			}
			if !bytes.Equal(got, data[tt.off:tt.off+int64(len(got))]) {
				t.Errorf("DownloadAttachment(%s) released bytes that are not the plaintext", tt.name)
			}
			// The use case itself, below the gRPC edge: ErrDataLoss, and the same bound on
			// what is released.
			got, err = appDownload(t, e, a.GetAttachmentId(), tt.off, tt.n)
			if !errors.Is(err, usererr.ErrDataLoss) {
				t.Errorf("OpenDownload+Read(%s) = %v, want ErrDataLoss", tt.name, err)
			}
			if len(got) > tt.maxGood || !bytes.Equal(got, data[tt.off:tt.off+int64(len(got))]) {
				t.Errorf("OpenDownload+Read(%s) released %d bytes, want at most %d verified ones", tt.name, len(got), tt.maxGood)
			}
		})
	}
	// Untouched again: the original downloads.
	if got, _, err := download(e.as(t, servicetest.Patient), e.api, a.GetAttachmentId(), 0, 0); err != nil || !bytes.Equal(got, data) {
		t.Errorf("DownloadAttachment(restored) = %d bytes, %v", len(got), err)
	}
}

// appDownload downloads through the use case as the patient (the uploader).
func appDownload(t *testing.T, e *env, id string, off, n int64) ([]byte, error) {
	t.Helper()
	p := &auth.Principal{Kind: auth.KindUser, Subject: servicetest.Patient.Subject, Roles: []auth.Role{auth.RolePatient}, PatientID: "p-1001", ClientID: "test"}
	d, err := e.svc.OpenDownload(t.Context(), p, id, off, n)
	if err != nil {
		return nil, err
	}
	defer func() { _ = d.Close() }() // read-only
	var got []byte
	buf := make([]byte, 32<<10)
	for {
		k, err := d.Read(buf)
		got = append(got, buf[:k]...)
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, err
		}
	}
}

// wantDataLoss checks err is DATA_LOSS, the code the proto promises for tampered objects.
func wantDataLoss(t *testing.T, what string, err error) {
	t.Helper()
	if code := status.Code(err); code != codes.DataLoss {
		t.Fatalf("%s = %v, want DataLoss", what, err)
	}
}

func swapKeys(t *testing.T, e *env, a, b string) {
	t.Helper()
	if _, err := e.h.Proc.Pool.Exec(t.Context(), `UPDATE attachments x SET wrapped_dek = y.wrapped_dek
		FROM attachments y WHERE (x.id, y.id) IN (($1::uuid, $2::uuid), ($2::uuid, $1::uuid))`, a, b); err != nil {
		t.Fatalf("swap keys: %v", err)
	}
}

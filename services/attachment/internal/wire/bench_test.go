package wire_test

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	"github.com/securemsg/securemsg/services/internal/testkit"
	"github.com/securemsg/securemsg/services/internal/testkit/benchkit"
)

// BenchmarkThroughput compares, in one run and from one client process, the service's
// encrypted, scanned upload and its decrypting download (the real binary in a subprocess,
// over gRPC+TLS, with the stack's MinIO and clamd) with plain minio-go PutObject/GetObject of
// the same bytes into the same MinIO. It reports the ciphertext expansion of stored objects.
//
//	go test ./services/attachment/internal/wire/ -run '^$' -bench Throughput -benchtime 2s
func BenchmarkThroughput(b *testing.B) {
	svc := startService(b, buildService(b, b.TempDir()), map[string]string{
		"SECUREMSG_ATTACHMENT_MAX_FILE_BYTES": strconv.Itoa(100 << 20), "SECUREMSG_ATTACHMENT_QUOTA_BYTES": strconv.Itoa(64 << 30),
	})
	st := testkit.LoadStack()
	plain, err := newStoreNoTest(wireS3(st, svc.prefix+"plain/"))
	if err != nil {
		testkit.Unavailable(b, "minio", err)
	}
	ctx := svc.ctx(b.Context())
	for _, size := range []int{64 << 10, 1 << 20, 64 << 20} {
		data := make([]byte, size)
		rand.Read(data)
		copy(data, "%PDF-1.7\n") // random bytes behind a PDF header: incompressible, allowed
		label := strconv.Itoa(size>>10) + "KiB"

		var uploads uint64
		upload := func() (cleanup func()) {
			// New bytes each time: clamd remembers the verdicts of files it has scanned, and a
			// portal never uploads the same file over and over.
			uploads++
			binary.BigEndian.PutUint64(data[len(data)-8:], uploads)
			a, err := streamUpload(ctx, svc.api, "bench.pdf", "application/pdf", bytes.NewReader(data), int64(size))
			if err != nil {
				b.Fatalf("UploadAttachment = %v", err)
			}
			return func() {
				if _, err := svc.api.DeleteAttachment(ctx, &attachmentv1.DeleteAttachmentRequest{AttachmentId: a.GetAttachmentId()}); err != nil {
					b.Fatal(err)
				}
			}
		}
		plainPut := func() {
			if _, err := plain.Client().PutObject(ctx, plain.Bucket(), plain.Key("obj"), bytes.NewReader(data), int64(size), minio.PutObjectOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		b.Run("upload/"+label, func(b *testing.B) { compareThroughput(b, size, upload, plainPut) })

		a, err := streamUpload(ctx, svc.api, "bench.pdf", "application/pdf", bytes.NewReader(data), int64(size))
		if err != nil {
			b.Fatal(err)
		}
		download := func() (cleanup func()) {
			if n, err := streamDownload(ctx, svc.api, a.GetAttachmentId(), io.Discard); err != nil || n != int64(size) {
				b.Fatalf("DownloadAttachment = %d, %v", n, err)
			}
			return nil
		}
		plainGet := func() {
			obj, err := plain.Client().GetObject(ctx, plain.Bucket(), plain.Key("obj"), minio.GetObjectOptions{})
			if err != nil {
				b.Fatal(err)
			}
			if n, err := io.Copy(io.Discard, obj); err != nil || n != int64(size) {
				b.Fatalf("GetObject = %d, %v", n, err)
			}
			if err := obj.Close(); err != nil {
				b.Fatal(err)
			}
		}
		b.Run("download/"+label, func(b *testing.B) { compareThroughput(b, size, download, plainGet) })
		// Ciphertext expansion of the stored object, beyond the plaintext size.
		for o := range plain.Client().ListObjects(ctx, plain.Bucket(), minio.ListObjectsOptions{Prefix: svc.prefix + "obj/", Recursive: true}) {
			if o.Err == nil && o.Size > int64(size) {
				b.Logf("%s: stored %d bytes for %d (+%d, %.4f%%)", label, o.Size, size, o.Size-int64(size), float64(o.Size-int64(size))*100/float64(size))
			}
		}
		if _, err := svc.api.DeleteAttachment(ctx, &attachmentv1.DeleteAttachmentRequest{AttachmentId: a.GetAttachmentId()}); err != nil {
			b.Fatal(err)
		}
	}
}

// compareThroughput alternates the service's operation and plain minio-go's in one loop, so both
// see the same machine state, and reports the service's MB/s beside minio-go's (the baseline).
// Only the two operations are timed; svcOp's cleanup (deleting an upload) runs untimed.
func compareThroughput(b *testing.B, size int, svcOp func() (cleanup func()), plainOp func()) {
	var svcDur, plainDur time.Duration
	n := 0
	for b.Loop() {
		t0 := time.Now()
		cleanup := svcOp()
		t1 := time.Now()
		plainOp()
		plainDur += time.Since(t1)
		svcDur += t1.Sub(t0)
		n++
		if cleanup != nil {
			cleanup()
		}
	}
	mb := float64(size) * float64(n) / 1e6
	benchkit.Compare(b, mb/svcDur.Seconds(), mb/plainDur.Seconds(), "MB/s")
}

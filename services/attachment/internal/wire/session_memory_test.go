package wire_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
	"testing"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
)

// sessionChunk is the chunk size the session tests and benchmarks send: the largest accepted.
const sessionChunk = 2 << 20

// sessionStreamUpload sends size bytes from r through an upload session in sessionChunk chunks,
// one unary call each as a browser would, and finishes it. The client holds one chunk.
func sessionStreamUpload(ctx context.Context, api attachmentv1.AttachmentServiceClient, name, mediaType string, r io.Reader, size int64) (*attachmentv1.Attachment, error) {
	created, err := api.CreateUploadSession(ctx, &attachmentv1.CreateUploadSessionRequest{Metadata: &attachmentv1.UploadMetadata{
		FileName: name, DeclaredMediaType: mediaType, DeclaredSizeBytes: size}})
	if err != nil {
		return nil, err
	}
	id := created.GetSession().GetUploadId()
	buf := make([]byte, sessionChunk)
	for off := int64(0); off < size; {
		n, rerr := io.ReadFull(r, buf[:min(int64(len(buf)), size-off)])
		if n > 0 {
			if _, err := api.AppendUploadChunk(ctx, &attachmentv1.AppendUploadChunkRequest{UploadId: id, Offset: off, Data: buf[:n]}); err != nil {
				return nil, fmt.Errorf("append at %d: %w", off, err)
			}
			off += int64(n)
		}
		if rerr != nil && off < size {
			return nil, rerr
		}
	}
	resp, err := api.FinishUploadSession(ctx, &attachmentv1.FinishUploadSessionRequest{UploadId: id})
	return resp.GetAttachment(), err
}

// contentDownload reads the whole attachment with DownloadAttachmentContent, the rpc behind the
// HTTP download, into w and returns the byte count.
func contentDownload(ctx context.Context, api attachmentv1.AttachmentServiceClient, id string, w io.Writer) (int64, error) {
	stream, err := api.DownloadAttachmentContent(ctx, &attachmentv1.DownloadAttachmentContentRequest{AttachmentId: id})
	if err != nil {
		return 0, err
	}
	return drainChunks(stream.Recv, w)
}

// sessionRoundTrip uploads size bytes of text through a session and downloads them back through
// the content rpc, measuring the service's peak RSS during each; it fails on any difference.
func sessionRoundTrip(tb testing.TB, svc *service, size int64) (up, down int64) {
	tb.Helper()
	ctx := svc.ctx(tb.Context())
	svc.resetPeakRSS(tb)
	want := sha256.New()
	a, err := sessionStreamUpload(ctx, svc.api, marker("session-big")+".txt", "text/plain", io.TeeReader(newTextStream(size), want), size)
	if err != nil {
		tb.Fatalf("session upload (%d MiB) = %v", size>>20, err)
	}
	if a.GetScanState() != attachmentv1.ScanState_SCAN_STATE_CLEAN || a.GetSizeBytes() != size {
		tb.Fatalf("session upload (%d MiB) = %v, want CLEAN", size>>20, a)
	}
	up = svc.peakRSS(tb)
	svc.resetPeakRSS(tb)
	got := sha256.New()
	n, err := contentDownload(ctx, svc.api, a.GetAttachmentId(), got)
	if err != nil || n != size || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		tb.Fatalf("content download (%d MiB) = %d bytes, %v; sha256 match %v", size>>20, n, err, bytes.Equal(got.Sum(nil), want.Sum(nil)))
	}
	down = svc.peakRSS(tb)
	tb.Logf("session path, %d MiB: peak RSS %.1f MiB uploading, %.1f MiB downloading", size>>20, float64(up)/(1<<20), float64(down)/(1<<20))
	if up > sessionMaxRSS || down > sessionMaxRSS {
		tb.Errorf("session path peak RSS upload %d, download %d bytes, want at most %d", up, down, sessionMaxRSS)
	}
	return up, down
}

// sessionMaxRSS bounds the service's resident memory on the session path. It sits above the
// stream's former 64 MiB bound: measured here, a session's unary 2 MiB calls raise the idle
// 40 MiB to 60-70 MiB (the stream's 1 MiB messages reach 48-53 MiB), the same whatever the
// file size — the tests check that it does not grow with the size.
const sessionMaxRSS = 96 << 20

// TestSessionMemoryBounded is the short version, in make test: 25 MiB and 100 MiB (the stack's
// clamd scans up to that) through an upload session and back through the content download, in
// the real binary, within sessionMaxRSS and not growing with the size. BenchmarkSessionTransfer1GiB (make
// bench) moves 1 GiB the same way.
func TestSessionMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 200 MiB through the service; skipped with -short")
	}
	svc := startService(t, buildService(t, t.TempDir()), map[string]string{
		"SECUREMSG_ATTACHMENT_MAX_FILE_BYTES": strconv.Itoa(100 << 20), "SECUREMSG_ATTACHMENT_QUOTA_BYTES": strconv.Itoa(4 << 30),
	})
	smallUp, smallDown := sessionRoundTrip(t, svc, 25<<20)
	up, down := sessionRoundTrip(t, svc, 100<<20)
	// Not proportional to the size: 4x the bytes may cost at most 1.5x the memory (the margin
	// is the garbage collector's pacing, as in TestMemoryBoundedSubprocess).
	if up > smallUp*3/2 || down > smallDown*3/2 {
		t.Errorf("session path peak RSS grows with the file size: 25 MiB %d/%d, 100 MiB %d/%d bytes (upload/download)", smallUp, smallDown, up, down)
	}
}

// BenchmarkSessionTransfer1GiB moves 1 GiB through an upload session (2 MiB unary chunks) and
// back through the content download, scanned for real by a scratch clamd whose stream limit is
// above 1 GiB, and reports the service's peak RSS; it fails above the bound the stream meets.
//
//	go test ./services/attachment/internal/wire/ -run '^$' -bench SessionTransfer1GiB
func BenchmarkSessionTransfer1GiB(b *testing.B) {
	const gib = 1 << 30
	clamdAddr := startScratchClamd(b, gib+(1<<20))
	svc := startService(b, buildService(b, b.TempDir()), map[string]string{
		"SECUREMSG_CLAMD_ADDR": clamdAddr, "SECUREMSG_CLAMD_STREAM_MAX_BYTES": strconv.Itoa(gib + 1<<20),
		"SECUREMSG_ATTACHMENT_MAX_FILE_BYTES": strconv.Itoa(gib + 1<<20), "SECUREMSG_ATTACHMENT_QUOTA_BYTES": strconv.Itoa(64 * gib),
	})
	var up, down int64
	for b.Loop() {
		up, down = sessionRoundTrip(b, svc, gib)
	}
	b.ReportMetric(float64(up)/(1<<20), "MiB-peak-RSS-upload")
	b.ReportMetric(float64(down)/(1<<20), "MiB-peak-RSS-download")
}

// BenchmarkSessionThroughput compares, in one run, the browser path — an upload session in
// 2 MiB unary calls, and the content download — with the gRPC client stream and the stream
// download, over the same service binary, MinIO and clamd. The value is the session path's
// MB/s, the baseline the stream's.
//
//	go test ./services/attachment/internal/wire/ -run '^$' -bench SessionThroughput
func BenchmarkSessionThroughput(b *testing.B) {
	svc := startService(b, buildService(b, b.TempDir()), map[string]string{
		"SECUREMSG_ATTACHMENT_MAX_FILE_BYTES": strconv.Itoa(100 << 20), "SECUREMSG_ATTACHMENT_QUOTA_BYTES": strconv.Itoa(64 << 30),
	})
	ctx := svc.ctx(b.Context())
	for _, size := range []int{1 << 20, 64 << 20} {
		data := make([]byte, size)
		_, _ = rand.Read(data)
		copy(data, "%PDF-1.7\n") // random bytes behind a PDF header: incompressible, allowed
		label := strconv.Itoa(size>>20) + "MiB"
		var uploads uint64
		fresh := func() []byte {
			// New bytes each time: clamd remembers the verdicts of files it has scanned.
			uploads++
			binary.BigEndian.PutUint64(data[len(data)-8:], uploads)
			return data
		}
		remove := func(a *attachmentv1.Attachment) {
			if _, err := svc.api.DeleteAttachment(ctx, &attachmentv1.DeleteAttachmentRequest{AttachmentId: a.GetAttachmentId()}); err != nil {
				b.Fatal(err)
			}
		}
		sessionUp := func() (cleanup func()) {
			a, err := sessionStreamUpload(ctx, svc.api, "bench.pdf", "application/pdf", bytes.NewReader(fresh()), int64(size))
			if err != nil {
				b.Fatalf("session upload = %v", err)
			}
			return func() { remove(a) }
		}
		var streamed []*attachmentv1.Attachment
		streamUp := func() {
			a, err := streamUpload(ctx, svc.api, "bench.pdf", "application/pdf", bytes.NewReader(fresh()), int64(size))
			if err != nil {
				b.Fatalf("stream upload = %v", err)
			}
			streamed = append(streamed, a)
		}
		b.Run("upload/"+label, func(b *testing.B) { compareThroughput(b, size, sessionUp, streamUp) })
		for _, a := range streamed {
			remove(a)
		}

		a, err := streamUpload(ctx, svc.api, "bench.pdf", "application/pdf", bytes.NewReader(fresh()), int64(size))
		if err != nil {
			b.Fatal(err)
		}
		contentDown := func() (cleanup func()) {
			if n, err := contentDownload(ctx, svc.api, a.GetAttachmentId(), io.Discard); err != nil || n != int64(size) {
				b.Fatalf("content download = %d, %v", n, err)
			}
			return nil
		}
		streamDown := func() {
			if n, err := streamDownload(ctx, svc.api, a.GetAttachmentId(), io.Discard); err != nil || n != int64(size) {
				b.Fatalf("stream download = %d, %v", n, err)
			}
		}
		b.Run("download/"+label, func(b *testing.B) { compareThroughput(b, size, contentDown, streamDown) })
		remove(a)
	}
}

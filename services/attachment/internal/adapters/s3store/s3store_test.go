package s3store_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/securemsg/securemsg/services/attachment/internal/adapters/s3store"
	"github.com/securemsg/securemsg/services/attachment/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/internal/testkit"
)

// newStore returns a store over the stack's bucket under a unique prefix, emptied afterwards.
func newStore(t *testing.T, window int64) *s3store.Store {
	t.Helper()
	st := testkit.LoadStack()
	testkit.RequireTCP(t, "minio", st.S3Endpoint)
	prefix := testkit.UniqueName(t, "test-s3store-", 60) + "/"
	s, err := s3store.New(s3store.Config{
		Endpoint: st.S3Endpoint, AccessKey: st.S3AccessKey, SecretKey: st.S3SecretKey, Bucket: st.S3Bucket,
		Prefix: prefix, PartSize: 5 << 20, ReadWindow: window,
	})
	if err != nil {
		t.Fatalf("s3store.New = %v", err)
	}
	if err := s.EnsureBucket(t.Context()); err != nil {
		testkit.Unavailable(t, "minio", err)
	}
	t.Cleanup(func() { emptyPrefix(t, s.Client(), st.S3Bucket, prefix) })
	return s
}

func emptyPrefix(t *testing.T, c *minio.Client, bucket, prefix string) {
	ctx := t.Context()
	if ctx.Err() != nil {
		ctx = t.Context()
	}
	for o := range c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err == nil {
			_ = c.RemoveObject(ctx, bucket, o.Key, minio.RemoveObjectOptions{})
		}
	}
	for u := range c.ListIncompleteUploads(ctx, bucket, prefix, true) {
		if u.Err == nil {
			_ = c.RemoveIncompleteUpload(ctx, bucket, u.Key)
		}
	}
}

func TestPutOpenReadAt(t *testing.T) {
	t.Parallel()
	s := newStore(t, 100<<10)        // small windows, so reads cross them
	data := make([]byte, 11<<20+123) // multipart: three 5 MiB parts
	rand.Read(data)
	// Stream it through a pipe: the store must cope with a reader of unknown chunking.
	pr, pw := io.Pipe()
	go func() {
		_, err := pw.Write(data) // fails only if Put stops reading, which Put's result reports
		pw.CloseWithError(err)
	}()
	if err := s.Put(t.Context(), "obj/a", pr, int64(len(data))); err != nil {
		t.Fatalf("Put = %v", err)
	}
	obj, err := s.Open(t.Context(), "obj/a", domain.ReadHint{})
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	defer func() { _ = obj.Close() }() // read-only; Close releases responses
	if obj.Size() != int64(len(data)) {
		t.Fatalf("Size() = %d, want %d", obj.Size(), len(data))
	}
	tests := []struct {
		name    string
		off     int64
		n       int
		wantN   int
		wantEOF bool
	}{
		{name: "start", off: 0, n: 44, wantN: 44},
		{name: "sequential after", off: 44, n: 300 << 10, wantN: 300 << 10},
		{name: "jump to end", off: int64(len(data)) - 1000, n: 1000, wantN: 1000},
		{name: "past end", off: int64(len(data)) - 10, n: 100, wantN: 10, wantEOF: true},
		{name: "back to middle", off: 7 << 20, n: 1 << 20, wantN: 1 << 20},
		{name: "at end", off: int64(len(data)), n: 10, wantN: 0, wantEOF: true},
	}
	for _, tt := range tests {
		buf := make([]byte, tt.n)
		n, err := obj.ReadAt(buf, tt.off)
		if n != tt.wantN || (err == io.EOF) != tt.wantEOF || (err != nil && err != io.EOF) {
			t.Fatalf("%s: ReadAt(%d bytes at %d) = %d, %v, want %d, EOF %v", tt.name, tt.n, tt.off, n, err, tt.wantN, tt.wantEOF)
		}
		if !bytes.Equal(buf[:n], data[tt.off:tt.off+int64(n)]) {
			t.Fatalf("%s: ReadAt returned the wrong bytes", tt.name)
		}
	}
}

// TestOpenReadHint reads an object the way a stream reader does (header, last segment, then
// from the start) under right and wrong hints: a hint may only change how many requests are
// made, never the bytes returned.
func TestOpenReadHint(t *testing.T) {
	t.Parallel()
	s := newStore(t, 0)
	data := make([]byte, 1<<20+123)
	rand.Read(data)
	size := int64(len(data))
	if err := s.Put(t.Context(), "obj/h", bytes.NewReader(data), size); err != nil {
		t.Fatalf("Put = %v", err)
	}
	tests := []struct {
		name string
		hint domain.ReadHint
	}{
		{name: "none", hint: domain.ReadHint{}},
		{name: "exact", hint: domain.ReadHint{Size: size, Tail: 64<<10 + 16}},
		{name: "size too small", hint: domain.ReadHint{Size: size - 1000, Tail: 64<<10 + 16}},
		{name: "size too large", hint: domain.ReadHint{Size: size + 1000, Tail: 64<<10 + 16}},
		{name: "tail beyond the object", hint: domain.ReadHint{Size: size, Tail: size + 5}},
		{name: "size without tail", hint: domain.ReadHint{Size: size}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj, err := s.Open(t.Context(), "obj/h", tt.hint)
			if err != nil {
				t.Fatalf("Open(%+v) = %v", tt.hint, err)
			}
			defer func() { _ = obj.Close() }() // read-only; Close releases responses
			if obj.Size() != size {
				t.Fatalf("Size() = %d, want %d", obj.Size(), size)
			}
			check := func(off int64, n int) {
				t.Helper()
				buf := make([]byte, n)
				got, err := obj.ReadAt(buf, off)
				want := min(int64(n), size-off)
				if int64(got) != want || (err != nil && (err != io.EOF || want >= int64(n))) {
					t.Fatalf("ReadAt(%d bytes at %d) = %d, %v, want %d", n, off, got, err, want)
				}
				if !bytes.Equal(buf[:got], data[off:off+int64(got)]) {
					t.Fatalf("ReadAt(%d bytes at %d) returned the wrong bytes", n, off)
				}
			}
			check(0, 71)
			check(size-5000, 5000)
			for off := int64(71); off < size; off += 64<<10 + 16 {
				check(off, 64<<10+16)
			}
			check(size-70000, 70000) // again, across the tail's start
			check(500, 100)
		})
	}
}

func TestOpenRemoveMissing(t *testing.T) {
	t.Parallel()
	s := newStore(t, 0)
	if _, err := s.Open(t.Context(), "obj/missing", domain.ReadHint{}); !errors.Is(err, usererr.ErrNotFound) {
		t.Errorf("Open(missing) = %v, want ErrNotFound", err)
	}
	if err := s.Remove(t.Context(), "obj/missing"); err != nil {
		t.Errorf("Remove(missing) = %v, want nil", err)
	}
	if err := s.Put(t.Context(), "obj/b", bytes.NewReader([]byte("x")), 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(t.Context(), "obj/b"); err != nil {
		t.Fatalf("Remove = %v", err)
	}
	if _, err := s.Open(t.Context(), "obj/b", domain.ReadHint{}); !errors.Is(err, usererr.ErrNotFound) {
		t.Errorf("Open(removed) = %v, want ErrNotFound", err)
	}
}

func TestPutReaderErrorAborts(t *testing.T) {
	t.Parallel()
	s := newStore(t, 0)
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write(make([]byte, 6<<20)) // more than a part: a multipart upload has begun
		pw.CloseWithError(errors.New("client went away"))
	}()
	if err := s.Put(t.Context(), "obj/c", pr, 12<<20); err == nil {
		t.Fatal("Put(failing reader) = nil, want an error")
	}
	if _, err := s.Open(t.Context(), "obj/c", domain.ReadHint{}); !errors.Is(err, usererr.ErrNotFound) {
		t.Errorf("Open(aborted) = %v, want ErrNotFound", err)
	}
}

func TestRemoveAbortsIncompleteUpload(t *testing.T) {
	t.Parallel()
	s := newStore(t, 0)
	core := minio.Core{Client: s.Client()}
	if _, err := core.NewMultipartUpload(t.Context(), s.Bucket(), s.Key("obj/stale"), minio.PutObjectOptions{}); err != nil {
		t.Fatalf("NewMultipartUpload = %v", err)
	}
	count := func() int {
		n := 0
		for u := range s.Client().ListIncompleteUploads(t.Context(), s.Bucket(), s.Key("obj/stale"), true) {
			if u.Err == nil {
				n++
			}
		}
		return n
	}
	if n := count(); n != 1 {
		t.Fatalf("incomplete uploads before = %d, want 1", n)
	}
	if _, err := s.RemoveIncompleteUploads(t.Context(), time.Hour); err != nil {
		t.Errorf("RemoveIncompleteUploads = %v", err)
	}
	if err := s.Remove(t.Context(), "obj/stale"); err != nil {
		t.Fatalf("Remove = %v", err)
	}
	if n := count(); n != 0 {
		t.Errorf("incomplete uploads after Remove = %d, want 0", n)
	}
}

// TestOpenEmptyAndShrunkObjects: an empty object is an object of size 0 (S3 answers a GET of
// its first bytes with 416), and an object that shrinks under an open reader is DataLoss.
// Neither is Unavailable: the store answered, and a retry will not mend the object.
func TestOpenEmptyAndShrunkObjects(t *testing.T) {
	t.Parallel()
	s := newStore(t, 64<<10)
	if err := s.Put(t.Context(), "obj/empty", bytes.NewReader(nil), 0); err != nil {
		t.Fatalf("Put(empty) = %v", err)
	}
	for _, hint := range []domain.ReadHint{{}, {Size: 1 << 20, Tail: 64<<10 + 16}} {
		obj, err := s.Open(t.Context(), "obj/empty", hint)
		if err != nil {
			t.Fatalf("Open(empty, hint %+v) = %v, want an object of size 0", hint, err)
		}
		if obj.Size() != 0 {
			t.Errorf("Open(empty).Size() = %d, want 0", obj.Size())
		}
		if n, err := obj.ReadAt(make([]byte, 10), 0); n != 0 || err != io.EOF {
			t.Errorf("Open(empty).ReadAt = %d, %v, want 0, EOF", n, err)
		}
		_ = obj.Close() // read-only
	}

	data := make([]byte, 1<<20)
	rand.Read(data)
	if err := s.Put(t.Context(), "obj/shrinks", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{0, 1000} {
		obj, err := s.Open(t.Context(), "obj/shrinks", domain.ReadHint{})
		if err != nil {
			t.Fatalf("Open = %v", err)
		}
		if err := s.Put(t.Context(), "obj/shrinks", bytes.NewReader(data[:size]), int64(size)); err != nil {
			t.Fatal(err)
		}
		// Beyond the first window: a new range GET, of an object now shorter than the offset.
		_, err = obj.ReadAt(make([]byte, 100), 512<<10)
		if !errors.Is(err, usererr.ErrDataLoss) || errors.Is(err, usererr.ErrUnavailable) {
			t.Errorf("ReadAt(object shrunk to %d bytes) = %v, want ErrDataLoss", size, err)
		}
		_ = obj.Close() // read-only
		if err := s.Put(t.Context(), "obj/shrinks", bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
	}
}

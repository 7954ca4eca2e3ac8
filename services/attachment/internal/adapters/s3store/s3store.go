// Package s3store keeps attachment ciphertext in S3-compatible object storage (MinIO in the dev
// stack) with minio-go: streaming PUTs of unknown-length bodies in bounded memory, and range
// reads that fetch only what a decryption needs. Object names are random and no metadata is
// written, so the store learns nothing about a file but its ciphertext size.
package s3store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/securemsg/securemsg/services/attachment/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// Config says where the bucket is.
type Config struct {
	Endpoint  string // host:port
	AccessKey string
	SecretKey string
	Bucket    string
	UseTLS    bool
	// Prefix is put in front of every object name (tests use a unique one).
	Prefix string
	// PartSize is the multipart part size (5 MiB to 5 GiB, default 5 GiB); parts stream, so it
	// costs no memory. Objects up to one part go up in a single PUT.
	PartSize uint64
	// ReadWindow is how many bytes one range GET asks for at most; sequential reads within a
	// window reuse one response, so a download makes size/ReadWindow requests.
	ReadWindow int64
}

// Store is an object store over one bucket.
type Store struct {
	c   *minio.Client
	cfg Config
	// partSize is cfg.PartSize as the signed size arithmetic of Put wants it.
	partSize int64
}

// New connects (lazily: minio-go dials on first use) to the bucket described by cfg.
func New(cfg Config) (*Store, error) {
	if cfg.PartSize == 0 {
		cfg.PartSize = 5 << 30
	}
	if cfg.PartSize < 5<<20 || cfg.PartSize > 5<<30 {
		return nil, errors.New("s3store: part size outside S3's 5 MiB to 5 GiB")
	}
	if cfg.ReadWindow <= 0 {
		cfg.ReadWindow = 8 << 20
	}
	tr, err := minio.DefaultTransport(cfg.UseTLS)
	if err != nil {
		return nil, fmt.Errorf("s3store: transport: %w", err)
	}
	// Fail fast when the store is down rather than hanging an upload.
	tr.ResponseHeaderTimeout = 30 * time.Second
	tr.MaxIdleConnsPerHost = 64
	c, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:     credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:    cfg.UseTLS,
		Transport: tr,
		// Retries would re-read a streamed body that cannot be replayed.
		MaxRetries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("s3store: client: %w", err)
	}
	// The check above keeps PartSize within 5 MiB to 5 GiB, far inside int64.
	return &Store{c: c, cfg: cfg, partSize: int64(cfg.PartSize)}, nil
}

// Client is the underlying minio-go client (benchmarks compare against it).
func (s *Store) Client() *minio.Client { return s.c }

// Bucket is the bucket's name.
func (s *Store) Bucket() string { return s.cfg.Bucket }

// Key is the full object key of name (with the configured prefix).
func (s *Store) Key(name string) string { return s.cfg.Prefix + name }

// EnsureBucket creates the bucket when it does not exist.
func (s *Store) EnsureBucket(ctx context.Context) error {
	ok, err := s.c.BucketExists(ctx, s.cfg.Bucket)
	if err != nil {
		return unavailable("check bucket", err)
	}
	if ok {
		return nil
	}
	if err := s.c.MakeBucket(ctx, s.cfg.Bucket, minio.MakeBucketOptions{}); err != nil {
		if minio.ToErrorResponse(err).Code == "BucketAlreadyOwnedByYou" {
			return nil
		}
		return unavailable("create bucket", err)
	}
	return nil
}

// Put streams exactly size bytes from r into the object without buffering them: an object up
// to one part goes up in a single PUT, a larger one as a multipart upload whose parts stream
// straight from r (S3 needs each part's length up front, and size tells it). minio-go's own
// PutObject would copy each part into a PartSize buffer first; streaming keeps an upload's
// memory at the HTTP client's chunk buffers whatever the part size, and keeps r flowing while
// a part is sent. A failure aborts the multipart upload, so nothing becomes visible.
//
// The body is sent without minio-go's payload SHA-256 (over plain HTTP it would sign each
// 64 KiB chunk with one, and the store would verify it): what is stored is ciphertext whose
// every segment the AEAD authenticates on download (corruption on the way in is caught there,
// like corruption at rest), so that hash proves nothing the tags do not, and it cost a SHA-256
// pass in this process and another in the store. Over TLS minio-go sends UNSIGNED-PAYLOAD
// anyway.
func (s *Store) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	key := s.Key(name)
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream", DisableContentSha256: true}
	if size <= s.partSize {
		// One request, whatever minio-go's own part size: it would buffer parts in memory.
		single := opts
		single.DisableMultipart = true
		if _, err := s.c.PutObject(ctx, s.cfg.Bucket, key, r, size, single); err != nil {
			return unavailable("put object", err)
		}
		return nil
	}
	core := minio.Core{Client: s.c}
	uploadID, err := core.NewMultipartUpload(ctx, s.cfg.Bucket, key, opts)
	if err != nil {
		return unavailable("start multipart upload", err)
	}
	parts := make([]minio.CompletePart, 0, (size+s.partSize-1)/s.partSize)
	for off, n := int64(0), 1; off < size; n++ {
		length := min(s.partSize, size-off)
		part, err := core.PutObjectPart(ctx, s.cfg.Bucket, key, uploadID, n, io.LimitReader(r, length), length, minio.PutObjectPartOptions{DisableContentSha256: true})
		if err != nil {
			s.abort(key, uploadID)
			return unavailable("put part", err)
		}
		parts = append(parts, minio.CompletePart{PartNumber: n, ETag: part.ETag,
			ChecksumCRC32: part.ChecksumCRC32, ChecksumCRC32C: part.ChecksumCRC32C, ChecksumSHA1: part.ChecksumSHA1,
			ChecksumSHA256: part.ChecksumSHA256, ChecksumCRC64NVME: part.ChecksumCRC64NVME})
		off += length
	}
	if _, err := core.CompleteMultipartUpload(ctx, s.cfg.Bucket, key, uploadID, parts, opts); err != nil {
		s.abort(key, uploadID)
		return unavailable("complete multipart upload", err)
	}
	return nil
}

// abort abandons a multipart upload, on a context of its own: the caller's may be the reason
// for the failure. An abort that fails leaves the upload to Remove and the store's expiry.
func (s *Store) abort(key, uploadID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = minio.Core{Client: s.c}.AbortMultipartUpload(ctx, s.cfg.Bucket, key, uploadID)
}

// Open starts reading the object with one range GET of its first window, which also tells its
// real size (Content-Range), so no separate HEAD is needed; a missing object is ErrNotFound.
// Objects up to smallObject bytes arrive whole in that GET and are served from memory. When
// hint gives the size and a tail, the tail is fetched by a second GET running concurrently with
// the first, so a stream reader's header, last segment, then start costs one round trip, not
// two. A tail that does not match what the first GET found is dropped, never served.
func (s *Store) Open(ctx context.Context, name string, hint domain.ReadHint) (domain.Object, error) {
	o := &object{s: s, ctx: ctx, key: s.Key(name), size: -1}
	var tail chan tailResult
	if hint.Size > smallObject && hint.Tail > 0 && hint.Tail <= maxTail {
		n := min(hint.Tail, hint.Size)
		tail = make(chan tailResult, 1)
		go func() { tail <- s.fetchTail(ctx, o.key, hint.Size-n, hint.Size) }()
	}
	c, err := o.get(0, s.cfg.ReadWindow)
	var t tailResult
	if tail != nil {
		t = <-tail
	}
	if err != nil {
		if errors.Is(err, usererr.ErrNotFound) {
			return nil, errObjectNotFound
		}
		return nil, err
	}
	if o.size <= smallObject {
		buf := make([]byte, o.size)
		_, err := io.ReadFull(c.body, buf)
		closeBody(c.body)
		if err != nil {
			return nil, unavailable("read object", err)
		}
		o.small = buf
		return o, nil
	}
	if t.err == nil && t.total == o.size && t.off+int64(len(t.data)) == o.size {
		o.tail, o.tailOff = t.data, t.off
	}
	o.cursors[0] = c
	return o, nil
}

// tailResult is a tail fetched by Open: data is the object's bytes at off, total its size then.
type tailResult struct {
	data       []byte
	off, total int64
	err        error
}

// fetchTail reads [off, end) of the object into memory with one range GET.
func (s *Store) fetchTail(ctx context.Context, key string, off, end int64) tailResult {
	body, hdr, err := s.rangeGet(ctx, key, off, end)
	if err != nil {
		return tailResult{err: err}
	}
	defer closeBody(body)
	first, last, total, err := parseContentRange(hdr.Get("Content-Range"))
	if err != nil {
		return tailResult{err: err}
	}
	if first != off || last != end-1 {
		return tailResult{err: fmt.Errorf("tail range %d-%d, asked %d-%d", first, last, off, end-1)}
	}
	buf := make([]byte, end-off)
	if _, err := io.ReadFull(body, buf); err != nil {
		return tailResult{err: err}
	}
	return tailResult{data: buf, off: off, total: total}
}

// Remove deletes the object and aborts any multipart upload of it still open (an upload that
// failed part-way, or whose process died); a missing object is fine.
func (s *Store) Remove(ctx context.Context, name string) error {
	err := s.c.RemoveObject(ctx, s.cfg.Bucket, s.Key(name), minio.RemoveObjectOptions{})
	if err != nil && !isNotFound(err) {
		return unavailable("remove object", err)
	}
	if err := s.c.RemoveIncompleteUpload(ctx, s.cfg.Bucket, s.Key(name)); err != nil && !isNotFound(err) {
		return unavailable("abort incomplete upload", err)
	}
	return nil
}

// RemovePrefix deletes every object whose name starts with prefix, in batches of up to 1,000
// per request (S3's DeleteObjects). The objects it is meant for (staged chunks) are each sent
// in a single PUT, so no multipart upload is left to abort.
func (s *Store) RemovePrefix(ctx context.Context, prefix string) (int, error) {
	if prefix == "" {
		return 0, errors.New("s3store: refusing to remove an empty prefix")
	}
	objs := make(chan minio.ObjectInfo)
	listed := make(chan error, 1)
	go func() {
		defer close(objs)
		for o := range s.c.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: s.Key(prefix), Recursive: true}) {
			if o.Err != nil {
				listed <- o.Err
				return
			}
			select {
			case objs <- o:
			case <-ctx.Done():
				listed <- ctx.Err()
				return
			}
		}
		listed <- nil
	}()
	n := 0
	var rmErr error
	for r := range s.c.RemoveObjectsWithResult(ctx, s.cfg.Bucket, objs, minio.RemoveObjectsOptions{}) {
		if r.Err != nil && !isNotFound(r.Err) {
			rmErr = r.Err
			continue
		}
		n++
	}
	if err := errors.Join(<-listed, rmErr); err != nil {
		return n, unavailable("remove objects by prefix", err)
	}
	return n, nil
}

// RemoveIncompleteUploads aborts multipart uploads under the prefix initiated more than
// olderThan ago (a crashed process leaves them; their parts cost storage and hold ciphertext).
// S3 lists them by prefix; MinIO lists only those of one exact key, so there it finds nothing
// and the clean-up relies on Remove (called for every abandoned row's object) and on MinIO's
// own expiry of stale uploads (api stale_uploads_expiry, 24 h by default).
func (s *Store) RemoveIncompleteUploads(ctx context.Context, olderThan time.Duration) (int, error) {
	cutoff := time.Now().Add(-olderThan)
	var stale []string
	for u := range s.c.ListIncompleteUploads(ctx, s.cfg.Bucket, s.cfg.Prefix, true) {
		if u.Err != nil {
			return 0, unavailable("list incomplete uploads", u.Err)
		}
		if u.Initiated.Before(cutoff) {
			stale = append(stale, u.Key)
		}
	}
	n := 0
	for _, key := range stale {
		if err := s.c.RemoveIncompleteUpload(ctx, s.cfg.Bucket, key); err != nil && !isNotFound(err) {
			return n, unavailable("abort incomplete upload", err)
		}
		n++
	}
	return n, nil
}

// errObjectNotFound is Open's answer for an object that does not exist.
var errObjectNotFound = usererr.New(usererr.NotFound, "OBJECT_NOT_FOUND", "object not found")

// errRangeNotSatisfiable is rangeGet's answer when the object exists but holds no byte at the
// range's start (HTTP 416): it is empty, or shorter than it was. The store answered, so this
// is never Unavailable.
var errRangeNotSatisfiable = errors.New("s3store: range not satisfiable")

// errObjectChanged is a read of an object whose size is not the one it had when opened.
var errObjectChanged = usererr.New(usererr.DataLoss, "STORED_OBJECT_CHANGED", "stored object changed while read")

func isNotFound(err error) bool {
	r := minio.ToErrorResponse(err)
	return r.StatusCode == http.StatusNotFound || r.Code == "NoSuchKey" || r.Code == "NoSuchUpload"
}

// unavailable wraps a storage failure. minio-go's messages name the bucket and key, which
// are random ids, never PHI.
func unavailable(op string, err error) error {
	return usererr.Wrap(usererr.Unavailable, "OBJECT_STORE_UNAVAILABLE", "object storage unavailable", fmt.Errorf("s3 %s: %w", op, err))
}

// maxTail bounds the tail Open holds in memory: a stream's last segment is at most 1 MiB.
const maxTail = 1<<20 + 64

// smallObject is the size up to which an object is read whole by Open: one request instead of
// the three a decryption's access pattern (header, last segment, then from the start) needs.
const smallObject = 256 << 10

// object is an io.ReaderAt over range GETs. A read where an open response stands continues
// it; any other offset, or the end of a window, starts a new range GET of at most ReadWindow
// bytes. Two responses stay open, because a stream reader reads the header, then the last
// segment, then goes back to the start. It is safe for concurrent use (serialised).
type object struct {
	s    *Store
	ctx  context.Context
	key  string
	size int64

	small []byte // the whole object, when it is small
	// tail holds the object's bytes from tailOff to its end, fetched by Open; reads there that
	// no open response continues are served from it.
	tail    []byte
	tailOff int64

	mu      sync.Mutex
	cursors [2]*cursor
	tick    uint64
}

// cursor is an open range response: its next byte is at pos, it ends before end.
type cursor struct {
	body     io.ReadCloser
	pos, end int64
	used     uint64
}

func (o *object) Size() int64 { return o.size }

func (o *object) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("s3store: negative offset")
	}
	if off >= o.size {
		return 0, io.EOF
	}
	if o.small != nil {
		n := copy(p, o.small[off:])
		if n < len(p) {
			return n, io.EOF
		}
		return n, nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	want := min(int64(len(p)), o.size-off)
	var n int64
	for n < want {
		at := off + n
		c := o.cursorAt(at)
		// An open response that reaches here is preferred to the tail: reading it to its
		// end lets the HTTP connection be reused.
		if c == nil && at >= o.tailOff && at < o.tailOff+int64(len(o.tail)) {
			n += int64(copy(p[n:want], o.tail[at-o.tailOff:]))
			continue
		}
		if c == nil {
			var err error
			if c, err = o.open(at, want-n); err != nil {
				return int(n), err
			}
		}
		o.tick++
		c.used = o.tick
		chunk := min(want-n, c.end-c.pos)
		m, err := io.ReadFull(c.body, p[n:n+chunk])
		n += int64(m)
		c.pos += int64(m)
		if err != nil {
			o.drop(c)
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				// The object is shorter than its first response said: report what arrived
				// as the end of the data, which the decryption treats as truncation.
				return int(n), io.ErrUnexpectedEOF
			}
			return int(n), unavailable("read object", err)
		}
	}
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}

// cursorAt returns the open response whose next byte is at off, if any.
func (o *object) cursorAt(off int64) *cursor {
	for _, c := range o.cursors {
		if c != nil && c.pos == off && c.pos < c.end {
			return c
		}
	}
	return nil
}

// open starts a range GET at off in place of the least recently used response.
func (o *object) open(off, need int64) (*cursor, error) {
	slot := 0
	if o.cursors[0] != nil && (o.cursors[1] == nil || o.cursors[1].used < o.cursors[0].used) {
		slot = 1
	}
	if old := o.cursors[slot]; old != nil {
		closeBody(old.body)
	}
	o.cursors[slot] = nil
	c, err := o.get(off, max(need, o.s.cfg.ReadWindow))
	if err != nil {
		if errors.Is(err, usererr.ErrNotFound) {
			return nil, usererr.Wrap(usererr.DataLoss, "STORED_OBJECT_MISSING", "stored object is missing", err)
		}
		return nil, err
	}
	o.cursors[slot] = c
	return c, nil
}

// get sends a GET for [off, off+n) (cut at the object's end) and learns the object's size
// from the response's Content-Range.
func (o *object) get(off, n int64) (*cursor, error) {
	end := off + n
	if o.size >= 0 {
		end = min(end, o.size)
	}
	body, hdr, err := o.s.rangeGet(o.ctx, o.key, off, end)
	if errors.Is(err, errRangeNotSatisfiable) {
		if off == 0 && o.size < 0 {
			// No range of an empty object exists, so S3 answers a GET of its start with 416:
			// the object is there and holds nothing. It is an object of size 0, which the
			// caller refuses as damaged (DataLoss) — never a store that is down, which a
			// client would retry for ever.
			o.size = 0
			return &cursor{body: http.NoBody}, nil
		}
		// The object now ends before a byte it had when it was opened.
		return nil, errObjectChanged
	}
	if err != nil {
		return nil, err
	}
	_, _, total, err := parseContentRange(hdr.Get("Content-Range"))
	if err != nil {
		closeBody(body)
		return nil, unavailable("get object", err)
	}
	if o.size < 0 {
		o.size = total
	} else if total != o.size {
		closeBody(body)
		return nil, errObjectChanged
	}
	return &cursor{body: body, pos: off, end: min(end, total)}, nil
}

// rangeGet sends a GET for [off, end) and returns the response body and headers.
func (s *Store) rangeGet(ctx context.Context, key string, off, end int64) (io.ReadCloser, http.Header, error) {
	opts := minio.GetObjectOptions{}
	if err := opts.SetRange(off, end-1); err != nil {
		return nil, nil, fmt.Errorf("s3store: range: %w", err)
	}
	// Core.GetObject returns the response body itself: one request per window.
	body, _, hdr, err := minio.Core{Client: s.c}.GetObject(ctx, s.cfg.Bucket, key, opts)
	if err != nil {
		if isNotFound(err) {
			return nil, nil, errObjectNotFound
		}
		if r := minio.ToErrorResponse(err); r.StatusCode == http.StatusRequestedRangeNotSatisfiable || r.Code == "InvalidRange" {
			return nil, nil, errRangeNotSatisfiable
		}
		return nil, nil, unavailable("get object", err)
	}
	return body, hdr, nil
}

// closeBody releases a range GET's response. The body is only read from, so a failed close
// loses nothing; it only means the connection is not reused.
func closeBody(body io.ReadCloser) { _ = body.Close() }

// parseContentRange parses "bytes first-last/complete".
func parseContentRange(contentRange string) (first, last, total int64, err error) {
	bad := fmt.Errorf("bad Content-Range %q", contentRange)
	spec, ok := strings.CutPrefix(contentRange, "bytes ")
	if !ok {
		return 0, 0, 0, bad
	}
	span, size, ok := strings.Cut(spec, "/")
	if !ok {
		return 0, 0, 0, bad
	}
	a, b, ok := strings.Cut(span, "-")
	if !ok {
		return 0, 0, 0, bad
	}
	first, err1 := strconv.ParseInt(a, 10, 64)
	last, err2 := strconv.ParseInt(b, 10, 64)
	total, err3 := strconv.ParseInt(size, 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || first < 0 || last < first || total <= last {
		return 0, 0, 0, bad
	}
	return first, last, total, nil
}

func (o *object) drop(c *cursor) {
	for i, x := range o.cursors {
		if x == c {
			closeBody(x.body)
			o.cursors[i] = nil
		}
	}
}

// Close releases the open responses.
func (o *object) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, c := range o.cursors {
		if c != nil {
			closeBody(c.body)
			o.cursors[i] = nil
		}
	}
	o.tail = nil
	return nil
}

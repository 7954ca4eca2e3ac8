package crypto

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

const (
	streamVersion1 = 0x01
	// StreamHeaderSize is the length of a version-1 stream header.
	StreamHeaderSize = 1 + 4 + streamSaltSize + streamPrefixSize
	// DefaultSegmentSize is the plaintext bytes per segment of new streams: 64 KiB bounds the
	// memory of a reader or writer and keeps the expansion at 0.0244%.
	DefaultSegmentSize = 64 << 10
	// MinSegmentSize is the smallest segment size a stream header may declare.
	MinSegmentSize = 64
	// MaxSegmentSize is the largest segment size a stream header may declare, so a hostile
	// header cannot make a reader allocate without limit.
	MaxSegmentSize = 1 << 20

	streamSaltSize   = 32
	streamPrefixSize = 7
	streamTagSize    = 16
	streamKeyLabel   = "securemsg stream v1"
	maxSegments      = math.MaxUint32 + 1 // the counter is 32 bits
)

// errClosed is returned by Write after Close.
var errClosed = errors.New("crypto: write to closed stream")

// streamHeader is the parsed form of a stream header.
type streamHeader struct {
	segSize int
	salt    [streamSaltSize]byte
	prefix  [streamPrefixSize]byte
}

func (h *streamHeader) marshal() []byte {
	b := make([]byte, StreamHeaderSize)
	b[0] = streamVersion1
	binary.BigEndian.PutUint32(b[1:5], uint32(h.segSize)) //nolint:gosec // G115: newStreamWriter and parseStreamHeader keep segSize within [MinSegmentSize, MaxSegmentSize]
	copy(b[5:5+streamSaltSize], h.salt[:])
	copy(b[5+streamSaltSize:], h.prefix[:])
	return b
}

// parseStreamHeader checks a header's layout and bounds; authenticity follows from the key
// derivation, which covers every header byte.
func parseStreamHeader(b []byte) (streamHeader, error) {
	var h streamHeader
	if len(b) < 1 {
		return h, fmt.Errorf("empty stream: %w", ErrNotAuthentic)
	}
	if b[0] != streamVersion1 {
		return h, fmt.Errorf("stream version %d: %w", b[0], ErrUnsupportedVersion)
	}
	if len(b) < StreamHeaderSize {
		return h, fmt.Errorf("short stream header: %w", ErrNotAuthentic)
	}
	seg := binary.BigEndian.Uint32(b[1:5])
	if seg < MinSegmentSize || seg > MaxSegmentSize {
		return h, fmt.Errorf("stream segment size out of bounds: %w", ErrNotAuthentic)
	}
	h.segSize = int(seg)
	copy(h.salt[:], b[5:5+streamSaltSize])
	copy(h.prefix[:], b[5+streamSaltSize:StreamHeaderSize])
	return h, nil
}

// deriveStreamAEAD derives the per-object segment key from the DEK, the whole header (salt
// included) and the caller's associated data.
func deriveStreamAEAD(dek, header, aad []byte) (cipher.AEAD, error) {
	if len(dek) != KeySize {
		return nil, ErrInvalidKey
	}
	info := make([]byte, 0, len(streamKeyLabel)+len(header)+len(aad))
	info = append(append(append(info, streamKeyLabel...), header...), aad...)
	key, err := hkdf.Key(sha256.New, dek, header[5:5+streamSaltSize], string(info), KeySize)
	if err != nil {
		return nil, fmt.Errorf("crypto: derive stream key: %w", err)
	}
	aead, err := newGCM(key)
	clear(key)
	return aead, err
}

func segmentNonce(dst *[12]byte, prefix *[streamPrefixSize]byte, index uint64, last bool) {
	copy(dst[:streamPrefixSize], prefix[:])
	// Callers keep index below maxSegments (2^32): sealSegment refuses a further segment and
	// layoutFor refuses a longer stream, so the 32-bit counter never wraps.
	binary.BigEndian.PutUint32(dst[streamPrefixSize:11], uint32(index)) //nolint:gosec // G115: bounded by maxSegments, see above
	dst[11] = 0
	if last {
		dst[11] = 1
	}
}

// StreamWriter encrypts a blob as it is written, one segment at a time, holding at most one
// segment of plaintext and one of ciphertext in memory whatever the object's size. Close must
// be called: it seals the last segment. It is not safe for concurrent use.
type StreamWriter struct {
	dst     io.Writer
	aead    cipher.AEAD
	prefix  [streamPrefixSize]byte
	nonce   [12]byte
	segSize int
	buf     []byte // pending plaintext, never more than one segment
	out     []byte // reused ciphertext buffer
	seg     uint64
	err     error
	closed  bool
}

// NewStreamWriter writes the stream header to dst and returns a writer that seals what it is
// given under a fresh per-object key derived from dek, bound to aad, in 64 KiB segments.
func NewStreamWriter(dst io.Writer, dek, aad []byte) (*StreamWriter, error) {
	return newStreamWriter(dst, dek, aad, DefaultSegmentSize, rand.Reader)
}

// NewStreamWriterSize is NewStreamWriter with another segment size, within
// [MinSegmentSize, MaxSegmentSize]; readers take the size from the header.
func NewStreamWriterSize(dst io.Writer, dek, aad []byte, segmentSize int) (*StreamWriter, error) {
	return newStreamWriter(dst, dek, aad, segmentSize, rand.Reader)
}

func newStreamWriter(dst io.Writer, dek, aad []byte, segSize int, rnd io.Reader) (*StreamWriter, error) {
	if segSize < MinSegmentSize || segSize > MaxSegmentSize {
		return nil, fmt.Errorf("crypto: segment size %d out of bounds", segSize)
	}
	h := streamHeader{segSize: segSize}
	if _, err := io.ReadFull(rnd, h.salt[:]); err != nil {
		return nil, fmt.Errorf("crypto: read salt: %w", err)
	}
	if _, err := io.ReadFull(rnd, h.prefix[:]); err != nil {
		return nil, fmt.Errorf("crypto: read nonce prefix: %w", err)
	}
	header := h.marshal()
	aead, err := deriveStreamAEAD(dek, header, aad)
	if err != nil {
		return nil, err
	}
	if _, err := dst.Write(header); err != nil {
		return nil, fmt.Errorf("crypto: write stream header: %w", err)
	}
	return &StreamWriter{
		dst:     dst,
		aead:    aead,
		prefix:  h.prefix,
		segSize: segSize,
		buf:     make([]byte, 0, segSize),
		out:     make([]byte, 0, segSize+streamTagSize),
	}, nil
}

// Write encrypts p. A full segment is sealed only once more data arrives, because the last
// segment must carry the last-segment flag and only Close knows which one that is.
func (w *StreamWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.closed {
		return 0, errClosed
	}
	n := 0
	for len(p) > 0 {
		if len(w.buf) == w.segSize {
			if err := w.sealSegment(w.buf, false); err != nil {
				return n, err
			}
			w.buf = w.buf[:0]
		}
		if len(w.buf) == 0 && len(p) > w.segSize {
			// More than a segment is at hand, so this one is not the last: seal it straight from
			// the caller's slice and skip the copy into buf.
			if err := w.sealSegment(p[:w.segSize], false); err != nil {
				return n, err
			}
			p = p[w.segSize:]
			n += w.segSize
			continue
		}
		k := copy(w.buf[len(w.buf):w.segSize], p)
		w.buf = w.buf[:len(w.buf)+k]
		p = p[k:]
		n += k
	}
	return n, nil
}

func (w *StreamWriter) sealSegment(pt []byte, last bool) error {
	if w.seg >= maxSegments {
		w.err = errors.New("crypto: stream too long")
		return w.err
	}
	segmentNonce(&w.nonce, &w.prefix, w.seg, last)
	w.out = w.aead.Seal(w.out[:0], w.nonce[:], pt, nil)
	if _, err := w.dst.Write(w.out); err != nil {
		w.err = fmt.Errorf("crypto: write segment: %w", err)
		return w.err
	}
	w.seg++
	return nil
}

// Close seals the last segment (an empty one for an empty object). It does not close the
// underlying writer. Calling it again returns nil.
func (w *StreamWriter) Close() error {
	if w.closed {
		return nil
	}
	if w.err != nil {
		return w.err
	}
	w.closed = true
	err := w.sealSegment(w.buf, true)
	clear(w.buf[:cap(w.buf)])
	w.buf = w.buf[:0]
	return err
}

// streamLayout is where the segments of a stream of a given total size lie.
type streamLayout struct {
	segSize   int64 // plaintext bytes per full segment
	nseg      int64
	lastCt    int64 // ciphertext bytes of the last segment, tag included
	plainSize int64
}

func layoutFor(ciphertextSize int64, segSize int) (streamLayout, error) {
	body := ciphertextSize - StreamHeaderSize
	if body < streamTagSize {
		return streamLayout{}, fmt.Errorf("stream too short: %w", ErrNotAuthentic)
	}
	full := int64(segSize) + streamTagSize
	nseg := (body + full - 1) / full
	last := body - (nseg-1)*full
	// A writer never emits an empty last segment after full ones, nor a segment shorter than a
	// tag; such sizes can only come from truncation or appending.
	if last < streamTagSize || (nseg > 1 && last == streamTagSize) || nseg > maxSegments {
		return streamLayout{}, fmt.Errorf("stream size does not match its segments: %w", ErrNotAuthentic)
	}
	return streamLayout{segSize: int64(segSize), nseg: nseg, lastCt: last, plainSize: body - nseg*streamTagSize}, nil
}

// CiphertextSize is the size of the stream NewStreamWriter produces for plaintextSize bytes.
func CiphertextSize(plaintextSize int64) int64 {
	return ciphertextSizeFor(plaintextSize, DefaultSegmentSize)
}

func ciphertextSizeFor(plaintextSize int64, segSize int) int64 {
	nseg := max(1, (plaintextSize+int64(segSize)-1)/int64(segSize))
	return StreamHeaderSize + plaintextSize + nseg*streamTagSize
}

// PlaintextSize is the plaintext size of a stream of ciphertextSize bytes written with the
// default segment size, or ErrNotAuthentic when no such stream exists.
func PlaintextSize(ciphertextSize int64) (int64, error) {
	l, err := layoutFor(ciphertextSize, DefaultSegmentSize)
	return l.plainSize, err
}

// StreamReader decrypts a stream from an io.ReaderAt (a file, or S3 range GETs), one segment
// at a time, reading and authenticating only the segments it needs. It implements io.Reader,
// io.Seeker and io.WriterTo. It is not safe for concurrent use; Range gives independent
// readers over the same object.
type StreamReader struct {
	src    io.ReaderAt
	aead   cipher.AEAD
	prefix [streamPrefixSize]byte
	layout streamLayout
	pos    int64
	ct     []byte // reused buffer; after a successful open its prefix holds cur's plaintext
	plain  []byte
	cur    int64 // index of the segment in plain, or -1
	nonce  [12]byte
}

// NewStreamReader opens the stream of ciphertextSize bytes in src, sealed under dek and aad. It
// reads the header and authenticates the last segment before returning, so that truncation or
// appended data is caught at once and Size can be trusted.
func NewStreamReader(src io.ReaderAt, ciphertextSize int64, dek, aad []byte) (*StreamReader, error) {
	var hdr [StreamHeaderSize]byte
	if ciphertextSize < StreamHeaderSize {
		return nil, fmt.Errorf("stream too short: %w", ErrNotAuthentic)
	}
	if err := readFullAt(src, hdr[:], 0); err != nil {
		return nil, err
	}
	h, err := parseStreamHeader(hdr[:])
	if err != nil {
		return nil, err
	}
	layout, err := layoutFor(ciphertextSize, h.segSize)
	if err != nil {
		return nil, err
	}
	aead, err := deriveStreamAEAD(dek, hdr[:], aad)
	if err != nil {
		return nil, err
	}
	r := &StreamReader{
		src:    src,
		aead:   aead,
		prefix: h.prefix,
		layout: layout,
		ct:     make([]byte, h.segSize+streamTagSize),
		cur:    -1,
	}
	if err := r.loadSegment(layout.nseg - 1); err != nil {
		return nil, err
	}
	return r, nil
}

// readFullAt reads len(p) bytes at off; running out of data means the stream was truncated.
func readFullAt(src io.ReaderAt, p []byte, off int64) error {
	n, err := src.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("stream truncated: %w", ErrNotAuthentic)
	}
	return fmt.Errorf("crypto: read stream: %w", err)
}

// loadSegment reads and authenticates segment i into r.plain.
func (r *StreamReader) loadSegment(i int64) error {
	if i == r.cur {
		return nil
	}
	r.cur, r.plain = -1, nil
	full := r.layout.segSize + streamTagSize
	n := full
	last := i == r.layout.nseg-1
	if last {
		n = r.layout.lastCt
	}
	ct := r.ct[:n]
	if err := readFullAt(r.src, ct, StreamHeaderSize+i*full); err != nil {
		return err
	}
	segmentNonce(&r.nonce, &r.prefix, uint64(i), last) //nolint:gosec // G115: i is a segment index in [0, nseg), never negative
	pt, err := r.aead.Open(ct[:0], r.nonce[:], ct, nil)
	if err != nil {
		return fmt.Errorf("segment %d: %w", i, ErrNotAuthentic)
	}
	r.cur, r.plain = i, pt
	return nil
}

// Size is the plaintext size, authenticated when the reader was opened.
func (r *StreamReader) Size() int64 { return r.layout.plainSize }

// Read reads plaintext from the current position. Only authenticated bytes are returned.
func (r *StreamReader) Read(p []byte) (int, error) {
	if r.pos >= r.layout.plainSize {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	i := r.pos / r.layout.segSize
	if err := r.loadSegment(i); err != nil {
		return 0, err
	}
	n := copy(p, r.plain[r.pos-i*r.layout.segSize:])
	r.pos += int64(n)
	return n, nil
}

// WriteTo writes the rest of the plaintext to w segment by segment, without an extra copy;
// io.Copy uses it. It stops at the first segment that fails authentication.
func (r *StreamReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for r.pos < r.layout.plainSize {
		i := r.pos / r.layout.segSize
		if err := r.loadSegment(i); err != nil {
			return total, err
		}
		n, err := w.Write(r.plain[r.pos-i*r.layout.segSize:])
		total += int64(n)
		r.pos += int64(n)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// Seek sets the position of the next Read, as io.Seeker; io.SeekEnd is relative to Size.
func (r *StreamReader) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = r.pos + offset
	case io.SeekEnd:
		abs = r.layout.plainSize + offset
	default:
		return 0, errors.New("crypto: invalid whence")
	}
	if abs < 0 {
		return 0, errors.New("crypto: negative position")
	}
	r.pos = abs
	return abs, nil
}

// Range returns a reader of the plaintext bytes [offset, offset+length), clamped to Size,
// that reads and decrypts only the segments the range touches. It is independent of r (its
// own position and buffer) and shares no mutable state with it.
func (r *StreamReader) Range(offset, length int64) (io.Reader, error) {
	if offset < 0 || length < 0 || offset > r.layout.plainSize {
		return nil, fmt.Errorf("crypto: range [%d,+%d) outside a %d-byte object", offset, length, r.layout.plainSize)
	}
	rr := &StreamReader{
		src:    r.src,
		aead:   r.aead, // cipher.AEAD from crypto/cipher is safe for concurrent use
		prefix: r.prefix,
		layout: r.layout,
		pos:    offset,
		ct:     make([]byte, len(r.ct)),
		cur:    -1,
	}
	return io.LimitReader(rr, min(length, r.layout.plainSize-offset)), nil
}

// OpenRange opens the stream in src and returns a reader of plaintext [offset, offset+length),
// for ranged downloads: it reads the header, the last segment (to authenticate the size) and
// the segments the range touches.
func OpenRange(src io.ReaderAt, ciphertextSize int64, dek, aad []byte, offset, length int64) (io.Reader, error) {
	r, err := NewStreamReader(src, ciphertextSize, dek, aad)
	if err != nil {
		return nil, err
	}
	return r.Range(offset, length)
}

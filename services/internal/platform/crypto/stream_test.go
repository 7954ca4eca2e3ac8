package crypto

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	mrand "math/rand/v2"
	"testing"
	"testing/iotest"
)

func randomKey(t testing.TB) []byte {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func pattern(n int) []byte {
	b := make([]byte, n)
	r := mrand.New(mrand.NewPCG(uint64(n), 7))
	for i := 0; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(i)
	}
	return b
}

// sealStream seals pt in writes of chunk bytes (all at once when chunk is 0).
func sealStream(t testing.TB, key, aad, pt []byte, segSize, chunk int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewStreamWriterSize(&buf, key, aad, segSize)
	if err != nil {
		t.Fatal(err)
	}
	if chunk == 0 {
		chunk = max(len(pt), 1)
	}
	for p := pt; len(p) > 0; {
		n := min(chunk, len(p))
		if m, err := w.Write(p[:n]); err != nil || m != n {
			t.Fatalf("Write = %d, %v; want %d, nil", m, err, n)
		}
		p = p[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func openAll(ct, key, aad []byte) ([]byte, error) {
	r, err := NewStreamReader(bytes.NewReader(ct), int64(len(ct)), key, aad)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	_, err = io.Copy(&out, r)
	return out.Bytes(), err
}

func TestStreamRoundTrip(t *testing.T) {
	t.Parallel()
	const S = DefaultSegmentSize
	key := randomKey(t)
	aad := AttachmentAAD("thread-1", "att-1")
	sizes := []struct {
		name string
		n    int
	}{
		{"0 bytes", 0}, {"1 byte", 1}, {"segment-1", S - 1}, {"segment", S}, {"segment+1", S + 1},
		{"3 segments", 3 * S}, {"3 segments+7", 3*S + 7}, {"5 MiB+3", 5<<20 + 3},
	}
	for _, sz := range sizes {
		t.Run(sz.name, func(t *testing.T) {
			t.Parallel()
			pt := pattern(sz.n)
			for _, chunk := range []int{0, 1000, S, S + 1} {
				ct := sealStream(t, key, aad, pt, S, chunk)
				if got, want := int64(len(ct)), CiphertextSize(int64(sz.n)); got != want {
					t.Fatalf("len(ciphertext) = %d, want CiphertextSize(%d) = %d", got, sz.n, want)
				}
				if got, err := PlaintextSize(int64(len(ct))); err != nil || got != int64(sz.n) {
					t.Fatalf("PlaintextSize(%d) = %d, %v; want %d", len(ct), got, err, sz.n)
				}
				got, err := openAll(ct, key, aad)
				if err != nil || !bytes.Equal(got, pt) {
					t.Fatalf("open (chunk %d) = %d bytes, %v; want %d bytes", chunk, len(got), err, len(pt))
				}
			}
			// A reader that hands out small pieces still sees the same bytes.
			ct := sealStream(t, key, aad, pt, S, 0)
			r, err := NewStreamReader(bytes.NewReader(ct), int64(len(ct)), key, aad)
			if err != nil {
				t.Fatal(err)
			}
			if err := iotest.TestReader(io.LimitReader(r, int64(len(pt))), pt); err != nil && sz.n < 1<<20 {
				t.Fatalf("iotest.TestReader: %v", err)
			}
		})
	}
}

func TestStreamExpansion(t *testing.T) {
	t.Parallel()
	for _, n := range []int64{1 << 20, 64 << 20, 1 << 30} {
		over := float64(CiphertextSize(n)-n-StreamHeaderSize) / float64(n)
		if over > 0.001 {
			t.Errorf("expansion of %d bytes = %.4f%%, want <= 0.1%%", n, over*100)
		}
	}
	for _, bad := range []int64{-1, 0, StreamHeaderSize, StreamHeaderSize + 15,
		StreamHeaderSize + DefaultSegmentSize + 16 + 16, StreamHeaderSize + DefaultSegmentSize + 16 + 3} {
		if _, err := PlaintextSize(bad); !errors.Is(err, ErrNotAuthentic) {
			t.Errorf("PlaintextSize(%d) error = %v, want ErrNotAuthentic", bad, err)
		}
	}
}

func TestStreamSeekAndRange(t *testing.T) {
	t.Parallel()
	const S = 256
	key := randomKey(t)
	pt := pattern(10*S + 17)
	ct := sealStream(t, key, nil, pt, S, 0)
	r, err := NewStreamReader(bytes.NewReader(ct), int64(len(ct)), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Size() != int64(len(pt)) {
		t.Fatalf("Size() = %d, want %d", r.Size(), len(pt))
	}
	tests := []struct {
		name        string
		off, length int64
	}{
		{"start", 0, 10}, {"inside one segment", 300, 50}, {"across a boundary", S - 3, 6},
		{"several segments", S + 1, 4 * S}, {"tail", int64(len(pt)) - 5, 5},
		{"past the end is clamped", int64(len(pt)) - 5, 100}, {"empty at end", int64(len(pt)), 10},
		{"whole", 0, int64(len(pt))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := pt[tc.off:min(tc.off+tc.length, int64(len(pt)))]
			rr, err := r.Range(tc.off, tc.length)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rr)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("Range(%d, %d) = %d bytes, %v; want %d bytes", tc.off, tc.length, len(got), err, len(want))
			}
			if _, err := r.Seek(tc.off, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			got, err = io.ReadAll(io.LimitReader(r, tc.length))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("Seek(%d)+Read(%d) = %d bytes, %v; want %d bytes", tc.off, tc.length, len(got), err, len(want))
			}
		})
	}
	if pos, err := r.Seek(-3, io.SeekEnd); err != nil || pos != int64(len(pt))-3 {
		t.Fatalf("Seek(-3, SeekEnd) = %d, %v", pos, err)
	}
	if _, err := r.Range(int64(len(pt))+1, 1); err == nil {
		t.Fatal("Range past the end: error = nil, want an error")
	}
}

// countingReaderAt counts the bytes read, to show a range read touches only its segments.
type countingReaderAt struct {
	r     io.ReaderAt
	bytes int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.bytes += int64(n)
	return n, err
}

func TestStreamRangeReadsOnlyTouchedSegments(t *testing.T) {
	t.Parallel()
	key := randomKey(t)
	pt := pattern(40 * DefaultSegmentSize)
	ct := sealStream(t, key, nil, pt, DefaultSegmentSize, 0)
	src := &countingReaderAt{r: bytes.NewReader(ct)}
	rr, err := OpenRange(src, int64(len(ct)), key, nil, 10*DefaultSegmentSize+5, 100)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rr)
	if err != nil || !bytes.Equal(got, pt[10*DefaultSegmentSize+5:][:100]) {
		t.Fatalf("OpenRange = %d bytes, %v", len(got), err)
	}
	// Header + last segment (verified at open) + the one segment the range touches.
	if want := int64(StreamHeaderSize + 2*(DefaultSegmentSize+16)); src.bytes != want {
		t.Fatalf("bytes read for a 100-byte range = %d, want %d", src.bytes, want)
	}
}

func TestStreamTampering(t *testing.T) {
	t.Parallel()
	const S = 64
	key := randomKey(t)
	aad := AttachmentAAD("t", "a")
	pt := pattern(3*S + 10) // 4 segments, the last one short
	ct := sealStream(t, key, aad, pt, S, 0)
	other := sealStream(t, key, aad, pattern(3*S+10), S, 0)
	full := S + 16
	seg := func(i int) []byte { // ciphertext of segment i
		start := StreamHeaderSize + i*full
		return ct[start:min(start+full, len(ct))]
	}
	hdr := ct[:StreamHeaderSize]
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

	tests := []struct {
		name string
		ct   []byte
		key  []byte
		aad  []byte
	}{
		{"truncated at a segment boundary", ct[:StreamHeaderSize+3*full], key, aad},
		{"truncated inside a segment", ct[:len(ct)-3], key, aad},
		{"only the header", hdr, key, aad},
		{"segments swapped", join(hdr, seg(1), seg(0), seg(2), seg(3)), key, aad},
		{"segment duplicated", join(hdr, seg(0), seg(0), seg(1), seg(2), seg(3)), key, aad},
		{"segment dropped", join(hdr, seg(0), seg(2), seg(3)), key, aad},
		{"segment appended", join(ct, seg(1)), key, aad},
		{"last segment appended again", join(ct, seg(3)), key, aad},
		{"bytes appended", join(ct, []byte{0}), key, aad},
		{"header of another object", join(other[:StreamHeaderSize], ct[StreamHeaderSize:]), key, aad},
		{"segment from another object", join(hdr, other[StreamHeaderSize:StreamHeaderSize+full], seg(1), seg(2), seg(3)), key, aad},
		{"segment size changed", join(hdr[:1], []byte{0, 0, 0, 128}, hdr[5:], ct[StreamHeaderSize:]), key, aad},
		{"wrong key", ct, randomKey(t), aad},
		{"wrong aad", ct, key, AttachmentAAD("t", "b")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := openAll(tc.ct, tc.key, tc.aad)
			if !errors.Is(err, ErrNotAuthentic) {
				t.Fatalf("open = %d bytes, %v; want ErrNotAuthentic", len(got), err)
			}
			// What was released is authentic plaintext, and only whole verified segments.
			if !bytes.HasPrefix(pt, got) || len(got)%S != 0 {
				t.Fatalf("open released %d bytes that are not whole verified segments of the original", len(got))
			}
		})
	}
	// Every single bit flip anywhere is detected when the whole object is read.
	for i := range len(ct) * 8 {
		bad := bytes.Clone(ct)
		bad[i/8] ^= 1 << (i % 8)
		if _, err := openAll(bad, key, aad); err == nil {
			t.Fatalf("open(bit %d flipped) error = nil, want ErrNotAuthentic", i)
		}
	}
	if _, err := openAll(join([]byte{2}, ct[1:]), key, aad); !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("open(version 2) error = %v, want ErrUnsupportedVersion", err)
	}
}

func TestStreamReleasesNothingPastTheLastVerifiedSegment(t *testing.T) {
	t.Parallel()
	const S = 128
	key := randomKey(t)
	pt := pattern(5 * S)
	ct := sealStream(t, key, nil, pt, S, 0)
	ct[StreamHeaderSize+2*(S+16)+7] ^= 0x80 // corrupt segment 2
	r, err := NewStreamReader(bytes.NewReader(ct), int64(len(ct)), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if !errors.Is(err, ErrNotAuthentic) || !bytes.Equal(got, pt[:2*S]) {
		t.Fatalf("ReadAll = %d bytes, %v; want the %d bytes of segments 0-1 and ErrNotAuthentic", len(got), err, 2*S)
	}
}

func TestStreamWriterErrors(t *testing.T) {
	t.Parallel()
	if _, err := NewStreamWriter(io.Discard, make([]byte, 31), nil); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("NewStreamWriter(31-byte key) error = %v, want ErrInvalidKey", err)
	}
	if _, err := NewStreamWriterSize(io.Discard, randomKey(t), nil, 8); err == nil {
		t.Error("NewStreamWriterSize(8) error = nil, want an error")
	}
	w, err := NewStreamWriter(io.Discard, randomKey(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Error("Write after Close: error = nil, want an error")
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

// knownStream is the stream known-answer vector: fixed key, salt and prefix from
// countingReader, 64-byte segments, 150 bytes of plaintext.
func knownStream(t testing.TB) (ct, aad, pt []byte) {
	aad = AttachmentAAD("thread-1", "attachment-1")
	pt = make([]byte, 150)
	for i := range pt {
		pt[i] = byte(i)
	}
	var buf bytes.Buffer
	w, err := newStreamWriter(&buf, fixedKey(), aad, 64, &countingReader{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(pt); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), aad, pt
}

func TestStreamKnownAnswer(t *testing.T) {
	t.Parallel()
	ct, aad, pt := knownStream(t)
	golden(t, "stream_v1.golden", ct)
	got, err := openAll(ct, fixedKey(), aad)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("open(golden) = %x, %v", got, err)
	}
}

func FuzzParseStreamHeader(f *testing.F) {
	ct, _, _ := knownStream(f)
	f.Add(ct[:StreamHeaderSize])
	f.Add([]byte{1, 0, 0, 0, 64})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := parseStreamHeader(data)
		if err != nil {
			return
		}
		if h.segSize < MinSegmentSize || h.segSize > MaxSegmentSize {
			t.Fatalf("parseStreamHeader accepted segment size %d", h.segSize)
		}
		if got := h.marshal(); !bytes.Equal(got, data[:StreamHeaderSize]) {
			t.Fatalf("marshal(parse(%x)) = %x", data[:StreamHeaderSize], got)
		}
	})
}

func FuzzOpenStream(f *testing.F) {
	ct, aad, pt := knownStream(f)
	key := fixedKey()
	for _, seed := range [][]byte{ct, ct[:len(ct)-1], ct[:StreamHeaderSize], {}, append(bytes.Clone(ct), 1)} {
		f.Add(seed, int64(0), int64(1000))
	}
	f.Add(ct, int64(70), int64(20))
	f.Fuzz(func(t *testing.T, data []byte, off, length int64) {
		r, err := NewStreamReader(bytes.NewReader(data), int64(len(data)), key, aad)
		if err != nil {
			return
		}
		got, err := io.ReadAll(r)
		if err == nil && !bytes.Equal(data, ct) {
			t.Fatalf("tampered stream %x opened without error", data)
		}
		if !bytes.HasPrefix(pt, got) {
			t.Fatalf("open released bytes that are not the original plaintext")
		}
		if off >= 0 && length >= 0 && off <= r.Size() {
			rr, err := r.Range(off, length)
			if err != nil {
				t.Fatalf("Range(%d, %d): %v", off, length, err)
			}
			got, _ := io.ReadAll(rr)
			if !bytes.Equal(got, pt[off:off+int64(len(got))]) {
				t.Fatalf("Range(%d, %d) released bytes that are not the original plaintext", off, length)
			}
		}
	})
}

func TestWriteStreamFuzzSeeds(t *testing.T) {
	ct, _, _ := knownStream(t)
	writeSeeds(t, "FuzzParseStreamHeader", ct[:StreamHeaderSize], []byte{1, 0, 0, 0, 64}, []byte{})
	if !*update {
		return
	}
	// FuzzOpenStream takes (data, off, length); write its corpus by hand.
	writeStreamSeeds(t, ct)
}

package crypto

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/securemsg/securemsg/services/internal/testkit/benchkit"
)

// BenchmarkStream measures streaming seal and open against raw AES-GCM (one crypto/cipher Seal
// or Open over the whole object, into a reused buffer) on the same bytes, alternating the two in
// every iteration so both see the same machine state. It reports both throughputs and
// a ratio = stream throughput / raw throughput (1.0 = as fast as raw; the goal is >= 0.9).
//
//	go test -run '^$' -bench BenchmarkStream -benchtime 20x ./services/internal/platform/crypto/
func BenchmarkStream(b *testing.B) {
	for _, size := range []int{1 << 20, 64 << 20} {
		key := randomKey(b)
		pt := pattern(size)
		block, _ := aes.NewCipher(key)
		gcm, _ := cipher.NewGCM(block)
		nonce := make([]byte, 12)
		rawCt := gcm.Seal(nil, nonce, pt, nil)
		rawBuf := make([]byte, 0, len(rawCt))
		streamCt := sealStream(b, key, nil, pt, DefaultSegmentSize, 0)
		name := fmt.Sprintf("%dMiB", size>>20)
		openStream := benchStreamOpener(b, key, streamCt)

		b.Run("seal/"+name, func(b *testing.B) {
			benchAgainstRaw(b, size,
				func() { rawBuf = gcm.Seal(rawBuf[:0], nonce, pt, nil) },
				func() {
					w, err := NewStreamWriter(io.Discard, key, nil)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := w.Write(pt); err != nil {
						b.Fatal(err)
					}
					if err := w.Close(); err != nil {
						b.Fatal(err)
					}
				})
		})
		b.Run("open/"+name, func(b *testing.B) {
			benchAgainstRaw(b, size,
				func() {
					var err error
					if rawBuf, err = gcm.Open(rawBuf[:0], nonce, rawCt, nil); err != nil {
						b.Fatal(err)
					}
				},
				openStream)
		})
		// The stream reader must copy each segment out of its io.ReaderAt (as it will from S3);
		// this variant gives raw GCM the same copy, so the ratio isolates the format's own cost.
		b.Run("open-from-readerat/"+name, func(b *testing.B) {
			rawSrc := bytes.NewReader(rawCt)
			ctBuf := make([]byte, len(rawCt))
			benchAgainstRaw(b, size,
				func() {
					if _, err := rawSrc.ReadAt(ctBuf, 0); err != nil {
						b.Fatal(err)
					}
					var err error
					if rawBuf, err = gcm.Open(rawBuf[:0], nonce, ctBuf, nil); err != nil {
						b.Fatal(err)
					}
				},
				openStream)
		})
	}
}

func benchStreamOpener(b *testing.B, key, streamCt []byte) func() {
	src := bytes.NewReader(streamCt)
	return func() {
		r, err := NewStreamReader(src, int64(len(streamCt)), key, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, r); err != nil {
			b.Fatal(err)
		}
	}
}

// benchAgainstRaw times raw and stream alternately in one loop, so both see the same machine
// state, and reports the stream's throughput beside raw's (no b.SetBytes: its MB/s would mix
// both sides' time).
func benchAgainstRaw(b *testing.B, size int, raw, stream func()) {
	b.ReportAllocs()
	var rawDur, streamDur time.Duration
	n := 0
	for b.Loop() {
		t0 := time.Now()
		raw()
		t1 := time.Now()
		stream()
		streamDur += time.Since(t1)
		rawDur += t1.Sub(t0)
		n++
	}
	mb := float64(size) * float64(n) / 1e6
	benchkit.Compare(b, mb/streamDur.Seconds(), mb/rawDur.Seconds(), "MB/s")
}

// BenchmarkSealRecord measures one message-body-sized record seal.
func BenchmarkSealRecord(b *testing.B) {
	s, err := NewRecordSealer(randomKey(b), "dek")
	if err != nil {
		b.Fatal(err)
	}
	pt := pattern(2048)
	aad := MessageFieldAAD("t", "m", "body")
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.SealRecord(pt, aad); err != nil {
			b.Fatal(err)
		}
	}
}

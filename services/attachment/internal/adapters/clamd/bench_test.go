package clamd_test

import (
	"bytes"
	"crypto/rand"
	"testing"
)

// BenchmarkScan measures an INSTREAM scan of 64 MiB against the real clamd.
func BenchmarkScan(b *testing.B) {
	c := client(b)
	data := make([]byte, 64<<20)
	rand.Read(data)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := c.Scan(b.Context(), bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}

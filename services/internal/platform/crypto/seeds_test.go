package crypto

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func writeStreamSeeds(t *testing.T, ct []byte) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", "FuzzOpenStream")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	seeds := []struct {
		data        []byte
		off, length int64
	}{
		{ct, 0, 1000}, {ct, 70, 20}, {ct[:len(ct)-1], 0, 10}, {append(append([]byte{}, ct...), 1), 0, 10}, {nil, 0, 0},
	}
	for i, s := range seeds {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nint64(%d)\nint64(%d)\n", s.data, s.off, s.length)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

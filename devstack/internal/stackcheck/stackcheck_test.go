package stackcheck

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"os"
	"strings"
	"testing"
)

// These tests talk to the running dev stack (`make up`). A missing dependency skips the test,
// except under CI=true where it fails (the services' testkit follows the same rule; devstack
// cannot import it).
func addr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}

func unavailable(t *testing.T, what string, err error) {
	t.Helper()
	if v := strings.ToLower(os.Getenv("CI")); v == "true" || v == "1" {
		t.Fatalf("%s is not available (CI=true, so this fails): %v", what, err)
	}
	t.Skipf("%s is not available (run `make up`): %v", what, err)
}

func TestEICARIsTheStandardFile(t *testing.T) {
	t.Parallel()
	e := EICAR()
	sum := md5.Sum(e)
	// The size and digest published by eicar.org; the stack's .hdb signature is computed by
	// scripts/stack.sh the same way.
	if got, want := hex.EncodeToString(sum[:]), "44d88612fea8a8f36de82e1278abb02f"; len(e) != 68 || got != want {
		t.Errorf("EICAR() = %d bytes md5 %s, want 68 bytes md5 %s", len(e), got, want)
	}
}

func TestClamdDetectsEICAR(t *testing.T) {
	t.Parallel()
	clamd := addr("SECUREMSG_TEST_CLAMD_ADDR", "127.0.0.1:3310")
	if err := ClamdPing(t.Context(), clamd); err != nil {
		unavailable(t, "clamd", err)
	}
	tests := []struct {
		name      string
		data      []byte
		wantFound bool
	}{
		{name: "EICAR test file", data: EICAR(), wantFound: true},
		{name: "clean text", data: []byte("hello, this is a harmless attachment\n"), wantFound: false},
		{name: "clean 3 MiB", data: bytes.Repeat([]byte{0x5a}, 3<<20), wantFound: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			verdict, err := ClamdScan(t.Context(), clamd, bytes.NewReader(tt.data))
			if err != nil {
				t.Fatalf("ClamdScan() error = %v", err)
			}
			if found := strings.HasSuffix(verdict, " FOUND"); found != tt.wantFound {
				t.Errorf("ClamdScan() = %q, want found=%v", verdict, tt.wantFound)
			}
		})
	}
}

func TestJetStreamEnabled(t *testing.T) {
	t.Parallel()
	url := addr("SECUREMSG_TEST_NATS_URL", "nats://127.0.0.1:4222")
	if err := JetStreamEnabled(t.Context(), url); err != nil {
		if strings.Contains(err.Error(), "connect to NATS") {
			unavailable(t, "NATS", err)
		}
		t.Fatalf("JetStreamEnabled(%s) error = %v", url, err)
	}
}

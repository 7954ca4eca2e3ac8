package supervisor_test

import (
	"bytes"
	"crypto/md5" //nolint:gosec // G501: eicar.org publishes the test file's MD5
	"encoding/hex"
	"strings"
	"testing"

	"github.com/securemsg/securemsg/services/internal/testkit"
	"github.com/securemsg/securemsg/services/internal/testkit/internal/supervisor"
)

// These tests talk to the running dev stack (`make up`); a missing dependency ends them through
// testkit.Unavailable.

func TestEICARIsTheStandardFile(t *testing.T) {
	t.Parallel()
	e := supervisor.EICAR()
	sum := md5.Sum(e) //nolint:gosec // G401: compared with the published digest only
	// The size and digest published by eicar.org; the stack's .hdb signature is computed from
	// the same bytes.
	if got, want := hex.EncodeToString(sum[:]), "44d88612fea8a8f36de82e1278abb02f"; len(e) != 68 || got != want {
		t.Errorf("EICAR() = %d bytes md5 %s, want 68 bytes md5 %s", len(e), got, want)
	}
}

func TestClamdDetectsEICAR(t *testing.T) {
	t.Parallel()
	clamd := testkit.LoadStack().ClamdAddr
	if err := supervisor.ClamdPing(t.Context(), clamd); err != nil {
		testkit.Unavailable(t, "clamd", err)
	}
	tests := []struct {
		name      string
		data      []byte
		wantFound bool
	}{
		{name: "EICAR test file", data: supervisor.EICAR(), wantFound: true},
		{name: "clean text", data: []byte("hello, this is a harmless attachment\n"), wantFound: false},
		{name: "clean 3 MiB", data: bytes.Repeat([]byte{0x5a}, 3<<20), wantFound: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			verdict, err := supervisor.ClamdScan(t.Context(), clamd, bytes.NewReader(tt.data))
			if err != nil {
				t.Fatalf("ClamdScan() error = %v", err)
			}
			if found := strings.HasSuffix(verdict, " FOUND"); found != tt.wantFound {
				t.Errorf("ClamdScan() = %q, want found=%v", verdict, tt.wantFound)
			}
		})
	}
	if err := supervisor.ClamdDetectsEICAR(t.Context(), clamd); err != nil {
		t.Errorf("ClamdDetectsEICAR() = %v", err)
	}
}

func TestJetStreamEnabled(t *testing.T) {
	t.Parallel()
	url := testkit.LoadStack().NATSURL
	if err := supervisor.JetStreamEnabled(t.Context(), url); err != nil {
		if strings.Contains(err.Error(), "connect to NATS") {
			testkit.Unavailable(t, "NATS", err)
		}
		t.Fatalf("JetStreamEnabled(%s) error = %v", url, err)
	}
}

package tlog_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/securemsg/securemsg/services/internal/platform/auditlog/tlog"
)

func TestKeyRingVerify(t *testing.T) {
	t.Parallel()
	pubA, privA, _ := ed25519.GenerateKey(rand.Reader)
	pubB, privB, _ := ed25519.GenerateKey(rand.Reader)
	_, privC, _ := ed25519.GenerateKey(rand.Reader)
	root := make([]byte, 32)
	ring := tlog.NewKeyRing(pubA, pubB)
	tests := []struct {
		name   string
		priv   ed25519.PrivateKey
		wantOK bool
	}{
		{"old key", privA, true},
		{"new key", privB, true},
		{"unknown key", privC, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := ring.Verify(tlog.NewSigner(tt.priv).Sign(5, root, time.Now()))
			if (err == nil) != tt.wantOK || (err != nil && !errors.Is(err, tlog.ErrCheckpoint)) {
				t.Errorf("KeyRing.Verify(%s) = %v, want ok %v", tt.name, err, tt.wantOK)
			}
		})
	}
}

func TestRememberAndLoadPublicKeys(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "trusted")
	pubA, _, _ := ed25519.GenerateKey(rand.Reader)
	pubB, _, _ := ed25519.GenerateKey(rand.Reader)
	for _, p := range []ed25519.PublicKey{pubA, pubB, pubA} { // remembering twice is a no-op
		if err := tlog.RememberPublicKey(dir, p); err != nil {
			t.Fatalf("RememberPublicKey() = %v", err)
		}
	}
	keys, err := tlog.LoadPublicKeys(dir)
	if err != nil || len(keys) != 2 {
		t.Fatalf("LoadPublicKeys(folder) = %d keys, %v; want 2", len(keys), err)
	}
	if _, ok := tlog.NewKeyRing(keys...).Lookup(tlog.KeyID(pubB)); !ok {
		t.Errorf("ring from folder lacks key %s", tlog.KeyID(pubB))
	}
	if _, err := tlog.LoadPublicKeys(filepath.Join(dir, "missing.pem")); err == nil {
		t.Error("LoadPublicKeys(missing file) = nil error, want an error")
	}
}

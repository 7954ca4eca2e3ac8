package grpcserver

import (
	"crypto/x509"
	"os"
	"testing"
	"time"

	"github.com/securemsg/securemsg/services/internal/platform/grpcserver/grpctest"
)

func TestKeyPairReloaderPicksUpRotation(t *testing.T) {
	t.Parallel()
	pki := grpctest.NewPKI(t)
	r, err := newKeyPairReloader(pki.ServerCertFile, pki.ServerKeyFile)
	if err != nil {
		t.Fatalf("newKeyPairReloader() = %v", err)
	}
	first, err := r.get()
	if err != nil {
		t.Fatalf("get() = %v", err)
	}

	// Rotate: write a new pair over the old files, with a later modification time.
	_, certFile, keyFile := pki.Issue(t, "rotated", x509.ExtKeyUsageServerAuth)
	for src, dst := range map[string]string{certFile: pki.ServerCertFile, keyFile: pki.ServerKeyFile} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
		later := time.Now().Add(time.Minute)
		if err := os.Chtimes(dst, later, later); err != nil {
			t.Fatal(err)
		}
	}
	r.mu.Lock()
	r.lastCheck = time.Time{} // skip the re-check interval
	r.mu.Unlock()
	second, err := r.get()
	if err != nil {
		t.Fatalf("get() after rotation = %v", err)
	}
	if first.Leaf.SerialNumber.Cmp(second.Leaf.SerialNumber) == 0 {
		t.Errorf("get() after rotation = serial %v, want a new certificate", second.Leaf.SerialNumber)
	}

	// A half-written rotation keeps serving the last good pair.
	if err := os.WriteFile(pki.ServerKeyFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.lastCheck = time.Time{}
	r.mu.Unlock()
	third, err := r.get()
	if err != nil || third != second {
		t.Errorf("get() with a broken key file = %v, %v; want the previous certificate", third, err)
	}
}

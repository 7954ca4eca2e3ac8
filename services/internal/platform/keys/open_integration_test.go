package keys_test

import (
	"testing"

	"github.com/securemsg/securemsg/services/internal/platform/keys"
	"github.com/securemsg/securemsg/services/internal/testkit"
)

// TestOpenTransitAgainstDevTransit runs the start-up key check against the dev Transit server
// (the same engine code as Vault's): an existing key is only read, never written; a missing one
// is created by a token that may (the dev stack's root token).
func TestOpenTransitAgainstDevTransit(t *testing.T) {
	t.Parallel()
	srv := testkit.StartTransit(t)
	cfg := keys.Config{Addr: srv.Addr(), Token: srv.Token()}
	key := "k-" + testkit.UniqueName(t, "", 40)

	first, err := keys.OpenTransit(t.Context(), cfg, key)
	if err != nil {
		t.Fatalf("OpenTransit with a missing key and a root token: %v", err)
	}
	if got := first.Requests(); got != 2 {
		t.Errorf("first start sent %d requests, want 2 (read: 404, create)", got)
	}
	if info, err := first.ReadKey(t.Context(), key); err != nil || info.LatestVersion != 1 || info.Type != "aes256-gcm96" {
		t.Fatalf("ReadKey after start = %+v, %v; want an aes256-gcm96 key at version 1", info, err)
	}

	again, err := keys.OpenTransit(t.Context(), cfg, key)
	if err != nil {
		t.Fatalf("OpenTransit with the key present: %v", err)
	}
	if got := again.Requests(); got != 1 {
		t.Errorf("start with the key present sent %d requests, want 1 (the read; no write)", got)
	}
}

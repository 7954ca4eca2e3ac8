package e2e_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	vault "github.com/hashicorp/vault/api"
)

// The key-store half of the drill: the calls an operator makes against Vault or OpenBao with
// integrated storage (`vault operator raft snapshot save` / `restore -force`), through the
// vault api client the services use. The dev Transit server answers the same paths.

// newVaultClient is a vault api client for addr with token, reading nothing else from the
// environment that matters (VAULT_ADDR and VAULT_TOKEN of the shared stack are overridden) and
// never retrying: a drill step that fails must fail now, not after backoff.
func newVaultClient(addr, token string) (*vault.Client, error) {
	cfg := vault.DefaultConfig()
	if cfg.Error != nil {
		return nil, fmt.Errorf("vault client config: %w", cfg.Error)
	}
	cfg.Address = addr
	cfg.MaxRetries = 0
	c, err := vault.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("vault client for %s: %w", addr, err)
	}
	c.SetToken(token)
	return c, nil
}

// saveVaultSnapshot is `vault operator raft snapshot save path`. RaftSnapshot itself refuses a
// snapshot whose SHA256SUMS.sealed is missing or empty (one cut off midstream).
func saveVaultSnapshot(ctx context.Context, c *vault.Client, path string) (int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) // key material: owner only
	if err != nil {
		return 0, err
	}
	if err := c.Sys().RaftSnapshotWithContext(ctx, f); err != nil {
		_ = f.Close() // the snapshot already failed; that error is the one to report
		return 0, fmt.Errorf("Sys().RaftSnapshot: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close() // the sync already failed; that error is the one to report
		return 0, err
	}
	info, err := f.Stat()
	if err != nil {
		_ = f.Close() // the stat already failed; that error is the one to report
		return 0, err
	}
	return info.Size(), f.Close()
}

// restoreVaultSnapshot is `vault operator raft snapshot restore -force path`: force, because the
// target is a fresh key store whose seal (unseal keys) is not the one the snapshot was taken
// under, as with a Vault cluster rebuilt after a disaster.
func restoreVaultSnapshot(ctx context.Context, c *vault.Client, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }() // read-only
	if err := c.Sys().RaftSnapshotRestoreWithContext(ctx, f, true); err != nil {
		return fmt.Errorf("Sys().RaftSnapshotRestore(force): %w", err)
	}
	return nil
}

// transitKeyStates reads every key of the transit/ mount as the restore must keep it: its
// versions, its version bounds and its type. The JSON is compared whole across the restore.
func transitKeyStates(ctx context.Context, c *vault.Client) (map[string]string, error) {
	list, err := c.Logical().ListWithContext(ctx, "transit/keys")
	if err != nil {
		return nil, fmt.Errorf("list transit/keys: %w", err)
	}
	out := map[string]string{}
	if list == nil {
		return out, nil // 404: no keys
	}
	names, _ := list.Data["keys"].([]any)
	for _, n := range names {
		name, _ := n.(string)
		s, err := c.Logical().ReadWithContext(ctx, "transit/keys/"+name)
		if err != nil || s == nil {
			return nil, fmt.Errorf("read transit/keys/%s: %v, %w", name, s, err)
		}
		state := map[string]any{}
		for _, f := range []string{"keys", "latest_version", "min_decryption_version", "min_encryption_version", "type", "deletion_allowed", "derived", "exportable"} {
			state[f] = s.Data[f]
		}
		raw, err := json.Marshal(state)
		if err != nil {
			return nil, err
		}
		out[name] = string(raw)
	}
	return out, nil
}

// rotateTransitKeys rotates every key of transit/, so the backed-up data spans key versions
// and the restore has to keep old versions, not just the latest.
func rotateTransitKeys(ctx context.Context, c *vault.Client) ([]string, error) {
	states, err := transitKeyStates(ctx, c)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(states))
	for name := range states {
		if _, err := c.Logical().WriteWithContext(ctx, "transit/keys/"+name+"/rotate", nil); err != nil {
			return nil, fmt.Errorf("rotate %s: %w", name, err)
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return names, nil
}

// wrappedDEK is one stored wrapped data key the drill unwraps on both sides of the restore.
type wrappedDEK struct {
	what, key, wrapped string
}

func (w wrappedDEK) version() string {
	v, _, _ := strings.Cut(strings.TrimPrefix(w.wrapped, "vault:"), ":")
	return v
}

// unwrapFingerprint unwraps w through Transit and returns the SHA-256 of the DEK (the drill
// compares keys, and never holds or prints one longer than this).
func unwrapFingerprint(ctx context.Context, c *vault.Client, w wrappedDEK) ([32]byte, error) {
	s, err := c.Logical().WriteWithContext(ctx, "transit/decrypt/"+w.key, map[string]any{"ciphertext": w.wrapped})
	if err != nil {
		return [32]byte{}, err
	}
	pt, _ := s.Data["plaintext"].(string)
	if pt == "" {
		return [32]byte{}, errors.New("decrypt answered no plaintext")
	}
	return sha256.Sum256([]byte(pt)), nil
}

// diffKeyStates says how got differs from want ("" when equal), naming keys, never material.
func diffKeyStates(want, got map[string]string) string {
	var diffs []string
	for name, w := range want {
		g, ok := got[name]
		switch {
		case !ok:
			diffs = append(diffs, name+" missing")
		case g != w:
			diffs = append(diffs, name+" differs")
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			diffs = append(diffs, name+" unexpected")
		}
	}
	slices.Sort(diffs)
	return strings.Join(diffs, ", ")
}

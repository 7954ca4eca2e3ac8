package tlog

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
)

// KeyRing is a set of trusted checkpoint public keys, looked up by key id. Rotating the
// signing key does not invalidate older checkpoints as long as their key stays in the ring; a
// checkpoint whose key id is not in the ring fails. The zero value is an empty ring; it is
// not safe for concurrent mutation.
type KeyRing struct {
	keys map[string]ed25519.PublicKey
}

// NewKeyRing returns a ring trusting pubs.
func NewKeyRing(pubs ...ed25519.PublicKey) *KeyRing {
	r := &KeyRing{}
	for _, p := range pubs {
		r.Add(p)
	}
	return r
}

// Add trusts pub (adding a key already present is a no-op).
func (r *KeyRing) Add(pub ed25519.PublicKey) {
	if r.keys == nil {
		r.keys = map[string]ed25519.PublicKey{}
	}
	r.keys[KeyID(pub)] = slices.Clone(pub)
}

// Lookup returns the key with id.
func (r *KeyRing) Lookup(id string) (ed25519.PublicKey, bool) {
	if r == nil {
		return nil, false
	}
	k, ok := r.keys[id]
	return k, ok
}

// IDs lists the ring's key ids, sorted.
func (r *KeyRing) IDs() []string {
	if r == nil {
		return nil
	}
	ids := make([]string, 0, len(r.keys))
	for id := range r.keys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Clone returns an independent copy.
func (r *KeyRing) Clone() *KeyRing {
	c := &KeyRing{}
	if r != nil {
		for _, k := range r.keys {
			c.Add(k)
		}
	}
	return c
}

// Verify checks cp with the key its key id names (see VerifyCheckpoint).
func (r *KeyRing) Verify(cp *auditv1.Checkpoint) error {
	if cp == nil {
		return fmt.Errorf("%w: no checkpoint", ErrCheckpoint)
	}
	pub, ok := r.Lookup(cp.GetKeyId())
	if !ok {
		return fmt.Errorf("%w: key id %q is not a trusted key", ErrCheckpoint, cp.GetKeyId())
	}
	return VerifyCheckpoint(cp, pub)
}

// LoadPublicKeys reads Ed25519 public keys (PEM PUBLIC KEY) from paths. A path naming a
// folder contributes every *.pem file in it; a path that does not exist is an error (a
// misspelt trusted key must not silently leave old checkpoints unverifiable).
func LoadPublicKeys(paths ...string) ([]ed25519.PublicKey, error) {
	var out []ed25519.PublicKey
	for _, p := range paths {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		st, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("tlog: trusted key %s does not exist", p)
		}
		if err != nil {
			return nil, fmt.Errorf("tlog: trusted key %s: %w", p, err)
		}
		files := []string{p}
		if st.IsDir() {
			files, err = filepath.Glob(filepath.Join(p, "*.pem"))
			if err != nil {
				return nil, fmt.Errorf("tlog: trusted keys in %s: %w", p, err)
			}
			slices.Sort(files)
		}
		for _, f := range files {
			b, err := os.ReadFile(f) //nolint:gosec // G304: files of the operator's trusted-keys folder
			if err != nil {
				return nil, fmt.Errorf("tlog: read trusted key: %w", err)
			}
			pub, err := ParsePublicKey(b)
			if err != nil {
				return nil, fmt.Errorf("tlog: trusted key %s: %w", filepath.Base(f), err)
			}
			out = append(out, pub)
		}
	}
	return out, nil
}

// RememberPublicKey writes pub into dir as <key id>.pub.pem (creating dir), unless a file of
// that name is there already. The signing service calls it at start, so that after the
// signing key is rotated the previous public key is still in the trusted-keys folder and the
// checkpoints it signed still verify.
func RememberPublicKey(dir string, pub ed25519.PublicKey) error {
	if err := os.MkdirAll(dir, 0o755); err != nil { //nolint:gosec // G301: a folder of public keys, read by verifiers
		return fmt.Errorf("tlog: trusted keys folder: %w", err)
	}
	path := filepath.Join(dir, KeyID(pub)+".pub.pem")
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	return WritePublicKey(path, pub)
}

package tlog

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
)

// Origin names the log in every checkpoint note, so a signature over some other note (another
// log signed with the same key) is never mistaken for one of ours.
const Origin = "securemsg.audit.v1"

// ErrCheckpoint is returned when a checkpoint's signature, key or note does not verify.
var ErrCheckpoint = errors.New("tlog: checkpoint does not verify")

// KeyID derives a key id from a public key: the first 16 hex digits of SHA-256 over it.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// Signer signs checkpoints with an Ed25519 key.
type Signer struct {
	key   ed25519.PrivateKey
	keyID string
}

// NewSigner wraps key.
func NewSigner(key ed25519.PrivateKey) *Signer {
	return &Signer{key: key, keyID: KeyID(key.Public().(ed25519.PublicKey))}
}

// KeyID is the signer's key id.
func (s *Signer) KeyID() string { return s.keyID }

// Public is the signer's public key.
func (s *Signer) Public() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// Note is the text a checkpoint signs, one item per line:
//
//	securemsg.audit.v1
//	<tree size, decimal>
//	<root hash, standard base64>
//	<time, RFC 3339 with nanoseconds, UTC>
func Note(size uint64, root []byte, t time.Time) []byte {
	return fmt.Appendf(nil, "%s\n%d\n%s\n%s\n", Origin, size, base64.StdEncoding.EncodeToString(root),
		t.UTC().Format(time.RFC3339Nano))
}

// Sign makes a checkpoint for a tree of size with root at time t.
func (s *Signer) Sign(size uint64, root []byte, t time.Time) *auditv1.Checkpoint {
	t = t.UTC()
	body := Note(size, root, t)
	return &auditv1.Checkpoint{
		TreeSize:   size,
		RootHash:   bytes.Clone(root),
		Signature:  ed25519.Sign(s.key, body),
		KeyId:      s.keyID,
		CreateTime: timestamppb.New(t),
		SignedBody: body,
	}
}

// VerifyCheckpoint checks cp's signature over its signed body with pub, that the key ids match,
// and that the body states cp's tree size and root (so the unsigned fields cannot be swapped).
func VerifyCheckpoint(cp *auditv1.Checkpoint, pub ed25519.PublicKey) error {
	if cp == nil {
		return fmt.Errorf("%w: no checkpoint", ErrCheckpoint)
	}
	if cp.GetKeyId() != KeyID(pub) {
		return fmt.Errorf("%w: key id %q is not the public key's %q", ErrCheckpoint, cp.GetKeyId(), KeyID(pub))
	}
	if !ed25519.Verify(pub, cp.GetSignedBody(), cp.GetSignature()) {
		return fmt.Errorf("%w: bad signature (tree size %d)", ErrCheckpoint, cp.GetTreeSize())
	}
	lines := strings.Split(strings.TrimSuffix(string(cp.GetSignedBody()), "\n"), "\n")
	if len(lines) != 4 || lines[0] != Origin {
		return fmt.Errorf("%w: signed note is not a %s checkpoint", ErrCheckpoint, Origin)
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil || size != cp.GetTreeSize() {
		return fmt.Errorf("%w: signed note states size %q, checkpoint says %d", ErrCheckpoint, lines[1], cp.GetTreeSize())
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || !bytes.Equal(root, cp.GetRootHash()) {
		return fmt.Errorf("%w: signed note states another root than the checkpoint (size %d)", ErrCheckpoint, size)
	}
	return nil
}

// LoadOrCreateKey reads an Ed25519 private key (PKCS #8, PEM) from path. When the file does not
// exist and create is true, it generates a key and writes it there (mode 0600) — for the dev
// stack only; production mounts a key from the secret store.
func LoadOrCreateKey(path string, create bool) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path) //nolint:gosec // G304: the key file the operator configured
	if errors.Is(err, os.ErrNotExist) && create {
		_, priv, gerr := ed25519.GenerateKey(rand.Reader)
		if gerr != nil {
			return nil, fmt.Errorf("tlog: generate signing key: %w", gerr)
		}
		der, merr := x509.MarshalPKCS8PrivateKey(priv)
		if merr != nil {
			return nil, fmt.Errorf("tlog: encode signing key: %w", merr)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("tlog: key folder: %w", err)
		}
		out := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		if err := os.WriteFile(path, out, 0o600); err != nil {
			return nil, fmt.Errorf("tlog: write signing key: %w", err)
		}
		pubPath := strings.TrimSuffix(path, filepath.Ext(path)) + ".pub.pem"
		if err := WritePublicKey(pubPath, priv.Public().(ed25519.PublicKey)); err != nil {
			return nil, err
		}
		return priv, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tlog: read signing key: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("tlog: signing key file holds no PEM PRIVATE KEY")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, errors.New("tlog: signing key is not PKCS #8")
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, errors.New("tlog: signing key is not Ed25519")
	}
	return priv, nil
}

// WritePublicKey writes pub as a PEM PUBLIC KEY (PKIX) file.
func WritePublicKey(path string, pub ed25519.PublicKey) error {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return fmt.Errorf("tlog: encode public key: %w", err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil { //nolint:gosec // G306: a public key, meant to be read by verifiers
		return fmt.Errorf("tlog: write public key: %w", err)
	}
	return nil
}

// ParsePublicKey reads an Ed25519 public key from PEM (PUBLIC KEY, PKIX).
func ParsePublicKey(pemBytes []byte) (ed25519.PublicKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, errors.New("tlog: no PEM PUBLIC KEY found")
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("tlog: parse public key: %w", err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("tlog: public key is not Ed25519")
	}
	return pub, nil
}

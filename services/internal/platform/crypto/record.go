package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
	"io"
)

// KeySize is the length of a DEK: AES-256.
const KeySize = 32

const (
	recordVersion1  = 0x01
	recordNonceSize = 12
	recordTagSize   = 16
	// MaxKeyRefLen is the longest key reference a record envelope can carry.
	MaxKeyRefLen = 255
)

// RecordSealer seals and opens records under one DEK. It is safe for concurrent use. It keeps
// the expanded AES key, not the caller's slice, so the caller may zero its DEK afterwards.
type RecordSealer struct {
	aead   cipher.AEAD
	keyRef string
	rand   io.Reader // nonce source; crypto/rand except in known-answer tests
}

// NewRecordSealer returns a sealer for the 32-byte dek. keyRef (at most MaxKeyRefLen bytes) is
// written into every envelope it seals, so that a reader can tell which DEK to fetch.
func NewRecordSealer(dek []byte, keyRef string) (*RecordSealer, error) {
	if len(keyRef) > MaxKeyRefLen {
		return nil, fmt.Errorf("crypto: key reference longer than %d bytes", MaxKeyRefLen)
	}
	aead, err := newGCM(dek)
	if err != nil {
		return nil, err
	}
	return &RecordSealer{aead: aead, keyRef: keyRef, rand: rand.Reader}, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, ErrInvalidKey
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("crypto: %w", err)
	}
	return cipher.NewGCM(block)
}

// KeyRef is the key reference this sealer writes into envelopes.
func (s *RecordSealer) KeyRef() string { return s.keyRef }

// SealRecord encrypts plaintext bound to aad (see BindAAD) into a version-1 envelope.
func (s *RecordSealer) SealRecord(plaintext, aad []byte) ([]byte, error) {
	hdrLen := 2 + len(s.keyRef)
	out := make([]byte, hdrLen+recordNonceSize, hdrLen+recordNonceSize+len(plaintext)+recordTagSize)
	out[0] = recordVersion1
	out[1] = byte(len(s.keyRef)) //nolint:gosec // G115: NewRecordSealer refuses key references longer than MaxKeyRefLen (255)
	copy(out[2:], s.keyRef)
	nonce := out[hdrLen : hdrLen+recordNonceSize]
	if _, err := io.ReadFull(s.rand, nonce); err != nil {
		return nil, fmt.Errorf("crypto: read nonce: %w", err)
	}
	return s.aead.Seal(out, nonce, plaintext, recordAAD(out[:hdrLen], aad)), nil //nolint:gosec // G407: nonce is filled from s.rand (crypto/rand) just above
}

// OpenRecord authenticates and decrypts an envelope sealed with the same DEK and aad. Any
// mismatch is ErrNotAuthentic; no partial plaintext is returned. The envelope's key reference
// need not equal this sealer's: rows keep their reference when their wrapped DEK is rewrapped.
func (s *RecordSealer) OpenRecord(envelope, aad []byte) ([]byte, error) {
	env, err := ParseEnvelope(envelope)
	if err != nil {
		return nil, err
	}
	pt, err := s.aead.Open(nil, env.Nonce, env.Ciphertext, recordAAD(envelope[:env.headerLen], aad))
	if err != nil {
		return nil, ErrNotAuthentic
	}
	return pt, nil
}

func recordAAD(header, aad []byte) []byte {
	b := make([]byte, 0, len(header)+len(aad))
	return append(append(b, header...), aad...)
}

// Envelope is a parsed record envelope. Its slices alias the input.
type Envelope struct {
	Version    byte
	KeyRef     string
	Nonce      []byte
	Ciphertext []byte // ciphertext followed by the tag
	headerLen  int
}

// ParseEnvelope splits a record envelope into its fields without decrypting it, e.g. to read
// the key reference before fetching the DEK. It checks only the layout, not authenticity.
func ParseEnvelope(b []byte) (Envelope, error) {
	if len(b) == 0 {
		return Envelope{}, fmt.Errorf("empty record: %w", ErrNotAuthentic)
	}
	if b[0] != recordVersion1 {
		return Envelope{}, fmt.Errorf("record version %d: %w", b[0], ErrUnsupportedVersion)
	}
	if len(b) < 2 {
		return Envelope{}, fmt.Errorf("short record: %w", ErrNotAuthentic)
	}
	hdrLen := 2 + int(b[1])
	if len(b) < hdrLen+recordNonceSize+recordTagSize {
		return Envelope{}, fmt.Errorf("short record: %w", ErrNotAuthentic)
	}
	return Envelope{
		Version:    b[0],
		KeyRef:     string(b[2:hdrLen]),
		Nonce:      b[hdrLen : hdrLen+recordNonceSize],
		Ciphertext: b[hdrLen+recordNonceSize:],
		headerLen:  hdrLen,
	}, nil
}

// RecordOverhead is how many bytes SealRecord adds to a plaintext for a key reference of
// keyRefLen bytes.
func RecordOverhead(keyRefLen int) int { return 2 + keyRefLen + recordNonceSize + recordTagSize }

// Package sealer seals and opens contact points (PHI) with a per-person data-encryption key
// from Vault Transit (platform/keys) in the platform's record envelope (platform/crypto). The
// associated data binds each sealed address to its owner and channel, so a sealed address
// cannot be moved to another person or channel.
package sealer

import (
	"context"
	"errors"
	"fmt"

	"github.com/securemsg/securemsg/services/internal/platform/crypto"
	"github.com/securemsg/securemsg/services/internal/platform/keys"
	"github.com/securemsg/securemsg/services/notification/internal/domain"
)

// KeyRef is written into every envelope: the DEK is the person's (person_keys).
const KeyRef = "notification.person"

// Sealer seals contact points.
type Sealer struct {
	keyring *keys.Keyring
	keyName string
}

// New returns a sealer using the Transit key keyName ("securemsg-notification").
func New(keyring *keys.Keyring, keyName string) *Sealer {
	return &Sealer{keyring: keyring, keyName: keyName}
}

// NewDEK creates a person's DEK; store only Wrapped.
func (s *Sealer) NewDEK(ctx context.Context) (keys.DEK, error) {
	dek, err := s.keyring.NewDEK(ctx, s.keyName)
	return dek, refusal(err)
}

// refusal turns a keyring or envelope failure into the domain's refusal (what the caller is
// told: the key service is down, the key version is retired, the stored address is not
// authentic); any other error is returned as it is.
func refusal(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, crypto.ErrNotAuthentic):
		return domain.ErrContactPointNotAuthentic(err)
	case keys.IsUnavailable(err), errors.Is(err, keys.ErrKeyServiceUnavailable):
		return domain.ErrKeyServiceUnavailable(err)
	case errors.Is(err, keys.ErrKeyVersionRetired):
		return domain.ErrKeyVersionRetired(err)
	}
	return err
}

// AAD is the associated data of a sealed contact point.
func AAD(subject, channel string) []byte {
	return crypto.BindAAD("notification.contact", subject, channel)
}

// Seal seals address for subject's channel under the person's DEK (wrapped form).
func (s *Sealer) Seal(ctx context.Context, wrapped, subject, channel, address string) ([]byte, error) {
	dek, err := s.keyring.OpenDEK(ctx, s.keyName, wrapped)
	if err != nil {
		return nil, refusal(fmt.Errorf("open person key: %w", err))
	}
	defer clear(dek)
	rs, err := crypto.NewRecordSealer(dek, KeyRef)
	if err != nil {
		return nil, err
	}
	env, err := rs.SealRecord([]byte(address), AAD(subject, channel))
	return env, refusal(err)
}

// Open opens a sealed contact point.
func (s *Sealer) Open(ctx context.Context, wrapped, subject, channel string, envelope []byte) (string, error) {
	dek, err := s.keyring.OpenDEK(ctx, s.keyName, wrapped)
	if err != nil {
		return "", refusal(fmt.Errorf("open person key: %w", err))
	}
	defer clear(dek)
	rs, err := crypto.NewRecordSealer(dek, KeyRef)
	if err != nil {
		return "", err
	}
	pt, err := rs.OpenRecord(envelope, AAD(subject, channel))
	if err != nil {
		return "", refusal(fmt.Errorf("open contact point: %w", err))
	}
	return string(pt), nil
}

package keys

import (
	"context"
	"errors"
	"fmt"

	"github.com/securemsg/securemsg/services/internal/platform/config"
)

// ConfigFrom maps a service's Vault settings (SECUREMSG_VAULT_*) to a Transit client config.
func ConfigFrom(v config.Vault) Config {
	return Config{
		Addr: v.Addr, Token: v.Token.Reveal(), CACert: v.CACert,
		KubernetesRole: v.KubernetesRole, KubernetesMount: v.KubernetesMount, TransitMount: v.TransitMount,
	}
}

// OpenTransit connects to Transit with cfg and makes sure the service's key keyName exists
// (EnsureKey): a service does not start without the key it wraps its DEKs under.
func OpenTransit(ctx context.Context, cfg Config, keyName string) (*Transit, error) {
	transit, err := NewTransit(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("vault transit: %w", err)
	}
	if err := transit.EnsureKey(ctx, keyName); err != nil {
		return nil, fmt.Errorf("ensure transit key %s: %w", keyName, err)
	}
	return transit, nil
}

// EnsureKey makes sure the Transit key keyName exists with no more rights than a service's
// production policy grants (deploy/vault/policies: read on <mount>/keys/<key>, and nothing that
// creates or changes a key). It reads the key and is done when it is there. Only a missing key
// (404) leads to a create: the dev stack's and the tests' tokens may create keys, production
// tokens may not, because an operator creates the keys once (deploy/vault/setup-transit.sh, with
// deletion_allowed=false) and a pod must not be able to make a key of its own choosing. A create
// that Vault refuses is followed by one more read, since the operator or another client may
// have created the key in between; if it is still missing, the error names the key and says
// who creates it.
func (t *Transit) EnsureKey(ctx context.Context, keyName string) error {
	_, err := t.ReadKey(ctx, keyName)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrPermissionDenied):
		return fmt.Errorf("keys: this Vault token may not read %s/keys/%s; its policy needs the read capability on that path (deploy/vault/policies): %w",
			t.cfg.TransitMount, keyName, err)
	case !errors.Is(err, ErrKeyNotFound):
		return err
	}
	cerr := t.CreateKey(ctx, keyName)
	if cerr == nil {
		return nil
	}
	if !errors.Is(cerr, ErrPermissionDenied) {
		return cerr
	}
	if _, err := t.ReadKey(ctx, keyName); err == nil {
		return nil
	}
	return fmt.Errorf("keys: transit key %s does not exist in mount %s and this Vault token may not create it; an operator creates it (deploy/vault/setup-transit.sh): %w",
		keyName, t.cfg.TransitMount, ErrKeyNotFound)
}

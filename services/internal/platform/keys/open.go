package keys

import (
	"context"
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
// (each service creates its own key at start; creating an existing key changes nothing).
func OpenTransit(ctx context.Context, cfg Config, keyName string) (*Transit, error) {
	transit, err := NewTransit(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("vault transit: %w", err)
	}
	if err := transit.CreateKey(ctx, keyName); err != nil {
		return nil, fmt.Errorf("ensure transit key %s: %w", keyName, err)
	}
	return transit, nil
}

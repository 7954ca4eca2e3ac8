package transit

import (
	"context"
	"crypto/rand"
	"fmt"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/keysutil"
	"github.com/hashicorp/vault/sdk/logical"
)

// backend is one mounted transit engine. It is a framework.Backend, the same routing and
// field-decoding machinery Vault's own engines use, so path matching, weak typing of fields
// ("2" for 2, "true" for true), "Field validation failed" answers and unsupported-operation
// errors behave as in Vault. Key rings are keysutil policies held by a LockManager over the
// mount's storage view, laid out as Vault's transit engine lays them out ("policy/<name>",
// "archive/<name>").
type backend struct {
	*framework.Backend
	lm *keysutil.LockManager
}

// newBackend builds a transit engine. The lock manager caches policies, as Vault does by
// default, so handlers take the policy's own lock around each use.
func newBackend() (*backend, error) {
	lm, err := keysutil.NewLockManager(true, 0)
	if err != nil {
		return nil, fmt.Errorf("lock manager: %w", err)
	}
	b := &backend{lm: lm}
	b.Backend = &framework.Backend{
		BackendType: logical.TypeLogical,
		Help:        "Transit-compatible dev engine (see package transit).",
		Paths: []*framework.Path{
			b.pathListKeys(),
			b.pathKeys(),
			b.pathKeysConfig(),
			b.pathRotate(),
			b.pathEncrypt(),
			b.pathDecrypt(),
			b.pathRewrap(),
			b.pathDatakey(),
		},
	}
	return b, nil
}

// randomReader is where new key material comes from.
var randomReader = rand.Reader

// getPolicy loads (or, with req.Upsert, creates) a key ring.
func (b *backend) getPolicy(ctx context.Context, req keysutil.PolicyRequest) (*keysutil.Policy, bool, error) {
	return b.lm.GetPolicy(ctx, req, randomReader)
}

// parseKeyType maps Vault's key type names to keysutil types. Only the symmetric AEAD types are
// served: they are all the services use, and reading asymmetric keys needs public-key
// formatting this server does not implement.
func parseKeyType(name string) (keysutil.KeyType, error) {
	switch name {
	case "aes128-gcm96":
		return keysutil.KeyType_AES128_GCM96, nil
	case "aes256-gcm96":
		return keysutil.KeyType_AES256_GCM96, nil
	case "chacha20-poly1305":
		return keysutil.KeyType_ChaCha20_Poly1305, nil
	case "ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "ed25519", "rsa-2048", "rsa-3072", "rsa-4096",
		"hmac", "managed_key", "aes128-cmac", "aes256-cmac", "ml-dsa", "hybrid":
		return 0, fmt.Errorf("key type %v is not supported by the transit dev server", name)
	default:
		return 0, fmt.Errorf("unknown key type %v", name)
	}
}

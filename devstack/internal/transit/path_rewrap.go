package transit

// rewrap/<name>: re-encrypt ciphertexts under the latest or a given key version without
// returning plaintext (Vault: path_rewrap.go).

import (
	"context"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

func (b *backend) pathRewrap() *framework.Path {
	return &framework.Path{
		Pattern: "rewrap/" + framework.GenericNameRegex("name"),
		Fields:  cryptFields(),
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{Callback: b.pathRewrapWrite},
		},
		HelpSynopsis: "Re-encrypt ciphertext under the latest (or given) key version; no plaintext leaves the server.",
	}
}

// pathRewrapWrite decrypts each item with the checks encrypt makes (a nonce only on keys that use
// it) and encrypts the plaintext again under the requested version.
func (b *backend) pathRewrapWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	return eachCiphertext(ctx, b, req, d, encryptFactories, encryptItem)
}

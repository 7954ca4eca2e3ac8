package transit

// rewrap/<name>: re-encrypt ciphertexts under the latest or a given key version without
// returning plaintext (Vault: path_rewrap.go).

import (
	"context"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/keysutil"
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

func (b *backend) pathRewrapWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	return eachCiphertext(ctx, b, req, d, func(p *keysutil.Policy, i int, it batchItem, out *batchOutcome) encryptResult {
		f, err := encryptFactories(p, i, it)
		var pt string
		if err == nil {
			pt, err = p.DecryptWithFactory(it.decodedContext, it.decodedNonce, it.Ciphertext, f...)
		}
		if err != nil {
			return encryptResult{Error: out.record(err)}
		}
		return encryptItem(p, i, it, pt, f, out)
	})
}

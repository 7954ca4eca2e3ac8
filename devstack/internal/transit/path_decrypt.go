package transit

// decrypt/<name>: decrypt vault:vN: ciphertexts (Vault: path_decrypt.go).

import (
	"context"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/keysutil"
	"github.com/hashicorp/vault/sdk/logical"
)

func (b *backend) pathDecrypt() *framework.Path {
	return &framework.Path{
		Pattern: "decrypt/" + framework.GenericNameRegex("name"),
		Fields:  cryptFields(),
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{Callback: b.pathDecryptWrite},
		},
		HelpSynopsis: "Decrypt a vault:vN: ciphertext with a named key.",
	}
}

func (b *backend) pathDecryptWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	return eachCiphertext(ctx, b, req, d, factories, decrypted)
}

// decrypted is a decrypt item's answer: its plaintext.
func decrypted(_ *keysutil.Policy, _ int, _ batchItem, plaintext string, _ []any, out *batchOutcome) decryptResult {
	out.successes = true
	return decryptResult{Plaintext: plaintext}
}

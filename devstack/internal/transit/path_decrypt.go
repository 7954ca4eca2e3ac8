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
	items, batch, errResp, err := singleOrBatch(d, false, true)
	if errResp != nil || err != nil {
		return errResp, err
	}
	results := make([]decryptResult, len(items))
	var out batchOutcome
	if r := prepareCiphertextItems(items, &out, func(i int, msg string) { results[i].Error = msg }); r != nil {
		return r, logical.ErrInvalidRequest
	}

	p, _, err := b.getPolicy(ctx, keysutil.PolicyRequest{Storage: req.Storage, Name: d.Get("name").(string)})
	if err != nil {
		return nil, err
	}
	if p == nil {
		return logical.ErrorResponse("encryption key not found"), logical.ErrInvalidRequest
	}
	p.Lock(false)
	defer p.Unlock()

	for i, it := range items {
		if results[i].Error != "" {
			continue
		}
		f, err := factories(p, i, it)
		if err != nil {
			results[i].Error = out.record(err)
			continue
		}
		pt, err := p.DecryptWithFactory(it.decodedContext, it.decodedNonce, it.Ciphertext, f...)
		if err != nil {
			results[i].Error = out.record(err)
			continue
		}
		out.successes = true
		results[i].Plaintext = pt
	}

	resp := &logical.Response{}
	if batch {
		for i := range items {
			results[i].Reference = items[i].Reference
		}
		resp.Data = map[string]any{"batch_results": results}
	} else {
		if results[0].Error != "" {
			return singleError(results[0].Error, out)
		}
		resp.Data = map[string]any{"plaintext": results[0].Plaintext}
	}
	return out.respond(d, req, resp)
}

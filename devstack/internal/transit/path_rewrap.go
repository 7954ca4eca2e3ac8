package transit

// rewrap/<name>: re-encrypt ciphertexts under the latest or a given key version without
// returning plaintext (Vault: path_rewrap.go).

import (
	"context"
	"fmt"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/errutil"
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
	items, batch, errResp, err := singleOrBatch(d, false, true)
	if errResp != nil || err != nil {
		return errResp, err
	}
	results := make([]encryptResult, len(items))
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
		if it.Nonce != "" && !nonceAllowed(p) {
			results[i].Error = out.record(errutil.UserError{Err: errNonceNotAllowed.Error()})
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
		ct, err := p.EncryptWithFactory(it.KeyVersion, it.decodedContext, it.decodedNonce, pt, f...)
		if err != nil {
			results[i].Error = out.record(err)
			continue
		}
		if ct == "" {
			results[i].Error = out.record(errutil.UserError{Err: fmt.Sprintf("empty ciphertext returned for input item %d", i)})
			continue
		}
		out.successes = true
		ver := it.KeyVersion
		if ver == 0 {
			ver = p.LatestVersion
		}
		results[i].Ciphertext, results[i].KeyVersion = ct, ver
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
		resp.Data = map[string]any{"ciphertext": results[0].Ciphertext, "key_version": results[0].KeyVersion}
	}
	return out.respond(d, req, resp)
}

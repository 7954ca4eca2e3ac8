package transit

// encrypt/<name>: encrypt base64 plaintext (one item or batch_input), creating the key on first
// use as Vault does (Vault: builtin/logical/transit/path_encrypt.go).

import (
	"context"
	"encoding/base64"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/errutil"
	"github.com/hashicorp/vault/sdk/helper/keysutil"
	"github.com/hashicorp/vault/sdk/logical"
)

func (b *backend) pathEncrypt() *framework.Path {
	return &framework.Path{
		Pattern: "encrypt/" + framework.GenericNameRegex("name"),
		Fields:  cryptFields(),
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.CreateOperation: &framework.PathOperation{Callback: b.pathEncryptWrite},
			logical.UpdateOperation: &framework.PathOperation{Callback: b.pathEncryptWrite},
		},
		// Like Vault, encrypting with a missing key creates it (a CreateOperation).
		ExistenceCheck: b.keyExists,
		HelpSynopsis:   "Encrypt base64 plaintext with a named key.",
	}
}

func (b *backend) keyExists(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
	p, _, err := b.getPolicy(ctx, keysutil.PolicyRequest{Storage: req.Storage, Name: d.Get("name").(string)})
	if err != nil {
		return false, err
	}
	return p != nil, nil
}

func (b *backend) pathEncryptWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	items, batch, errResp, err := singleOrBatch(d, true, false)
	if errResp != nil || err != nil {
		return errResp, err
	}
	if r := checkContexts(items); r != nil {
		return r, logical.ErrInvalidRequest
	}
	contextSet := items[0].Context != ""

	results := make([]encryptResult, len(items))
	var out batchOutcome
	for i := range items {
		if _, err := base64.StdEncoding.DecodeString(items[i].Plaintext); err != nil {
			results[i].Error = out.record(errutil.UserError{Err: err.Error()})
			continue
		}
		if err := items[i].decodeContextAndNonce(); err != nil {
			results[i].Error = out.record(errutil.UserError{Err: err.Error()})
		}
	}

	polReq := keysutil.PolicyRequest{Storage: req.Storage, Name: name}
	if req.Operation == logical.CreateOperation {
		convergent := d.Get("convergent_encryption").(bool)
		if convergent && !contextSet {
			return logical.ErrorResponse("convergent encryption requires derivation to be enabled, so context is required"), nil
		}
		keyType, err := parseKeyType(d.Get("type").(string))
		if err != nil {
			return logical.ErrorResponse(err.Error()), logical.ErrInvalidRequest
		}
		polReq.Upsert, polReq.Derived, polReq.Convergent, polReq.KeyType = true, contextSet, convergent, keyType
	}
	p, upserted, err := b.getPolicy(ctx, polReq)
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
		f, err := encryptFactories(p, i, it)
		if err != nil {
			results[i].Error = out.record(err)
			continue
		}
		results[i] = encryptItem(p, i, it, it.Plaintext, f, &out)
	}
	var warning string
	if req.Operation == logical.CreateOperation && !upserted {
		warning = "Attempted creation of the key during the encrypt operation, but it was created beforehand"
	}
	return answer(d, req, batch, items, results, out, warning)
}

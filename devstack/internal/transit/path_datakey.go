package transit

// datakey/{plaintext,wrapped}/<name>: generate a data key wrapped by a named key (Vault:
// path_datakey.go).

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/errutil"
	"github.com/hashicorp/vault/sdk/logical"
)

func (b *backend) pathDatakey() *framework.Path {
	return &framework.Path{
		Pattern: "datakey/" + framework.GenericNameRegex("plaintext") + "/" + framework.GenericNameRegex("name"),
		Fields: map[string]*framework.FieldSchema{
			"name":            {Type: framework.TypeString, Description: "Key that wraps the data key"},
			"plaintext":       {Type: framework.TypeString, Description: `"plaintext" returns the key and its wrapped form, "wrapped" only the wrapped form`},
			"context":         {Type: framework.TypeString, Description: "Base64 context for derived keys"},
			"nonce":           {Type: framework.TypeString, Description: "Base64 nonce (convergent v1 keys only)"},
			"bits":            {Type: framework.TypeInt, Default: 256, Description: "128, 256 (default) or 512"},
			"key_version":     {Type: framework.TypeInt, Description: "Key version to wrap with (0 = latest)"},
			"associated_data": {Type: framework.TypeString, Description: "Base64 AEAD associated data"},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{Callback: b.pathDatakeyWrite},
		},
		HelpSynopsis: "Generate a data key wrapped by a named key.",
	}
}

func (b *backend) pathDatakeyWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	var withPlaintext bool
	switch d.Get("plaintext").(string) {
	case "plaintext":
		withPlaintext = true
	case "wrapped":
	default:
		return logical.ErrorResponse("Invalid path, must be 'plaintext' or 'wrapped'"), logical.ErrInvalidRequest
	}
	it := batchItem{Context: d.Get("context").(string), Nonce: d.Get("nonce").(string), AssociatedData: d.Get("associated_data").(string)}
	if it.Context != "" {
		var err error
		if it.decodedContext, err = base64.StdEncoding.DecodeString(it.Context); err != nil {
			return logical.ErrorResponse("failed to base64-decode context"), logical.ErrInvalidRequest
		}
	}
	if it.Nonce != "" {
		var err error
		if it.decodedNonce, err = base64.StdEncoding.DecodeString(it.Nonce); err != nil {
			return logical.ErrorResponse("failed to base64-decode nonce"), logical.ErrInvalidRequest
		}
	}

	p, errResp, err := b.readKey(ctx, req, d.Get("name").(string))
	if p == nil {
		return errResp, err
	}
	defer p.Unlock()

	if it.Nonce != "" && !nonceAllowed(p) {
		return logical.ErrorResponse(errNonceNotAllowed.Error()), logical.ErrInvalidRequest
	}
	var size int
	switch d.Get("bits").(int) {
	case 128:
		size = 16
	case 256:
		size = 32
	case 512:
		size = 64
	default:
		return logical.ErrorResponse("invalid bit length"), logical.ErrInvalidRequest
	}
	newKey := make([]byte, size)
	if _, err := randomReader.Read(newKey); err != nil {
		return nil, err
	}
	f, err := factories(p, 0, it)
	if err != nil {
		return logical.ErrorResponse(err.Error()), logical.ErrInvalidRequest
	}
	ver := d.Get("key_version").(int)
	ct, err := p.EncryptWithFactory(ver, it.decodedContext, it.decodedNonce, base64.StdEncoding.EncodeToString(newKey), f...)
	if err != nil {
		var internal errutil.InternalError
		if errors.As(err, &internal) {
			return nil, err
		}
		return logical.ErrorResponse(err.Error()), logical.ErrInvalidRequest
	}
	if ct == "" {
		return nil, fmt.Errorf("empty ciphertext returned")
	}
	if ver == 0 {
		ver = p.LatestVersion
	}
	resp := &logical.Response{Data: map[string]any{"ciphertext": ct, "key_version": ver}}
	if withPlaintext {
		resp.Data["plaintext"] = base64.StdEncoding.EncodeToString(newKey)
	}
	return resp, nil
}

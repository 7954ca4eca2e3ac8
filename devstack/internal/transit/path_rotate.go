package transit

// keys/<name>/rotate: add a key version (Vault: path_rotate.go).

import (
	"context"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/keysutil"
	"github.com/hashicorp/vault/sdk/logical"
)

func (b *backend) pathRotate() *framework.Path {
	return &framework.Path{
		Pattern: "keys/" + framework.GenericNameRegex("name") + "/rotate",
		Fields: map[string]*framework.FieldSchema{
			"name": {Type: framework.TypeString, Description: "Name of the key"},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{Callback: b.pathRotateWrite},
		},
		HelpSynopsis: "Rotate a named key.",
	}
}

func (b *backend) pathRotateWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	p, _, err := b.getPolicy(ctx, keysutil.PolicyRequest{Storage: req.Storage, Name: d.Get("name").(string)})
	if err != nil {
		return nil, err
	}
	if p == nil {
		return logical.ErrorResponse("key not found"), logical.ErrInvalidRequest
	}
	p.Lock(true)
	defer p.Unlock()
	if err := p.Rotate(ctx, req.Storage, randomReader); err != nil {
		return nil, err
	}
	return formatKeyPolicy(p), nil
}

package transit

// keys/ and keys/<name>: list, create, read and delete key rings (Vault: path_keys.go).

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/keysutil"
	"github.com/hashicorp/vault/sdk/logical"
)

func (b *backend) pathListKeys() *framework.Path {
	return &framework.Path{
		Pattern: "keys/?$",
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ListOperation: &framework.PathOperation{Callback: b.pathKeysList},
		},
		HelpSynopsis: "List the named keys.",
	}
}

func (b *backend) pathKeys() *framework.Path {
	return &framework.Path{
		Pattern: "keys/" + framework.GenericNameRegex("name"),
		Fields: map[string]*framework.FieldSchema{
			"name":                   {Type: framework.TypeString, Description: "Name of the key"},
			"type":                   {Type: framework.TypeString, Default: "aes256-gcm96", Description: "Key type: aes128-gcm96, aes256-gcm96 (default) or chacha20-poly1305"},
			"derived":                {Type: framework.TypeBool, Description: "Derive a key per context"},
			"convergent_encryption":  {Type: framework.TypeBool, Description: "Convergent encryption (needs derived)"},
			"exportable":             {Type: framework.TypeBool, Description: "Recorded only: this server has no export endpoint"},
			"allow_plaintext_backup": {Type: framework.TypeBool, Description: "Recorded only: this server has no backup endpoint"},
			"auto_rotate_period":     {Type: framework.TypeDurationSecond, Default: 0, Description: "Recorded only: this server never rotates on its own"},
			"context":                {Type: framework.TypeString, Description: "Accepted for compatibility; symmetric keys have no public part"},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{Callback: b.pathPolicyWrite},
			logical.ReadOperation:   &framework.PathOperation{Callback: b.pathPolicyRead},
			logical.DeleteOperation: &framework.PathOperation{Callback: b.pathPolicyDelete},
		},
		HelpSynopsis: "Create, read and delete named keys.",
	}
}

func (b *backend) pathKeysList(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	entries, err := req.Storage.List(ctx, "policy/")
	if err != nil {
		return nil, err
	}
	return logical.ListResponse(entries), nil
}

func (b *backend) pathPolicyWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	derived := d.Get("derived").(bool)
	convergent := d.Get("convergent_encryption").(bool)
	autoRotate := time.Second * time.Duration(d.Get("auto_rotate_period").(int))

	if autoRotate != 0 && autoRotate < time.Hour {
		return logical.ErrorResponse("auto rotate period must be 0 to disable or at least an hour"), nil
	}
	if !derived && convergent {
		return logical.ErrorResponse("convergent encryption requires derivation to be enabled"), nil
	}
	keyType, err := parseKeyType(d.Get("type").(string))
	if err != nil {
		return logical.ErrorResponse(err.Error()), logical.ErrInvalidRequest
	}

	p, upserted, err := b.getPolicy(ctx, keysutil.PolicyRequest{
		Upsert:               true,
		Storage:              req.Storage,
		Name:                 name,
		KeyType:              keyType,
		Derived:              derived,
		Convergent:           convergent,
		Exportable:           d.Get("exportable").(bool),
		AllowPlaintextBackup: d.Get("allow_plaintext_backup").(bool),
		AutoRotatePeriod:     autoRotate,
	})
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, fmt.Errorf("error generating key: returned policy was nil")
	}
	p.Lock(false)
	defer p.Unlock()

	resp := formatKeyPolicy(p)
	if !upserted {
		resp.AddWarning(fmt.Sprintf("key %s already existed", name))
	}
	return resp, nil
}

func (b *backend) pathPolicyRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	p, _, err := b.getPolicy(ctx, keysutil.PolicyRequest{Storage: req.Storage, Name: d.Get("name").(string)})
	if err != nil {
		return nil, err
	}
	if p == nil {
		// No response on a read is Vault's 404 with an empty errors list.
		return nil, nil
	}
	p.Lock(false)
	defer p.Unlock()
	return formatKeyPolicy(p), nil
}

func (b *backend) pathPolicyDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	// DeletePolicy refuses unless deletion_allowed is set, and takes its own locks.
	if err := b.lm.DeletePolicy(ctx, req.Storage, name); err != nil {
		return logical.ErrorResponse(fmt.Sprintf("error deleting policy %s: %s", name, err)), err
	}
	return nil, nil
}

// formatKeyPolicy is the body of a key read, in Vault's field names. The caller holds p's lock.
func formatKeyPolicy(p *keysutil.Policy) *logical.Response {
	data := map[string]any{
		"name":                   p.Name,
		"type":                   p.Type.String(),
		"derived":                p.Derived,
		"deletion_allowed":       p.DeletionAllowed,
		"min_available_version":  p.MinAvailableVersion,
		"min_decryption_version": p.MinDecryptionVersion,
		"min_encryption_version": p.MinEncryptionVersion,
		"latest_version":         p.LatestVersion,
		"exportable":             p.Exportable,
		"allow_plaintext_backup": p.AllowPlaintextBackup,
		"supports_encryption":    p.Type.EncryptionSupported(),
		"supports_decryption":    p.Type.DecryptionSupported(),
		"supports_signing":       p.Type.SigningSupported(),
		"supports_derivation":    p.Type.DerivationSupported(),
		"auto_rotate_period":     int64(p.AutoRotatePeriod.Seconds()),
		"imported_key":           p.Imported,
	}
	if p.Derived {
		switch p.KDF {
		case keysutil.Kdf_hmac_sha256_counter:
			data["kdf"] = "hmac-sha256-counter"
			data["kdf_mode"] = "hmac-sha256-counter"
		case keysutil.Kdf_hkdf_sha256:
			data["kdf"] = "hkdf_sha256"
		}
		data["convergent_encryption"] = p.ConvergentEncryption
		if p.ConvergentEncryption {
			data["convergent_encryption_version"] = p.ConvergentVersion
		}
	}
	// Symmetric keys list version -> creation time (unix seconds); only the versions at or
	// above min_decryption_version are in p.Keys (keysutil archives the rest).
	versions := make(map[string]int64, len(p.Keys))
	for v, entry := range p.Keys {
		versions[v] = entry.DeprecatedCreationTime
	}
	data["keys"] = versions
	return &logical.Response{Data: data}
}

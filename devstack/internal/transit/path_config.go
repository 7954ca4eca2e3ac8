package transit

// keys/<name>/config: a key ring's version bounds and flags (Vault: path_config.go).

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/keysutil"
	"github.com/hashicorp/vault/sdk/logical"
)

func (b *backend) pathKeysConfig() *framework.Path {
	return &framework.Path{
		Pattern: "keys/" + framework.GenericNameRegex("name") + "/config",
		Fields: map[string]*framework.FieldSchema{
			"name":                   {Type: framework.TypeString, Description: "Name of the key"},
			"min_decryption_version": {Type: framework.TypeInt, Description: "Oldest version that may decrypt"},
			"min_encryption_version": {Type: framework.TypeInt, Description: "Oldest version that may encrypt (0 = latest)"},
			"deletion_allowed":       {Type: framework.TypeBool, Description: "Whether the key may be deleted"},
			"exportable":             {Type: framework.TypeBool, Description: "Recorded only; cannot be unset"},
			"allow_plaintext_backup": {Type: framework.TypeBool, Description: "Recorded only; cannot be unset"},
			"auto_rotate_period":     {Type: framework.TypeDurationSecond, Description: "Recorded only"},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{Callback: b.pathKeysConfigWrite},
		},
		HelpSynopsis: "Configure a named key.",
	}
}

func (b *backend) pathKeysConfigWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (resp *logical.Response, retErr error) {
	name := d.Get("name").(string)
	p, _, err := b.getPolicy(ctx, keysutil.PolicyRequest{Storage: req.Storage, Name: name})
	if err != nil {
		return nil, err
	}
	if p == nil {
		return logical.ErrorResponse(fmt.Sprintf("no existing key named %s could be found", name)), logical.ErrInvalidRequest
	}
	p.Lock(true)
	defer p.Unlock()

	// The policy is shared through the cache: undo in-memory edits when the request fails so a
	// rejected config never takes effect.
	orig := struct {
		minDec, minEnc             int
		deletion, export, ptBackup bool
		autoRotate                 time.Duration
	}{p.MinDecryptionVersion, p.MinEncryptionVersion, p.DeletionAllowed, p.Exportable, p.AllowPlaintextBackup, p.AutoRotatePeriod}
	defer func() {
		if retErr != nil || (resp != nil && resp.IsError()) {
			p.MinDecryptionVersion, p.MinEncryptionVersion = orig.minDec, orig.minEnc
			p.DeletionAllowed, p.Exportable, p.AllowPlaintextBackup = orig.deletion, orig.export, orig.ptBackup
			p.AutoRotatePeriod = orig.autoRotate
		}
	}()

	var warning string
	persist := false

	if raw, ok := d.GetOk("min_decryption_version"); ok {
		v := raw.(int)
		if v < 0 {
			return logical.ErrorResponse("min decryption version cannot be negative"), nil
		}
		if v == 0 {
			v = 1
			warning = "since Vault 0.3, transit key numbering starts at 1; forcing minimum to 1"
		}
		if v != p.MinDecryptionVersion {
			if v > p.LatestVersion {
				return logical.ErrorResponse(fmt.Sprintf("cannot set min decryption version of %d, latest key version is %d", v, p.LatestVersion)), nil
			}
			p.MinDecryptionVersion = v
			persist = true
		}
	}
	if raw, ok := d.GetOk("min_encryption_version"); ok {
		v := raw.(int)
		if v < 0 {
			return logical.ErrorResponse("min encryption version cannot be negative"), nil
		}
		if v != p.MinEncryptionVersion {
			if v > p.LatestVersion {
				return logical.ErrorResponse(fmt.Sprintf("cannot set min encryption version of %d, latest key version is %d", v, p.LatestVersion)), nil
			}
			p.MinEncryptionVersion = v
			persist = true
		}
	}
	if p.MinEncryptionVersion > 0 && p.MinEncryptionVersion < p.MinDecryptionVersion {
		return logical.ErrorResponse(fmt.Sprintf("cannot set min encryption/decryption values; min encryption version of %d must be greater than or equal to min decryption version of %d", p.MinEncryptionVersion, p.MinDecryptionVersion)), nil
	}
	if raw, ok := d.GetOk("deletion_allowed"); ok {
		if v := raw.(bool); v != p.DeletionAllowed {
			p.DeletionAllowed = v
			persist = true
		}
	}
	if p.MinDecryptionVersion == 0 {
		p.MinDecryptionVersion = 1
		persist = true
	}
	// exportable and allow_plaintext_backup can be turned on, never off (as in Vault).
	if raw, ok := d.GetOk("exportable"); ok && raw.(bool) && !p.Exportable {
		p.Exportable = true
		persist = true
	}
	if raw, ok := d.GetOk("allow_plaintext_backup"); ok && raw.(bool) && !p.AllowPlaintextBackup {
		p.AllowPlaintextBackup = true
		persist = true
	}
	if raw, ok, err := d.GetOkErr("auto_rotate_period"); err != nil {
		return nil, err
	} else if ok {
		v := time.Second * time.Duration(raw.(int))
		if v != 0 && v < time.Hour {
			return logical.ErrorResponse("auto rotate period must be 0 to disable or at least an hour"), nil
		}
		if v != p.AutoRotatePeriod {
			p.AutoRotatePeriod = v
			persist = true
		}
	}

	if persist {
		switch {
		case p.MinAvailableVersion > p.MinEncryptionVersion:
			return logical.ErrorResponse("min encryption version should not be less than min available version"), nil
		case p.MinAvailableVersion > p.MinDecryptionVersion:
			return logical.ErrorResponse("min decryption version should not be less then min available version"), nil
		}
		if err := p.Persist(ctx, req.Storage); err != nil {
			return nil, err
		}
	}
	resp = formatKeyPolicy(p)
	if warning != "" {
		resp.AddWarning(warning)
	}
	return resp, nil
}

package transit

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/keysutil"
	"github.com/hashicorp/vault/sdk/logical"
)

// backend is one mounted transit engine. It is a framework.Backend, the same routing and
// field-decoding machinery Vault's own engines use, so path matching, weak typing of fields
// ("2" for 2, "true" for true), "Field validation failed" answers and unsupported-operation
// errors behave as in Vault. Key rings are keysutil policies held by a LockManager over the
// mount's storage view, laid out as Vault's transit engine lays them out ("policy/<name>",
// "archive/<name>").
type backend struct {
	*framework.Backend
	lm *keysutil.LockManager
}

// newBackend builds a transit engine. The lock manager caches policies, as Vault does by
// default, so handlers take the policy's own lock around each use.
func newBackend() (*backend, error) {
	lm, err := keysutil.NewLockManager(true, 0)
	if err != nil {
		return nil, fmt.Errorf("lock manager: %w", err)
	}
	b := &backend{lm: lm}
	b.Backend = &framework.Backend{
		BackendType: logical.TypeLogical,
		Help:        "Transit-compatible dev engine (see package transit).",
		Paths: []*framework.Path{
			b.pathListKeys(),
			b.pathKeys(),
			b.pathKeysConfig(),
			b.pathRotate(),
			b.pathEncrypt(),
			b.pathDecrypt(),
			b.pathRewrap(),
			b.pathDatakey(),
		},
	}
	return b, nil
}

// randomReader is where new key material comes from.
var randomReader = rand.Reader

// getPolicy loads (or, with req.Upsert, creates) a key ring.
func (b *backend) getPolicy(ctx context.Context, req keysutil.PolicyRequest) (*keysutil.Policy, bool, error) {
	return b.lm.GetPolicy(ctx, req, randomReader)
}

// parseKeyType maps Vault's key type names to keysutil types. Only the symmetric AEAD types are
// served: they are all the services use, and reading asymmetric keys needs public-key
// formatting this server does not implement.
func parseKeyType(name string) (keysutil.KeyType, error) {
	switch name {
	case "aes128-gcm96":
		return keysutil.KeyType_AES128_GCM96, nil
	case "aes256-gcm96":
		return keysutil.KeyType_AES256_GCM96, nil
	case "chacha20-poly1305":
		return keysutil.KeyType_ChaCha20_Poly1305, nil
	case "ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "ed25519", "rsa-2048", "rsa-3072", "rsa-4096",
		"hmac", "managed_key", "aes128-cmac", "aes256-cmac", "ml-dsa", "hybrid":
		return 0, fmt.Errorf("key type %v is not supported by the transit dev server", name)
	default:
		return 0, fmt.Errorf("unknown key type %v", name)
	}
}

func (b *backend) pathListKeys() *framework.Path {
	return &framework.Path{
		Pattern: "keys/?$",
		Callbacks: map[logical.Operation]framework.OperationFunc{
			logical.ListOperation: b.pathKeysList,
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
		Callbacks: map[logical.Operation]framework.OperationFunc{
			logical.UpdateOperation: b.pathPolicyWrite,
			logical.ReadOperation:   b.pathPolicyRead,
			logical.DeleteOperation: b.pathPolicyDelete,
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
		Callbacks: map[logical.Operation]framework.OperationFunc{
			logical.UpdateOperation: b.pathKeysConfigWrite,
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

func (b *backend) pathRotate() *framework.Path {
	return &framework.Path{
		Pattern: "keys/" + framework.GenericNameRegex("name") + "/rotate",
		Fields: map[string]*framework.FieldSchema{
			"name": {Type: framework.TypeString, Description: "Name of the key"},
		},
		Callbacks: map[logical.Operation]framework.OperationFunc{
			logical.UpdateOperation: b.pathRotateWrite,
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

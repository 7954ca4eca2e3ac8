package transit

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/errutil"
	"github.com/hashicorp/vault/sdk/helper/keysutil"
	"github.com/hashicorp/vault/sdk/logical"
)

// errNonceNotAllowed is Vault's answer to a nonce on a key that would ignore it.
var errNonceNotAllowed = errors.New("provided nonce not allowed for this key")

// batchItem is one entry of batch_input (or the single, non-batch request).
type batchItem struct {
	Context        string
	Plaintext      string
	Ciphertext     string
	Nonce          string
	AssociatedData string
	Reference      string
	KeyVersion     int

	decodedContext []byte
	decodedNonce   []byte
}

// encryptResult is one entry of an encrypt or rewrap batch_results, in Vault's JSON shape.
type encryptResult struct {
	Ciphertext string `json:"ciphertext,omitempty"`
	KeyVersion int    `json:"key_version,omitempty"`
	Reference  string `json:"reference"`
	Error      string `json:"error,omitempty"`
}

// decryptResult is one entry of a decrypt batch_results, in Vault's JSON shape.
type decryptResult struct {
	Plaintext string `json:"plaintext"`
	Reference string `json:"reference"`
	Error     string `json:"error,omitempty"`
}

// assocData feeds a request's base64 associated_data to keysutil as AEAD additional data.
type assocData string

// GetAssociatedData implements keysutil.AssociatedDataFactory.
func (a assocData) GetAssociatedData() ([]byte, error) {
	return base64.StdEncoding.DecodeString(string(a))
}

// batchOutcome tracks what happened across a batch; it decides the status code as Vault does.
type batchOutcome struct {
	successes, userErrors, internalErrors bool
}

// record files err under the right class and returns its text for the item's "error" field.
func (o *batchOutcome) record(err error) string {
	var internal errutil.InternalError
	if errors.As(err, &internal) {
		o.internalErrors = true
	} else {
		o.userErrors = true
	}
	return err.Error()
}

// respond turns a batch response into Vault's status: any failed item makes the whole answer
// 400 (500 if only internal errors), still carrying batch_results, unless some items succeeded
// and the caller set partial_failure_response_code.
func (o batchOutcome) respond(d *framework.FieldData, req *logical.Request, resp *logical.Response) (*logical.Response, error) {
	if !o.userErrors && !o.internalErrors {
		return resp, nil
	}
	code := http.StatusBadRequest
	if !o.userErrors {
		code = http.StatusInternalServerError
	}
	if raw, ok := d.GetOk("partial_failure_response_code"); ok && o.successes {
		if v := raw.(int); v < 1 || v > 599 {
			resp.AddWarning(fmt.Sprintf("invalid HTTP response code override from partial_failure_response_code, reverting to %d", code))
		} else {
			code = v
		}
	}
	return logical.RespondWithStatusCode(resp, req, code)
}

// stringField reads an optional string member of a batch item: absent and null are "", any
// other non-string is a decoding error in mapstructure's words (Vault's wording).
func stringField(item map[string]any, i int, key string, dst *string, errs *[]string) {
	v, has := item[key]
	if !has || v == nil {
		return
	}
	s, ok := v.(string)
	if !ok {
		*errs = append(*errs, fmt.Sprintf("'[%d].%s' expected type 'string', got unconvertible type '%T'", i, key, v))
		return
	}
	*dst = s
}

// decodeBatchInput decodes batch_input as Vault's transit engine does. It is the entry point for
// untrusted request bytes after JSON parsing and has a fuzz target.
func decodeBatchInput(src any, requirePlaintext, requireCiphertext bool) ([]batchItem, error) {
	if src == nil {
		return nil, nil
	}
	items, ok := src.([]any)
	if !ok {
		return nil, fmt.Errorf("source data must be an array or slice, got %T", src)
	}
	out := make([]batchItem, len(items))
	var errs []string
	for i, raw := range items {
		item, ok := raw.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("[%d] expected a map, got '%T'", i, raw)
		}
		stringField(item, i, "context", &out[i].Context, &errs)
		stringField(item, i, "nonce", &out[i].Nonce, &errs)
		stringField(item, i, "associated_data", &out[i].AssociatedData, &errs)
		stringField(item, i, "reference", &out[i].Reference, &errs)
		if _, has := item["ciphertext"]; has {
			stringField(item, i, "ciphertext", &out[i].Ciphertext, &errs)
		} else if requireCiphertext {
			errs = append(errs, fmt.Sprintf("'[%d].ciphertext' missing ciphertext to decrypt", i))
		}
		// Vault refuses null for plaintext (an empty plaintext must be "").
		if v, has := item["plaintext"]; has {
			if s, ok := v.(string); ok {
				out[i].Plaintext = s
			} else {
				errs = append(errs, fmt.Sprintf("'[%d].plaintext' expected type 'string', got unconvertible type '%T'", i, v))
			}
		} else if requirePlaintext {
			errs = append(errs, fmt.Sprintf("'[%d].plaintext' missing plaintext to encrypt", i))
		}
		if v, has := item["key_version"]; has && v != nil {
			switch n := v.(type) {
			case json.Number:
				k, err := n.Int64()
				if err != nil {
					errs = append(errs, fmt.Sprintf(`error decoding %T into [%d].key_version: strconv.ParseInt: parsing "%s": invalid syntax`, v, i, n))
				} else {
					out[i].KeyVersion = int(k)
				}
			case int:
				out[i].KeyVersion = n
			default:
				errs = append(errs, fmt.Sprintf("'[%d].key_version' expected type 'int', got unconvertible type '%T'", i, v))
			}
		}
	}
	if len(errs) > 0 {
		// mapstructure's multi-error wording, which Vault passes through.
		return nil, fmt.Errorf("%d error(s) decoding:\n\n* %s", len(errs), strings.Join(errs, "\n* "))
	}
	return out, nil
}

// decodeContextAndNonce base64-decodes an item's context and nonce in place.
func (it *batchItem) decodeContextAndNonce() error {
	var err error
	if it.Context != "" {
		if it.decodedContext, err = base64.StdEncoding.DecodeString(it.Context); err != nil {
			return err
		}
	}
	if it.Nonce != "" {
		if it.decodedNonce, err = base64.StdEncoding.DecodeString(it.Nonce); err != nil {
			return err
		}
	}
	return nil
}

// checkContexts enforces Vault's rule that context is set in all items or in none.
func checkContexts(items []batchItem) *logical.Response {
	contextSet := items[0].Context != ""
	for _, it := range items {
		if (it.Context != "") != contextSet {
			return logical.ErrorResponse("context should be set either in all the request blocks or in none")
		}
	}
	return nil
}

// nonceAllowed reports whether keysutil would use a caller's nonce (only convergent v1 keys).
func nonceAllowed(p *keysutil.Policy) bool {
	switch p.Type {
	case keysutil.KeyType_AES128_GCM96, keysutil.KeyType_AES256_GCM96, keysutil.KeyType_ChaCha20_Poly1305:
		return p.ConvergentEncryption && p.ConvergentVersion == 1
	}
	return false
}

// factories returns the keysutil factories an item needs (associated data), or an item error.
func factories(p *keysutil.Policy, i int, it batchItem) ([]any, error) {
	if it.AssociatedData == "" {
		return nil, nil
	}
	if !p.Type.AssociatedDataSupported() {
		return nil, errutil.UserError{Err: fmt.Sprintf("'[%d].associated_data' provided for non-AEAD cipher suite %v", i, p.Type.String())}
	}
	return []any{assocData(it.AssociatedData)}, nil
}

// cryptFields are the request fields shared by encrypt, decrypt and rewrap.
func cryptFields() map[string]*framework.FieldSchema {
	return map[string]*framework.FieldSchema{
		"name":                          {Type: framework.TypeString, Description: "Name of the key"},
		"plaintext":                     {Type: framework.TypeString, Description: "Base64 plaintext"},
		"ciphertext":                    {Type: framework.TypeString, Description: "vault:vN:... ciphertext"},
		"context":                       {Type: framework.TypeString, Description: "Base64 context for derived keys"},
		"nonce":                         {Type: framework.TypeString, Description: "Base64 nonce (convergent v1 keys only)"},
		"associated_data":               {Type: framework.TypeString, Description: "Base64 AEAD associated data"},
		"key_version":                   {Type: framework.TypeInt, Description: "Key version to encrypt with (0 = latest)"},
		"type":                          {Type: framework.TypeString, Default: "aes256-gcm96", Description: "Key type when encrypt creates the key"},
		"convergent_encryption":         {Type: framework.TypeBool, Description: "Convergent encryption when encrypt creates the key"},
		"batch_input":                   {Type: framework.TypeSlice, Description: "Batch of items"},
		"partial_failure_response_code": {Type: framework.TypeInt, Description: "Status for a batch where some items failed"},
	}
}

func (b *backend) pathEncrypt() *framework.Path {
	return &framework.Path{
		Pattern: "encrypt/" + framework.GenericNameRegex("name"),
		Fields:  cryptFields(),
		Callbacks: map[logical.Operation]framework.OperationFunc{
			logical.CreateOperation: b.pathEncryptWrite,
			logical.UpdateOperation: b.pathEncryptWrite,
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

// singleOrBatch reads batch_input, or the single item from the top-level fields.
func singleOrBatch(d *framework.FieldData, requirePlaintext, requireCiphertext bool) ([]batchItem, bool, *logical.Response, error) {
	if raw := d.Raw["batch_input"]; raw != nil {
		items, err := decodeBatchInput(raw, requirePlaintext, requireCiphertext)
		if err != nil {
			return nil, true, nil, fmt.Errorf("failed to parse batch input: %w", err)
		}
		if len(items) == 0 {
			return nil, true, logical.ErrorResponse("missing batch input to process"), logical.ErrInvalidRequest
		}
		return items, true, nil, nil
	}
	it := batchItem{
		Context:        d.Get("context").(string),
		Nonce:          d.Get("nonce").(string),
		AssociatedData: d.Get("associated_data").(string),
		KeyVersion:     d.Get("key_version").(int),
		Ciphertext:     d.Get("ciphertext").(string),
	}
	if requirePlaintext {
		v, ok, err := d.GetOkErr("plaintext")
		if err != nil {
			return nil, false, nil, err
		}
		if !ok {
			return nil, false, logical.ErrorResponse("missing plaintext to encrypt"), logical.ErrInvalidRequest
		}
		it.Plaintext = v.(string)
	}
	if requireCiphertext && it.Ciphertext == "" {
		return nil, false, logical.ErrorResponse("missing ciphertext to decrypt"), logical.ErrInvalidRequest
	}
	return []batchItem{it}, false, nil, nil
}

// singleError is the answer to a failed non-batch request: 400 with the item's error, or a 500
// when keysutil reported an internal error.
func singleError(msg string, o batchOutcome) (*logical.Response, error) {
	if o.internalErrors {
		return nil, errutil.InternalError{Err: msg}
	}
	return logical.ErrorResponse(msg), logical.ErrInvalidRequest
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
		if it.Nonce != "" && !nonceAllowed(p) {
			results[i].Error = out.record(errutil.UserError{Err: errNonceNotAllowed.Error()})
			continue
		}
		f, err := factories(p, i, it)
		if err != nil {
			results[i].Error = out.record(err)
			continue
		}
		ct, err := p.EncryptWithFactory(it.KeyVersion, it.decodedContext, it.decodedNonce, it.Plaintext, f...)
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
	if req.Operation == logical.CreateOperation && !upserted {
		resp.AddWarning("Attempted creation of the key during the encrypt operation, but it was created beforehand")
	}
	return out.respond(d, req, resp)
}

func (b *backend) pathDecrypt() *framework.Path {
	return &framework.Path{
		Pattern: "decrypt/" + framework.GenericNameRegex("name"),
		Fields:  cryptFields(),
		Callbacks: map[logical.Operation]framework.OperationFunc{
			logical.UpdateOperation: b.pathDecryptWrite,
		},
		HelpSynopsis: "Decrypt a vault:vN: ciphertext with a named key.",
	}
}

// prepareCiphertextItems checks contexts and decodes each item's context and nonce, filing
// failures as item errors (shared by decrypt and rewrap).
func prepareCiphertextItems(items []batchItem, out *batchOutcome, setErr func(i int, msg string)) *logical.Response {
	if r := checkContexts(items); r != nil {
		return r
	}
	for i := range items {
		if items[i].Ciphertext == "" {
			setErr(i, out.record(errutil.UserError{Err: "missing ciphertext to decrypt"}))
			continue
		}
		if err := items[i].decodeContextAndNonce(); err != nil {
			setErr(i, out.record(errutil.UserError{Err: err.Error()}))
		}
	}
	return nil
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

func (b *backend) pathRewrap() *framework.Path {
	return &framework.Path{
		Pattern: "rewrap/" + framework.GenericNameRegex("name"),
		Fields:  cryptFields(),
		Callbacks: map[logical.Operation]framework.OperationFunc{
			logical.UpdateOperation: b.pathRewrapWrite,
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
		Callbacks: map[logical.Operation]framework.OperationFunc{
			logical.UpdateOperation: b.pathDatakeyWrite,
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

	p, _, err := b.getPolicy(ctx, keysutil.PolicyRequest{Storage: req.Storage, Name: d.Get("name").(string)})
	if err != nil {
		return nil, err
	}
	if p == nil {
		return logical.ErrorResponse("encryption key not found"), logical.ErrInvalidRequest
	}
	p.Lock(false)
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

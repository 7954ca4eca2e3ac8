package transit

// The request decoding and batch answering shared by the encrypt, decrypt and rewrap paths:
// batch_input items, per-item results and the status code of a batch, as Vault's transit engine
// has them in path_encrypt.go and path_decrypt.go.

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

// ciphertextItems reads the items of a decrypt or rewrap request and, for each, the error that
// keeps it from being tried ("" for none): a missing ciphertext, an undecodable context or
// nonce. Mixed contexts refuse the whole request.
func ciphertextItems(d *framework.FieldData, out *batchOutcome) ([]batchItem, bool, []string, *logical.Response, error) {
	items, batch, errResp, err := singleOrBatch(d, false, true)
	if errResp != nil || err != nil {
		return nil, false, nil, errResp, err
	}
	if r := checkContexts(items); r != nil {
		return nil, false, nil, r, logical.ErrInvalidRequest
	}
	errs := make([]string, len(items))
	for i := range items {
		if items[i].Ciphertext == "" {
			errs[i] = out.record(errutil.UserError{Err: "missing ciphertext to decrypt"})
			continue
		}
		if err := items[i].decodeContextAndNonce(); err != nil {
			errs[i] = out.record(errutil.UserError{Err: err.Error()})
		}
	}
	return items, batch, errs, nil, nil
}

// eachCiphertext answers a decrypt or rewrap request: it reads the items, read-locks the named
// key and decrypts every item that can be tried, with the keysutil factories factoriesFor gives
// it; then turns each plaintext into the item's result (which counts the success).
func eachCiphertext[R batchResult[R]](ctx context.Context, b *backend, req *logical.Request, d *framework.FieldData,
	factoriesFor func(p *keysutil.Policy, i int, it batchItem) ([]any, error),
	then func(p *keysutil.Policy, i int, it batchItem, plaintext string, f []any, out *batchOutcome) R,
) (*logical.Response, error) {
	var out batchOutcome
	items, batch, errs, errResp, err := ciphertextItems(d, &out)
	if errResp != nil || err != nil {
		return errResp, err
	}
	p, errResp, err := b.readKey(ctx, req, d.Get("name").(string))
	if p == nil {
		return errResp, err
	}
	defer p.Unlock()
	results := make([]R, len(items))
	for i, it := range items {
		if errs[i] != "" {
			results[i] = results[i].withError(errs[i])
			continue
		}
		f, err := factoriesFor(p, i, it)
		var pt string
		if err == nil {
			pt, err = p.DecryptWithFactory(it.decodedContext, it.decodedNonce, it.Ciphertext, f...)
		}
		if err != nil {
			results[i] = results[i].withError(out.record(err))
			continue
		}
		results[i] = then(p, i, it, pt, f, &out)
	}
	return answer(d, req, batch, items, results, out, "")
}

// readKey loads the named key ring and read-locks it (the caller unlocks it); a key that does
// not exist is Vault's "encryption key not found".
func (b *backend) readKey(ctx context.Context, req *logical.Request, name string) (*keysutil.Policy, *logical.Response, error) {
	p, _, err := b.getPolicy(ctx, keysutil.PolicyRequest{Storage: req.Storage, Name: name})
	if err != nil {
		return nil, nil, err
	}
	if p == nil {
		return nil, logical.ErrorResponse("encryption key not found"), logical.ErrInvalidRequest
	}
	p.Lock(false)
	return p, nil, nil
}

// encryptFactories checks an item's nonce against the key and returns its factories, for the
// two paths that encrypt (encrypt, rewrap).
func encryptFactories(p *keysutil.Policy, i int, it batchItem) ([]any, error) {
	if it.Nonce != "" && !nonceAllowed(p) {
		return nil, errutil.UserError{Err: errNonceNotAllowed.Error()}
	}
	return factories(p, i, it)
}

// encryptItem encrypts plaintext (base64) for item i under the item's key version.
func encryptItem(p *keysutil.Policy, i int, it batchItem, plaintext string, f []any, out *batchOutcome) encryptResult {
	ct, err := p.EncryptWithFactory(it.KeyVersion, it.decodedContext, it.decodedNonce, plaintext, f...)
	if err == nil && ct == "" {
		err = errutil.UserError{Err: fmt.Sprintf("empty ciphertext returned for input item %d", i)}
	}
	if err != nil {
		return encryptResult{Error: out.record(err)}
	}
	out.successes = true
	ver := it.KeyVersion
	if ver == 0 {
		ver = p.LatestVersion
	}
	return encryptResult{Ciphertext: ct, KeyVersion: ver}
}

// batchResult is one item's answer (encryptResult, decryptResult), as answer needs it.
type batchResult[R any] interface {
	withError(msg string) R
	withReference(ref string) R
	failure() string
	single() map[string]any // the fields of a non-batch answer
}

func (r encryptResult) withError(msg string) encryptResult     { r.Error = msg; return r }
func (r encryptResult) withReference(ref string) encryptResult { r.Reference = ref; return r }
func (r encryptResult) failure() string                        { return r.Error }
func (r encryptResult) single() map[string]any {
	return map[string]any{"ciphertext": r.Ciphertext, "key_version": r.KeyVersion}
}

func (r decryptResult) withError(msg string) decryptResult     { r.Error = msg; return r }
func (r decryptResult) withReference(ref string) decryptResult { r.Reference = ref; return r }
func (r decryptResult) failure() string                        { return r.Error }
func (r decryptResult) single() map[string]any                 { return map[string]any{"plaintext": r.Plaintext} }

// answer is the response to a batch (batch_results, each with its item's reference) or to a
// single item (its fields, or its error as singleError words it), with an optional warning,
// under the status batchOutcome decides.
func answer[R batchResult[R]](d *framework.FieldData, req *logical.Request, batch bool, items []batchItem, results []R, out batchOutcome, warning string) (*logical.Response, error) {
	resp := &logical.Response{}
	if batch {
		for i := range results {
			results[i] = results[i].withReference(items[i].Reference)
		}
		resp.Data = map[string]any{"batch_results": results}
	} else {
		if msg := results[0].failure(); msg != "" {
			return singleError(msg, out)
		}
		resp.Data = results[0].single()
	}
	if warning != "" {
		resp.AddWarning(warning)
	}
	return out.respond(d, req, resp)
}

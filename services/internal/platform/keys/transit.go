package keys

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vault "github.com/hashicorp/vault/api"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/securemsg/securemsg/services/internal/platform/tracing"
)

// DefaultKubernetesJWTFile is where Kubernetes mounts a pod's service-account token.
const DefaultKubernetesJWTFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// Config says how to reach and log in to Vault. Exactly one of Token and KubernetesRole is set.
type Config struct {
	// Addr is Vault's URL, e.g. https://vault.vault.svc:8200.
	Addr string
	// Token is a Vault token (dev, tests, operators). Never logged.
	Token string
	// KubernetesRole selects Kubernetes auth: the Vault role bound to the service account.
	KubernetesRole string
	// KubernetesMount is where the Kubernetes auth method is mounted (default "kubernetes").
	KubernetesMount string
	// KubernetesJWTFile is the service-account token file (default DefaultKubernetesJWTFile).
	KubernetesJWTFile string
	// TransitMount is where the Transit engine is mounted (default "transit").
	TransitMount string
	// CACert is a PEM file of CA certificates for Vault's TLS certificate; empty means the
	// system roots.
	CACert string
	// ServerName is the TLS server name to verify, when it differs from Addr's host.
	ServerName string
	// Timeout bounds each request (default 10s).
	Timeout time.Duration
	// MaxRetries is how many times a 5xx or connection error is retried, with backoff. Zero
	// means none: a caller that must fail fast (the keyring under an outage) wants that.
	MaxRetries int
}

// validName matches mount paths and key names: no path traversal, no query characters.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, errors.New("vault address is empty"))
	}
	switch {
	case c.Token == "" && c.KubernetesRole == "":
		errs = append(errs, errors.New("set a vault token or a kubernetes role"))
	case c.Token != "" && c.KubernetesRole != "":
		errs = append(errs, errors.New("set only one of vault token and kubernetes role"))
	}
	for _, m := range []struct{ what, v string }{{"transit mount", c.TransitMount}, {"kubernetes mount", c.KubernetesMount}} {
		if m.v != "" && !validName.MatchString(m.v) {
			errs = append(errs, fmt.Errorf("invalid %s %q", m.what, m.v))
		}
	}
	if c.MaxRetries < 0 {
		errs = append(errs, errors.New("max retries is negative"))
	}
	return errors.Join(errs...)
}

// Transit is a client of Vault's Transit engine. It is safe for concurrent use.
type Transit struct {
	client   *vault.Client
	cfg      Config
	loginMu  sync.Mutex
	requests atomic.Uint64
}

// countingTransport counts every HTTP request sent to Vault (retries included), so tests and
// benchmarks can see real calls.
type countingTransport struct {
	next http.RoundTripper
	n    *atomic.Uint64
}

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.n.Add(1)
	return t.next.RoundTrip(r)
}

// NewTransit builds a Transit client from cfg and logs in (Kubernetes auth) when configured.
func NewTransit(ctx context.Context, cfg Config) (*Transit, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("keys: vault config: %w", err)
	}
	cfg.TransitMount = cmpOr(cfg.TransitMount, "transit")
	cfg.KubernetesMount = cmpOr(cfg.KubernetesMount, "kubernetes")
	cfg.KubernetesJWTFile = cmpOr(cfg.KubernetesJWTFile, DefaultKubernetesJWTFile)
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}

	// DefaultConfig reads VAULT_* variables; every field that matters is set explicitly below
	// so the environment cannot change where we connect or how.
	vc := vault.DefaultConfig()
	if vc.Error != nil {
		return nil, fmt.Errorf("keys: vault client defaults: %w", vc.Error)
	}
	vc.Address = cfg.Addr
	vc.Timeout = cfg.Timeout
	vc.MaxRetries = cfg.MaxRetries
	if err := vc.ConfigureTLS(&vault.TLSConfig{CACert: cfg.CACert, TLSServerName: cfg.ServerName}); err != nil {
		return nil, fmt.Errorf("keys: vault tls: %w", err)
	}
	t := &Transit{cfg: cfg}
	vc.HttpClient.Transport = countingTransport{next: vc.HttpClient.Transport, n: &t.requests}
	client, err := vault.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("keys: vault client: %w", err)
	}
	client.ClearToken() // NewClient may have picked VAULT_TOKEN from the environment
	client.SetNamespace("")
	t.client = client
	if cfg.KubernetesRole == "" {
		client.SetToken(cfg.Token)
		return t, nil
	}
	if err := t.login(ctx); err != nil {
		return nil, err
	}
	return t, nil
}

func cmpOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// Requests is the number of HTTP requests sent to Vault so far.
func (t *Transit) Requests() uint64 { return t.requests.Load() }

// login performs a Kubernetes auth login with the service-account JWT.
func (t *Transit) login(ctx context.Context) error {
	t.loginMu.Lock()
	defer t.loginMu.Unlock()
	jwt, err := os.ReadFile(t.cfg.KubernetesJWTFile)
	if err != nil {
		return fmt.Errorf("keys: read service-account token: %w", err)
	}
	t.client.ClearToken()
	secret, err := t.client.Logical().WriteWithContext(ctx, "auth/"+t.cfg.KubernetesMount+"/login", map[string]any{
		"role": t.cfg.KubernetesRole,
		"jwt":  strings.TrimSpace(string(jwt)),
	})
	if err != nil {
		return classify("kubernetes login", err)
	}
	if secret == nil || secret.Auth == nil || secret.Auth.ClientToken == "" {
		return errors.New("keys: kubernetes login returned no token")
	}
	t.client.SetToken(secret.Auth.ClientToken)
	return nil
}

// call runs fn and, with Kubernetes auth, logs in again once if Vault refused the token. Inside
// a sampled trace the call is a client span "transit <op>" (op is a constant: the key name,
// the data and the token never reach it).
func (t *Transit) call(ctx context.Context, op string, fn func() (*vault.Secret, error)) (_ *vault.Secret, err error) {
	if trace.SpanContextFromContext(ctx).IsSampled() {
		var span trace.Span
		_, span = tracing.Tracer().Start(ctx, "transit "+op, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("securemsg.transit.operation", op)))
		defer func() {
			if err != nil {
				span.SetStatus(codes.Error, "")
			}
			span.End()
		}()
	}
	secret, err := fn()
	err = classify(op, err)
	if errors.Is(err, ErrPermissionDenied) && t.cfg.KubernetesRole != "" {
		if lerr := t.login(ctx); lerr != nil {
			return nil, lerr
		}
		secret, err = fn()
		err = classify(op, err)
	}
	if err != nil {
		return nil, err
	}
	return secret, nil
}

func (t *Transit) path(op, keyName string) (string, error) {
	if !validName.MatchString(keyName) {
		return "", fmt.Errorf("keys: invalid transit key name %q", keyName)
	}
	return t.cfg.TransitMount + "/" + op + "/" + keyName, nil
}

func (t *Transit) write(ctx context.Context, op, keyName string, data map[string]any) (*vault.Secret, error) {
	p, err := t.path(op, keyName)
	if err != nil {
		return nil, err
	}
	return t.call(ctx, op, func() (*vault.Secret, error) { return t.client.Logical().WriteWithContext(ctx, p, data) })
}

// CreateKey creates an aes256-gcm96 Transit key; an existing key is left as it is.
func (t *Transit) CreateKey(ctx context.Context, keyName string) error {
	_, err := t.write(ctx, "keys", keyName, map[string]any{"type": "aes256-gcm96"})
	return err
}

// GenerateDataKey asks Vault for a new 256-bit DEK: its plaintext (hold it only in memory) and
// its wrapped form (store it). The caller should clear the plaintext when done.
func (t *Transit) GenerateDataKey(ctx context.Context, keyName string) (plaintext []byte, wrapped string, err error) {
	secret, err := t.write(ctx, "datakey/plaintext", keyName, map[string]any{"bits": 256})
	if err != nil {
		return nil, "", err
	}
	b64, _ := dataString(secret, "plaintext")
	wrapped, _ = dataString(secret, "ciphertext")
	plaintext, derr := base64.StdEncoding.DecodeString(b64)
	if derr != nil || len(plaintext) != 32 || !strings.HasPrefix(wrapped, "vault:v") {
		return nil, "", errors.New("keys: vault datakey: malformed response")
	}
	return plaintext, wrapped, nil
}

// Decrypt unwraps a wrapped DEK. The result is secret: hold it in memory only.
func (t *Transit) Decrypt(ctx context.Context, keyName, wrapped string) ([]byte, error) {
	if _, err := WrappedKeyVersion(wrapped); err != nil {
		return nil, err
	}
	secret, err := t.write(ctx, "decrypt", keyName, map[string]any{"ciphertext": wrapped})
	if err != nil {
		return nil, err
	}
	b64, _ := dataString(secret, "plaintext")
	pt, derr := base64.StdEncoding.DecodeString(b64)
	if derr != nil {
		return nil, errors.New("keys: vault decrypt: malformed response")
	}
	return pt, nil
}

// RewrapResult is the outcome for one wrapped DEK of a batch rewrap.
type RewrapResult struct {
	Wrapped string // the DEK under the latest key version; empty when Err is set
	Version int
	Err     error // e.g. ErrKeyVersionRetired, ErrInvalidWrappedKey
}

// Rewrap rewraps wrapped DEKs under the key's latest version in one batch_input request; no
// plaintext leaves Vault. Results are in input order. A per-item failure is in its result; the
// error return is for the request as a whole.
func (t *Transit) Rewrap(ctx context.Context, keyName string, wrapped []string) ([]RewrapResult, error) {
	if len(wrapped) == 0 {
		return nil, nil
	}
	batch := make([]map[string]any, len(wrapped))
	for i, w := range wrapped {
		batch[i] = map[string]any{"ciphertext": w}
	}
	p, err := t.path("rewrap", keyName)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(map[string]any{"batch_input": batch})
	if err != nil {
		return nil, err
	}
	secret, err := t.call(ctx, "rewrap", func() (*vault.Secret, error) {
		// Raw, because Vault answers 400 when any item fails yet still carries batch_results,
		// which the plain Write would drop.
		resp, err := t.client.Logical().WriteRawWithContext(ctx, p, body)
		if resp != nil {
			defer func() { _ = resp.Body.Close() }() // read-only: the secret is parsed before return
		}
		if resp != nil && resp.StatusCode == http.StatusBadRequest {
			if s, perr := vault.ParseSecret(resp.Body); perr == nil && s != nil && s.Data["batch_results"] != nil {
				return s, nil
			}
		}
		if err != nil {
			return nil, err
		}
		return vault.ParseSecret(resp.Body)
	})
	if err != nil {
		return nil, err
	}
	raw, ok := secret.Data["batch_results"].([]any)
	if !ok || len(raw) != len(wrapped) {
		return nil, errors.New("keys: vault rewrap: malformed response")
	}
	out := make([]RewrapResult, len(raw))
	for i, r := range raw {
		item, _ := r.(map[string]any)
		if msg, _ := item["error"].(string); msg != "" {
			code := 400
			out[i].Err = classify("rewrap", &vault.ResponseError{StatusCode: code, Errors: []string{msg}})
			continue
		}
		out[i].Wrapped, _ = item["ciphertext"].(string)
		v, err := WrappedKeyVersion(out[i].Wrapped)
		if err != nil {
			out[i] = RewrapResult{Err: err}
			continue
		}
		out[i].Version = v
	}
	return out, nil
}

// Rotate adds a new version to the key; new DEKs are wrapped under it from now on.
func (t *Transit) Rotate(ctx context.Context, keyName string) error {
	p, err := t.path("keys", keyName)
	if err != nil {
		return err
	}
	_, err = t.call(ctx, "rotate", func() (*vault.Secret, error) {
		return t.client.Logical().WriteWithContext(ctx, p+"/rotate", nil)
	})
	return err
}

// KeyInfo describes a Transit key's versions.
type KeyInfo struct {
	Name                 string
	Type                 string
	LatestVersion        int
	MinDecryptionVersion int
	MinEncryptionVersion int
	Versions             []int // versions still present, ascending
}

// ReadKey reads a key's versions and policy.
func (t *Transit) ReadKey(ctx context.Context, keyName string) (KeyInfo, error) {
	p, err := t.path("keys", keyName)
	if err != nil {
		return KeyInfo{}, err
	}
	secret, err := t.call(ctx, "read key", func() (*vault.Secret, error) { return t.client.Logical().ReadWithContext(ctx, p) })
	if err != nil {
		return KeyInfo{}, err
	}
	if secret == nil {
		return KeyInfo{}, fmt.Errorf("vault read key: %w", ErrKeyNotFound)
	}
	info := KeyInfo{Name: keyName}
	info.Type, _ = dataString(secret, "type")
	info.LatestVersion = dataInt(secret, "latest_version")
	info.MinDecryptionVersion = dataInt(secret, "min_decryption_version")
	info.MinEncryptionVersion = dataInt(secret, "min_encryption_version")
	if versions, ok := secret.Data["keys"].(map[string]any); ok {
		for k := range versions {
			if v, err := strconv.Atoi(k); err == nil {
				info.Versions = append(info.Versions, v)
			}
		}
		slices.Sort(info.Versions)
	}
	return info, nil
}

// SetMinDecryptionVersion makes wrapped DEKs under versions below v unusable. Callers must
// first check that coverage is 100% (see Coverage).
func (t *Transit) SetMinDecryptionVersion(ctx context.Context, keyName string, v int) error {
	p, err := t.path("keys", keyName)
	if err != nil {
		return err
	}
	_, err = t.call(ctx, "set min_decryption_version", func() (*vault.Secret, error) {
		return t.client.Logical().WriteWithContext(ctx, p+"/config", map[string]any{"min_decryption_version": v})
	})
	return err
}

// EnableTransit mounts the Transit engine at the configured path unless it is mounted already
// (dev stacks and tests; production mounts it with Vault's own tooling).
func (t *Transit) EnableTransit(ctx context.Context) error {
	mounts, err := t.client.Sys().ListMountsWithContext(ctx)
	if err != nil {
		return classify("list mounts", err)
	}
	if _, ok := mounts[t.cfg.TransitMount+"/"]; ok {
		return nil
	}
	err = t.client.Sys().MountWithContext(ctx, t.cfg.TransitMount, &vault.MountInput{Type: "transit"})
	if err != nil && !strings.Contains(err.Error(), "already in use") {
		return classify("mount transit", err)
	}
	return nil
}

func dataString(s *vault.Secret, key string) (string, bool) {
	if s == nil {
		return "", false
	}
	v, ok := s.Data[key].(string)
	return v, ok
}

func dataInt(s *vault.Secret, key string) int {
	if s == nil {
		return 0
	}
	switch v := s.Data[key].(type) {
	case json.Number:
		n, _ := v.Int64()
		return int(n)
	case float64:
		return int(v)
	case int:
		return v
	}
	return 0
}

// WrappedKeyVersion returns N from a wrapped DEK "vault:vN:...".
func WrappedKeyVersion(wrapped string) (int, error) {
	rest, ok := strings.CutPrefix(wrapped, "vault:v")
	if !ok {
		return 0, ErrInvalidWrappedKey
	}
	num, body, ok := strings.Cut(rest, ":")
	v, err := strconv.Atoi(num)
	if !ok || err != nil || v < 1 || body == "" {
		return 0, ErrInvalidWrappedKey
	}
	return v, nil
}

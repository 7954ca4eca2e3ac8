package keys

import (
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// vaultStub answers like Vault for the few paths a test needs; unit tests of error mapping and
// auth use it because a real Vault cannot be made to answer 503 or run Kubernetes auth here.
func vaultStub(t *testing.T, handler http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	return srv
}

func vaultError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []string{msg}})
}

func TestTransitErrorMapping(t *testing.T) {
	t.Parallel()
	const echoed = "vault:v1:c2VjcmV0LWNpcGhlcnRleHQtYnl0ZXMtaGVyZQ=="
	tests := []struct {
		name string
		code int
		msg  string
		want error
	}{
		{"sealed", 503, "Vault is sealed", ErrKeyServiceUnavailable},
		{"internal error", 500, "internal error", ErrKeyServiceUnavailable},
		{"rate limited", 429, "rate limit quota exceeded", ErrKeyServiceUnavailable},
		{"retired version", 400, "ciphertext or signature version is disallowed by policy (too old)", ErrKeyVersionRetired},
		{"missing key", 400, "encryption key not found", ErrKeyNotFound},
		{"forbidden", 403, "permission denied", ErrPermissionDenied},
		{"bad ciphertext", 400, "invalid ciphertext: " + echoed, ErrInvalidWrappedKey},
		{"other 4xx", 400, "something else about " + echoed, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := vaultStub(t, func(w http.ResponseWriter, r *http.Request) { vaultError(w, tc.code, tc.msg) })
			tr, err := NewTransit(t.Context(), Config{Addr: srv.URL, Token: "t"})
			if err != nil {
				t.Fatal(err)
			}
			_, err = tr.Decrypt(t.Context(), "k", "vault:v1:YWJj")
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("Decrypt error = %v, want %v", err, tc.want)
			}
			if strings.Contains(err.Error(), "c2VjcmV0") || strings.Contains(err.Error(), "YWJj") {
				t.Fatalf("error %q echoes ciphertext", err)
			}
		})
	}
	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.NotFoundHandler())
		addr := srv.URL
		srv.Close()
		tr, err := NewTransit(t.Context(), Config{Addr: addr, Token: "t"})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := tr.GenerateDataKey(t.Context(), "k"); !errors.Is(err, ErrKeyServiceUnavailable) {
			t.Fatalf("GenerateDataKey error = %v, want ErrKeyServiceUnavailable", err)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"token", Config{Addr: "http://127.0.0.1:8200", Token: "x"}, true},
		{"kubernetes", Config{Addr: "https://vault:8200", KubernetesRole: "messaging"}, true},
		{"no auth", Config{Addr: "http://127.0.0.1:8200"}, false},
		{"both auths", Config{Addr: "http://x", Token: "t", KubernetesRole: "r"}, false},
		{"no addr", Config{Token: "t"}, false},
		{"bad mount", Config{Addr: "http://x", Token: "t", TransitMount: "../sys"}, false},
	}
	for _, tc := range tests {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// TestKubernetesAuthOverTLS logs in with a service-account JWT over TLS verified against a CA
// file and a server name, and logs in again when Vault starts refusing the token.
func TestKubernetesAuthOverTLS(t *testing.T) {
	t.Parallel()
	var logins, tokenN atomic.Int64
	var current atomic.Value
	current.Store("")
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/auth/k8s-prod/login":
			var body map[string]string
			_ = json.NewDecoder(r.Body).Decode(&body)
			if body["role"] != "messaging" || body["jwt"] != "service-account-jwt" {
				vaultError(w, 400, "invalid role or jwt")
				return
			}
			logins.Add(1)
			tok := "s.token-" + string(rune('a'+tokenN.Add(1)))
			current.Store(tok)
			_ = json.NewEncoder(w).Encode(map[string]any{"auth": map[string]any{"client_token": tok, "lease_duration": 60}})
		case "/v1/transit/keys/messaging":
			if r.Header.Get("X-Vault-Token") != current.Load().(string) {
				vaultError(w, 403, "permission denied")
				return
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{
				"type": "aes256-gcm96", "latest_version": 3, "min_decryption_version": 2,
				"min_encryption_version": 0, "keys": map[string]any{"2": 1700000000, "3": 1700000001},
			}})
		default:
			vaultError(w, 404, "no handler")
		}
	}))
	t.Cleanup(srv.Close)

	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	jwtFile := filepath.Join(dir, "token")
	if err := os.WriteFile(jwtFile, []byte("service-account-jwt\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// httptest's certificate names example.com, not 127.0.0.1's host name: ServerName selects it.
	addr := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	tr, err := NewTransit(t.Context(), Config{
		Addr: addr, KubernetesRole: "messaging", KubernetesMount: "k8s-prod", KubernetesJWTFile: jwtFile,
		CACert: caFile, ServerName: "example.com",
	})
	if err != nil {
		t.Fatal(err)
	}
	info, err := tr.ReadKey(t.Context(), "messaging")
	if err != nil {
		t.Fatal(err)
	}
	if info.LatestVersion != 3 || info.MinDecryptionVersion != 2 || len(info.Versions) != 2 || info.Versions[0] != 2 {
		t.Fatalf("ReadKey = %+v, want latest 3, min_decryption 2, versions [2 3]", info)
	}
	current.Store("revoked") // Vault forgets the token: the client must log in again, once
	if _, err := tr.ReadKey(t.Context(), "messaging"); err != nil {
		t.Fatalf("ReadKey after token revocation: %v", err)
	}
	if got := logins.Load(); got != 2 {
		t.Fatalf("logins = %d, want 2", got)
	}

	// Without the CA file the certificate is not trusted.
	_, err = NewTransit(t.Context(), Config{Addr: addr, KubernetesRole: "messaging", KubernetesMount: "k8s-prod", KubernetesJWTFile: jwtFile, ServerName: "example.com"})
	if err == nil {
		t.Fatal("NewTransit without the CA: error = nil, want a TLS failure")
	}
}

package keys

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
)

// policyDir holds the Vault policies production binds to the services' Kubernetes auth roles.
const policyDir = "../../../../deploy/vault/policies"

// policyPath matches one path stanza of the repository's policies, which use exact paths and
// capabilities only; anything else in a file fails loadPolicy, so this reader cannot silently
// grant less (or more) than Vault would.
var policyPath = regexp.MustCompile(`(?s)path\s+"([^"]+)"\s*\{\s*capabilities\s*=\s*\[([^\]]*)\]\s*\}`)

// loadPolicy reads a policy file into path → capabilities.
func loadPolicy(t *testing.T, name string) map[string][]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(policyDir, name+".hcl"))
	if err != nil {
		t.Fatal(err)
	}
	var body strings.Builder
	for line := range strings.SplitSeq(string(raw), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			body.WriteString(line + "\n")
		}
	}
	src := body.String()
	out := map[string][]string{}
	for _, m := range policyPath.FindAllStringSubmatch(src, -1) {
		if strings.ContainsAny(m[1], "*+") {
			t.Fatalf("%s: path %q has a glob or segment wildcard; teach loadPolicy Vault's matching first", name, m[1])
		}
		for c := range strings.SplitSeq(m[2], ",") {
			if c = strings.Trim(strings.TrimSpace(c), `"`); c != "" {
				out[m[1]] = append(out[m[1]], c)
			}
		}
	}
	if rest := strings.TrimSpace(policyPath.ReplaceAllString(src, "")); rest != "" {
		t.Fatalf("%s: cannot read %q", name, rest)
	}
	return out
}

// policyVault answers like Vault behind a token that has only the given policy: every request
// whose capability the policy lacks gets Vault's 403, and is recorded.
type policyVault struct {
	policy map[string][]string

	mu     sync.Mutex
	keys   map[string]bool // Transit keys that exist
	denied []string        // "METHOD path (capability)" Vault refused
	// onDeniedCreate runs when a create is refused (a concurrent creator, for one test).
	onDeniedCreate func(v *policyVault, key string)
}

func (v *policyVault) allowed(path, capability string) bool {
	return slices.Contains(v.policy[path], capability)
}

func (v *policyVault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/v1/")
	op, key, _ := strings.Cut(strings.TrimPrefix(path, "transit/"), "/")
	if op == "datakey" {
		op, key = "datakey/plaintext", strings.TrimPrefix(key, "plaintext/")
	}
	v.mu.Lock()
	exists := v.keys[key]
	capability := "update"
	switch {
	case r.Method == http.MethodGet:
		capability = "read"
	case op == "keys" && !exists:
		// Vault asks for create on a write to a path that does not exist yet, update otherwise;
		// the service policies grant neither on transit/keys.
		capability = "create"
	}
	if !v.allowed(path, capability) {
		v.denied = append(v.denied, r.Method+" "+path+" ("+capability+")")
		hook := v.onDeniedCreate
		v.mu.Unlock()
		if hook != nil && capability == "create" {
			hook(v, key)
		}
		vaultError(w, http.StatusForbidden, "1 error occurred:\n\t* permission denied\n\n")
		return
	}
	defer v.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	reply := func(data map[string]any) { _ = json.NewEncoder(w).Encode(map[string]any{"data": data}) }
	dek := base64.StdEncoding.EncodeToString(make([]byte, 32))
	switch {
	case op == "keys" && r.Method == http.MethodGet && !exists:
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"errors":[]}`))
	case op == "keys" && r.Method == http.MethodGet:
		reply(map[string]any{"type": "aes256-gcm96", "latest_version": 1, "min_decryption_version": 1, "keys": map[string]any{"1": 1700000000}})
	case op == "keys":
		v.keys[key] = true
		reply(map[string]any{"type": "aes256-gcm96", "latest_version": 1})
	case !exists:
		vaultError(w, http.StatusBadRequest, "encryption key not found")
	case op == "datakey/plaintext":
		reply(map[string]any{"plaintext": dek, "ciphertext": "vault:v1:d3JhcHBlZA=="})
	case op == "decrypt":
		reply(map[string]any{"plaintext": dek})
	default:
		vaultError(w, http.StatusNotFound, "no handler for route")
	}
}

func (v *policyVault) deniedRequests() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.denied)
}

// TestServiceStartNeedsOnlyItsPolicy runs each service's Vault start-up (OpenTransit) and its
// DEK calls under a Vault that enforces the service's production policy from deploy/vault: with
// the key created by the operator, nothing the service does may be refused; without it, start
// fails naming the key, and the only refusal is the create.
func TestServiceStartNeedsOnlyItsPolicy(t *testing.T) {
	t.Parallel()
	for _, svc := range []string{"messaging", "attachment", "notification"} {
		key := "securemsg-" + svc
		t.Run(svc, func(t *testing.T) {
			t.Parallel()
			policy := loadPolicy(t, "securemsg-"+svc)

			t.Run("key created by the operator", func(t *testing.T) {
				t.Parallel()
				v := &policyVault{policy: policy, keys: map[string]bool{key: true}}
				srv := vaultStub(t, v.ServeHTTP)
				tr, err := OpenTransit(t.Context(), Config{Addr: srv.URL, Token: "t"}, key)
				if err != nil {
					t.Fatalf("OpenTransit: %v (refused: %v)", err, v.deniedRequests())
				}
				pt, wrapped, err := tr.GenerateDataKey(t.Context(), key)
				if err != nil {
					t.Fatalf("GenerateDataKey: %v", err)
				}
				if _, err := tr.Decrypt(t.Context(), key, wrapped); err != nil || len(pt) != 32 {
					t.Fatalf("Decrypt: %v", err)
				}
				if d := v.deniedRequests(); len(d) > 0 {
					t.Errorf("Vault refused %v: the policy lacks what the service does", d)
				}
			})

			t.Run("key missing", func(t *testing.T) {
				t.Parallel()
				v := &policyVault{policy: policy, keys: map[string]bool{}}
				srv := vaultStub(t, v.ServeHTTP)
				_, err := OpenTransit(t.Context(), Config{Addr: srv.URL, Token: "t"}, key)
				if !errors.Is(err, ErrKeyNotFound) || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "setup-transit.sh") {
					t.Fatalf("OpenTransit without the key = %v, want ErrKeyNotFound naming %s and who creates it", err, key)
				}
				if d := v.deniedRequests(); !slices.Equal(d, []string{"PUT transit/keys/" + key + " (create)"}) {
					t.Errorf("refused %v, want only the create", d)
				}
			})

			t.Run("key created while starting", func(t *testing.T) {
				t.Parallel()
				// Read says 404, the create is refused, and by then the operator (or another
				// replica with a broader token) has created it: start goes on.
				v := &policyVault{policy: policy, keys: map[string]bool{}, onDeniedCreate: func(v *policyVault, k string) {
					v.mu.Lock()
					v.keys[k] = true
					v.mu.Unlock()
				}}
				srv := vaultStub(t, v.ServeHTTP)
				if _, err := OpenTransit(t.Context(), Config{Addr: srv.URL, Token: "t"}, key); err != nil {
					t.Fatalf("OpenTransit: %v", err)
				}
			})
		})
	}
}

// TestEnsureKeyReadDenied: a policy without read on the key fails start with a message that
// says which capability on which path is missing.
func TestEnsureKeyReadDenied(t *testing.T) {
	t.Parallel()
	v := &policyVault{policy: map[string][]string{}, keys: map[string]bool{"k": true}}
	srv := vaultStub(t, v.ServeHTTP)
	_, err := OpenTransit(t.Context(), Config{Addr: srv.URL, Token: "t"}, "k")
	if !errors.Is(err, ErrPermissionDenied) || !strings.Contains(err.Error(), "transit/keys/k") || !strings.Contains(err.Error(), "read") {
		t.Fatalf("OpenTransit with no read = %v, want ErrPermissionDenied naming transit/keys/k and read", err)
	}
	if d := v.deniedRequests(); !slices.Equal(d, []string{"GET transit/keys/k (read)"}) {
		t.Errorf("requests refused = %v, want only the read (no create attempted)", d)
	}
}

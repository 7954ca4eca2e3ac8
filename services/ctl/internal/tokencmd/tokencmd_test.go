package tokencmd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/securemsg/securemsg/services/ctl/internal/tokencmd"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/policy"
	"github.com/securemsg/securemsg/services/internal/testkit"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := tokencmd.NewCommand()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(t.Context())
	return out.String(), err
}

func TestTokenCommandAgainstFakeIssuer(t *testing.T) {
	t.Parallel()
	var gotQuery string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/dev/token" {
			http.NotFound(w, r)
			return
		}
		gotQuery = r.URL.RawQuery
		if r.URL.Query().Get("user") == "nobody" {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_request", "error_description": "unknown user"})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "tok.en.value", "token_type": "Bearer", "expires_in": 600})
	}))
	t.Cleanup(srv.Close)

	tests := []struct {
		name      string
		args      []string
		want      string
		wantErr   string
		wantQuery string
	}{
		{"mints and prints", []string{"patient", "--issuer", srv.URL, "--ttl", "5m"}, "tok.en.value\n", "", "ttl=5m0s&user=patient"},
		{"unknown user", []string{"nobody", "--issuer", srv.URL}, "", "unknown user", ""},
		{"non-loopback issuer refused", []string{"patient", "--issuer", "http://203.0.113.9:8400"}, "", "loopback", ""},
		{"bad issuer url", []string{"patient", "--issuer", "ftp://127.0.0.1"}, "", "http(s)", ""},
		{"needs a user", []string{}, "", "accepts 1 arg", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := run(t, tt.args...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("token %v error = %v, want containing %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("token %v = %q, %v, want %q", tt.args, got, err, tt.want)
			}
			if gotQuery != tt.wantQuery {
				t.Errorf("issuer query = %q, want %q", gotQuery, tt.wantQuery)
			}
		})
	}
}

// TestTokenCommandAgainstDevIssuer mints from the stack's dev issuer and checks the token passes
// the services' verifier: the claim names and audience the two sides use agree.
func TestTokenCommandAgainstDevIssuer(t *testing.T) {
	t.Parallel()
	stack := testkit.LoadStack()
	testkit.RequireTCP(t, "dev OIDC issuer", strings.TrimPrefix(stack.OIDCIssuerURL, "http://"))
	v, err := auth.NewVerifier(t.Context(), auth.VerifierConfig{Issuer: stack.OIDCIssuerURL, Audience: "securemsg"})
	if err != nil {
		t.Fatalf("NewVerifier(dev issuer) error = %v", err)
	}
	t.Cleanup(func() { _ = v.Close(context.Background()) })
	engine, err := policy.New(filepath.Join("..", "..", "..", "..", "deploy", "policies"),
		policy.Options{Recorder: auth.RecorderFunc(func(context.Context, auth.DecisionRecord) error { return nil })})
	if err != nil {
		t.Fatal(err)
	}
	// Each seeded user may make its characteristic call under the shipped policies, except
	// staff-nomfa, which exists to be refused.
	calls := map[string]struct {
		action string
		allow  bool
	}{
		"patient":     {"messaging.GetThread", true},
		"proxy":       {"messaging.GetThread", true},
		"teen":        {"messaging.SendMessage", true},
		"clinician":   {"messaging.ClaimThread", true},
		"staff-nomfa": {"messaging.ClaimThread", false},
		"auditor":     {"audit.QueryAuditEvents", true},
		"admin":       {"notification.UpdateTemplate", true},
	}
	for user, call := range calls {
		t.Run(user, func(t *testing.T) {
			out, err := run(t, user, "--issuer", stack.OIDCIssuerURL)
			if err != nil {
				t.Fatalf("token %s error = %v", user, err)
			}
			p, err := v.Verify(t.Context(), strings.TrimSpace(out))
			if err != nil {
				t.Fatalf("Verify(token for %s) error = %v", user, err)
			}
			if len(p.Roles) == 0 || p.ClientID == "" || len(p.Scopes) == 0 {
				t.Errorf("Verify(token for %s) = %+v, want roles, client id and scopes", user, p)
			}
			svc, _, _ := strings.Cut(call.action, ".")
			if d := engine.Evaluate(p, call.action, policy.APIResource(svc), policy.Context{}); d.Allowed != call.allow {
				t.Errorf("Evaluate(%s, %s) = allowed %v (reasons %v), want %v", user, call.action, d.Allowed, d.Reasons, call.allow)
			}
		})
	}
}

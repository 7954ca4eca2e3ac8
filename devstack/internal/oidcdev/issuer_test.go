package oidcdev

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// newTestServer serves a fresh issuer; its URL is the issuer URL, as in the dev stack.
func newTestServer(t *testing.T, setup ...func(*Issuer)) *httptest.Server {
	t.Helper()
	key, err := LoadOrCreateKey(filepath.Join(t.TempDir(), "oidc", "signing-key.pem"))
	if err != nil {
		t.Fatalf("LoadOrCreateKey() error = %v", err)
	}
	// The issuer URL must be the server's own, so listen first and build the handler after.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	iss, err := New("http://"+ln.Addr().String(), key)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	for _, f := range setup {
		f(iss)
	}
	srv := httptest.NewUnstartedServer(iss.Handler(slog.New(slog.DiscardHandler)))
	_ = srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

func getJSON(t *testing.T, method, url string, v any) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s %s: decode: %v", method, url, err)
	}
	return resp.StatusCode
}

// TestTokenVerifiesAgainstServedJWKS mints a token for every seeded user over HTTP, discovers the
// JWKS the way a relying party does, verifies the signature, issuer and audience, and checks the
// claims the auth helper relies on.
func TestTokenVerifiesAgainstServedJWKS(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t)

	var disco struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if code := getJSON(t, http.MethodGet, srv.URL+"/.well-known/openid-configuration", &disco); code != http.StatusOK {
		t.Fatalf("discovery status = %d, want 200", code)
	}
	if disco.Issuer != srv.URL {
		t.Errorf("discovery issuer = %q, want %q", disco.Issuer, srv.URL)
	}
	set, err := jwk.Fetch(t.Context(), disco.JWKSURI)
	if err != nil {
		t.Fatalf("jwk.Fetch(%s) error = %v", disco.JWKSURI, err)
	}
	if set.Len() != 1 {
		t.Fatalf("JWKS has %d keys, want 1", set.Len())
	}
	if key, _ := set.Key(0); !key.Has(jwk.KeyIDKey) {
		t.Errorf("JWKS key has no kid")
	}

	tests := []struct {
		name       string
		user       string
		method     string
		roles      []string
		patientID  string
		carePools  []string
		amr        []string
		wantGrants int
	}{
		{name: "patient", user: "patient", method: http.MethodPost, roles: []string{"patient"}, patientID: "p-1001", amr: []string{"pwd"}},
		{name: "proxy", user: "proxy", method: http.MethodPost, roles: []string{"proxy"}, amr: []string{"pwd"}, wantGrants: 2},
		{name: "teen", user: "teen", method: http.MethodGet, roles: []string{"patient"}, patientID: "p-2001", amr: []string{"pwd"}},
		{name: "clinician", user: "clinician", method: http.MethodPost, roles: []string{"clinician"}, carePools: []string{"pool-cardiology"}, amr: []string{"pwd", "otp"}},
		{name: "staff without MFA", user: "staff-nomfa", method: http.MethodPost, roles: []string{"staff"}, amr: []string{"pwd"}},
		{name: "auditor", user: "auditor", method: http.MethodPost, roles: []string{"auditor"}, amr: []string{"pwd", "otp"}},
		{name: "admin", user: "admin", method: http.MethodPost, roles: []string{"admin"}, amr: []string{"pwd", "otp"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var resp struct {
				AccessToken string `json:"access_token"`
				TokenType   string `json:"token_type"`
				ExpiresIn   int64  `json:"expires_in"`
			}
			if code := getJSON(t, tt.method, srv.URL+"/dev/token?user="+tt.user, &resp); code != http.StatusOK {
				t.Fatalf("mint %s status = %d, want 200", tt.user, code)
			}
			if resp.TokenType != "Bearer" || resp.ExpiresIn < 890 || resp.ExpiresIn > 900 {
				t.Errorf("token response = %s/%ds, want Bearer/~900s", resp.TokenType, resp.ExpiresIn)
			}
			_, err := jwt.Parse([]byte(resp.AccessToken), jwt.WithKeySet(set),
				jwt.WithIssuer(srv.URL), jwt.WithAudience(Audience))
			if err != nil {
				t.Fatalf("jwt.Parse(%s token) error = %v", tt.user, err)
			}
			var claims struct {
				Aud         any          `json:"aud"`
				Sub         string       `json:"sub"`
				Roles       []string     `json:"roles"`
				PatientID   string       `json:"patient_id"`
				CarePools   []string     `json:"care_pools"`
				AMR         []string     `json:"amr"`
				AuthTime    int64        `json:"auth_time"`
				ClientID    string       `json:"client_id"`
				Scope       string       `json:"scope"`
				ProxyGrants []ProxyGrant `json:"proxy_grants"`
			}
			// Decode the payload as sent, not as jwx re-serialises it.
			parts := strings.Split(resp.AccessToken, ".")
			if len(parts) != 3 {
				t.Fatalf("token has %d parts, want 3", len(parts))
			}
			payload, err := base64.RawURLEncoding.DecodeString(parts[1])
			if err != nil {
				t.Fatalf("decode payload: %v", err)
			}
			if err := json.Unmarshal(payload, &claims); err != nil {
				t.Fatalf("decode claims: %v", err)
			}
			if claims.Aud != Audience {
				t.Errorf("aud = %v, want the string %q", claims.Aud, Audience)
			}
			if claims.Sub != tt.user {
				t.Errorf("sub = %q, want %q", claims.Sub, tt.user)
			}
			if diff := cmp.Diff(tt.roles, claims.Roles); diff != "" {
				t.Errorf("roles mismatch (-want +got):\n%s", diff)
			}
			if claims.PatientID != tt.patientID {
				t.Errorf("patient_id = %q, want %q", claims.PatientID, tt.patientID)
			}
			if diff := cmp.Diff(tt.carePools, claims.CarePools); diff != "" {
				t.Errorf("care_pools mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.amr, claims.AMR); diff != "" {
				t.Errorf("amr mismatch (-want +got):\n%s", diff)
			}
			if claims.ClientID != ClientID {
				t.Errorf("client_id = %q, want %q", claims.ClientID, ClientID)
			}
			if claims.Scope == "" {
				t.Errorf("scope is empty")
			}
			if age := time.Since(time.Unix(claims.AuthTime, 0)); age < -time.Second || age > time.Minute {
				t.Errorf("auth_time is %s old, want about now", age)
			}
			if len(claims.ProxyGrants) != tt.wantGrants {
				t.Fatalf("proxy_grants = %d entries, want %d", len(claims.ProxyGrants), tt.wantGrants)
			}
			for _, g := range claims.ProxyGrants {
				if (g.PatientID != "p-1001" && g.PatientID != "p-2001") || !slices.Contains(g.Scope, "read") || time.Unix(g.ExpiresAt, 0).Before(time.Now()) {
					t.Errorf("proxy grant = %+v, want p-1001 or p-2001 with read scope, not expired", g)
				}
			}
		})
	}
}

func TestMintOptions(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t)
	tests := []struct {
		name     string
		query    string
		wantCode int
	}{
		{name: "unknown user", query: "user=mallory", wantCode: http.StatusBadRequest},
		{name: "ttl too long", query: "user=patient&ttl=48h", wantCode: http.StatusBadRequest},
		{name: "ttl not a duration", query: "user=patient&ttl=soon", wantCode: http.StatusBadRequest},
		{name: "short ttl in seconds", query: "user=patient&ttl=60", wantCode: http.StatusOK},
		{name: "stale auth_time", query: "user=clinician&auth_age=2h", wantCode: http.StatusOK},
		{name: "scope override", query: "user=patient&scope=messages.read", wantCode: http.StatusOK},
		{name: "another client app", query: "user=clinician&client_id=careteam-app", wantCode: http.StatusOK},
		{name: "malformed client id", query: "user=clinician&client_id=a%20b", wantCode: http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var body map[string]any
			if code := getJSON(t, http.MethodPost, srv.URL+"/dev/token?"+tt.query, &body); code != tt.wantCode {
				t.Errorf("POST /dev/token?%s status = %d, want %d (%v)", tt.query, code, tt.wantCode, body)
			}
		})
	}
}

func TestRawFormatAndClaims(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost,
		srv.URL+"/dev/token?user=clinician&format=raw&ttl=120&auth_age=3600&scope=messages.read", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	// Signature is checked in TestTokenVerifiesAgainstServedJWKS; here only the options matter.
	tok, err := jwt.ParseInsecure([]byte(strings.TrimSpace(string(raw))))
	if err != nil {
		t.Fatalf("jwt.ParseInsecure(raw) error = %v", err)
	}
	exp, _ := tok.Expiration()
	iat, _ := tok.IssuedAt()
	if got := exp.Sub(iat); got != 2*time.Minute {
		t.Errorf("exp - iat = %s, want 2m", got)
	}
	var authTime float64
	if err := tok.Get(ClaimAuthTime, &authTime); err != nil {
		t.Fatalf("Get(auth_time) error = %v", err)
	}
	if got := iat.Unix() - int64(authTime); got != 3600 {
		t.Errorf("iat - auth_time = %ds, want 3600", got)
	}
	var scope string
	if err := tok.Get(ClaimScope, &scope); err != nil || scope != "messages.read" {
		t.Errorf("scope = %q (%v), want messages.read", scope, err)
	}
}

func TestLoadOrCreateKeyKeepsKey(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "k.pem")
	first, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatalf("LoadOrCreateKey(new) error = %v", err)
	}
	second, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatalf("LoadOrCreateKey(existing) error = %v", err)
	}
	if !first.Equal(second) {
		t.Errorf("LoadOrCreateKey(existing) returned a different key, want the stored one")
	}
}

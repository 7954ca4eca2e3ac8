package oidcdev

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// postForm posts form to the issuer's token endpoint, with Basic credentials when user is set,
// and decodes the JSON answer.
func postForm(t *testing.T, endpoint string, form url.Values, user, pass string) (int, map[string]any, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", endpoint, err)
	}
	defer func() { _ = resp.Body.Close() }()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("decode token response: %v", err)
	}
	return resp.StatusCode, out, resp.Header
}

// TestClientCredentials: the SCIM client gets a token for itself with its secret, by either
// client authentication method: sub is the client id, the role provisioner, the scope
// directory.provision, and no login claims. A wrong or missing secret, an unknown client, a
// scope beyond the client's, or another grant type are refused with the OAuth error codes.
func TestClientCredentials(t *testing.T) {
	t.Parallel()
	secrets, err := LoadOrCreateClientSecrets(filepath.Join(t.TempDir(), "clients"))
	if err != nil {
		t.Fatalf("LoadOrCreateClientSecrets() error = %v", err)
	}
	secret := secrets["securemsg-scim"]
	if len(secret) < 40 {
		t.Fatalf("secret of securemsg-scim = %d characters, want a 32-byte random one", len(secret))
	}
	srv := newTestServer(t, func(i *Issuer) { i.SetClientSecrets(secrets) })

	var disco struct {
		TokenEndpoint string   `json:"token_endpoint"`
		Grants        []string `json:"grant_types_supported"`
	}
	getJSON(t, http.MethodGet, srv.URL+"/.well-known/openid-configuration", &disco)
	if disco.TokenEndpoint != srv.URL+"/token" || len(disco.Grants) == 0 {
		t.Fatalf("discovery = %+v, want the token endpoint and its grants", disco)
	}
	set, err := jwk.Fetch(t.Context(), srv.URL+"/jwks.json")
	if err != nil {
		t.Fatal(err)
	}

	grant := url.Values{"grant_type": {"client_credentials"}}
	post := url.Values{"grant_type": {"client_credentials"}, "client_id": {"securemsg-scim"}, "client_secret": {secret}, "scope": {"directory.provision"}}
	for name, try := range map[string]func() (int, map[string]any, http.Header){
		"basic": func() (int, map[string]any, http.Header) {
			return postForm(t, disco.TokenEndpoint, grant, "securemsg-scim", secret)
		},
		"post": func() (int, map[string]any, http.Header) { return postForm(t, disco.TokenEndpoint, post, "", "") },
	} {
		code, body, hdr := try()
		if code != http.StatusOK || body["token_type"] != "Bearer" || body["scope"] != "directory.provision" || hdr.Get("Cache-Control") != "no-store" {
			t.Fatalf("%s: token response = %d %v (Cache-Control %q)", name, code, body, hdr.Get("Cache-Control"))
		}
		tok, _ := body["access_token"].(string)
		if _, err := jwt.Parse([]byte(tok), jwt.WithKeySet(set), jwt.WithIssuer(srv.URL), jwt.WithAudience(Audience)); err != nil {
			t.Fatalf("%s: jwt.Parse() error = %v", name, err)
		}
		payload, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
		if err != nil {
			t.Fatal(err)
		}
		var claims map[string]any
		if err := json.Unmarshal(payload, &claims); err != nil {
			t.Fatal(err)
		}
		if claims["sub"] != "securemsg-scim" || claims["client_id"] != "securemsg-scim" || claims["scope"] != "directory.provision" {
			t.Errorf("%s: claims = %v, want the client as subject and its scope", name, claims)
		}
		if roles, _ := claims["roles"].([]any); len(roles) != 1 || roles[0] != "provisioner" {
			t.Errorf("%s: roles = %v, want [provisioner]", name, claims["roles"])
		}
		for _, login := range []string{"auth_time", "amr", "name", "patient_id", "care_pools", "proxy_grants"} {
			if _, ok := claims[login]; ok {
				t.Errorf("%s: a client-credentials token carries %s", name, login)
			}
		}
	}

	for _, tc := range []struct {
		name       string
		form       url.Values
		user, pass string
		status     int
		code       string
	}{
		{"wrong secret", grant, "securemsg-scim", secret + "x", http.StatusUnauthorized, "invalid_client"},
		{"no secret", url.Values{"grant_type": {"client_credentials"}, "client_id": {"securemsg-scim"}}, "", "", http.StatusUnauthorized, "invalid_client"},
		{"a person's name", grant, "admin", secret, http.StatusUnauthorized, "invalid_client"},
		{"the portal", grant, ClientID, secret, http.StatusUnauthorized, "invalid_client"},
		{"scope beyond the client's", url.Values{"grant_type": {"client_credentials"}, "scope": {"directory.provision admin"}}, "securemsg-scim", secret, http.StatusBadRequest, "invalid_scope"},
		{"two authentication methods", url.Values{"grant_type": {"client_credentials"}, "client_secret": {secret}}, "securemsg-scim", secret, http.StatusBadRequest, "invalid_request"},
		{"password grant", url.Values{"grant_type": {"password"}, "username": {"admin"}}, "securemsg-scim", secret, http.StatusBadRequest, "unsupported_grant_type"},
		{"no grant type", url.Values{}, "securemsg-scim", secret, http.StatusBadRequest, "invalid_request"},
	} {
		code, body, hdr := postForm(t, srv.URL+"/token", tc.form, tc.user, tc.pass)
		if code != tc.status || body["error"] != tc.code {
			t.Errorf("%s: = %d %v, want %d %s", tc.name, code, body, tc.status, tc.code)
		}
		if _, ok := body["access_token"]; ok {
			t.Errorf("%s: a refusal carries a token", tc.name)
		}
		if strings.Contains(body["error_description"].(string), secret) {
			t.Errorf("%s: the refusal echoes the secret", tc.name)
		}
		if code == http.StatusUnauthorized && hdr.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", tc.name)
		}
	}
}

// TestLoadOrCreateClientSecretsKeepsThem: a secret is created once, 0600, and read back.
func TestLoadOrCreateClientSecretsKeepsThem(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "clients")
	first, err := LoadOrCreateClientSecrets(dir)
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadOrCreateClientSecrets(dir)
	if err != nil || again["securemsg-scim"] != first["securemsg-scim"] {
		t.Fatalf("second load = %v, %v; want the same secret", again, err)
	}
	info, err := os.Stat(filepath.Join(dir, "securemsg-scim.secret"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("secret file = %v, %v; want mode 0600", info, err)
	}
}

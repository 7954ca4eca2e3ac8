package oidcdev

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwt"
)

// MachineClient is a client application that gets tokens for itself, not for a person, with
// the OAuth client-credentials grant (RFC 6749 §4.4): no one logs in, so its tokens carry
// neither auth_time nor amr, and their sub is the client id.
type MachineClient struct {
	ClientID string
	Roles    []string
	Scopes   []string
}

// ScopeDirectoryProvision is the scope of an identity provider's provisioning client.
const ScopeDirectoryProvision = "directory.provision"

// RoleProvisioner is the role of an identity provider's provisioning client.
const RoleProvisioner = "provisioner"

// MachineClients are the dev stack's machine clients, by client id. securemsg-scim stands for an
// organisation's identity provider calling /scim/v2; the dev directory registers it as a
// PROVISIONING app (devstack/directory-bootstrap.json).
var MachineClients = map[string]MachineClient{
	"securemsg-scim": {ClientID: "securemsg-scim", Roles: []string{RoleProvisioner}, Scopes: []string{ScopeDirectoryProvision}},
}

// MachineTTL is the lifetime of a client-credentials token: short, as identity providers
// fetch a new one whenever theirs runs out.
const MachineTTL = 10 * time.Minute

// LoadOrCreateClientSecrets reads each machine client's secret from dir/<client_id>.secret,
// creating it (0600, 32 random bytes, base64url) on first use: the dev stack's stand-in for the
// secret an operator would give the identity provider.
func LoadOrCreateClientSecrets(dir string) (map[string]string, error) {
	out := map[string]string{}
	for id := range MachineClients {
		path := filepath.Join(dir, id+".secret")
		data, err := os.ReadFile(path)
		switch {
		case err == nil:
			out[id] = strings.TrimSpace(string(data))
			if out[id] == "" {
				return nil, fmt.Errorf("client secret %s is empty", path)
			}
			continue
		case errors.Is(err, fs.ErrNotExist):
		default:
			return nil, fmt.Errorf("read client secret: %w", err)
		}
		raw := make([]byte, 32)
		if _, err := rand.Read(raw); err != nil {
			return nil, fmt.Errorf("generate client secret: %w", err)
		}
		secret := base64.RawURLEncoding.EncodeToString(raw)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create client secret folder: %w", err)
		}
		if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("write client secret: %w", err)
		}
		out[id] = secret
	}
	return out, nil
}

// SetClientSecrets gives the issuer the machine clients' secrets (LoadOrCreateClientSecrets);
// a machine client without one cannot get a token.
func (i *Issuer) SetClientSecrets(secrets map[string]string) {
	i.secrets = secrets
}

// tokenError is an OAuth error response (RFC 6749 §5.2).
type tokenError struct {
	status      int
	code        string
	description string
}

func (e *tokenError) Error() string { return e.code + ": " + e.description }

// clientCredentials answers a client-credentials token request: the client authenticates with
// HTTP Basic (client_secret_basic) or in the form (client_secret_post), and may ask for fewer
// scopes than it has, never more.
func (i *Issuer) clientCredentials(r *http.Request) (tokenResponse, error) {
	id, secret, basic := r.BasicAuth()
	if basic {
		// RFC 6749 §2.3.1: the Basic credentials are form-encoded before being joined.
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return tokenResponse{}, &tokenError{http.StatusUnauthorized, "invalid_client", "client authentication failed"}
		}
		if r.PostForm.Has("client_secret") {
			return tokenResponse{}, &tokenError{http.StatusBadRequest, "invalid_request", "use one client authentication method"}
		}
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	client, known := MachineClients[id]
	want, hasSecret := i.secrets[id]
	if !known || !hasSecret || secret == "" || subtle.ConstantTimeCompare([]byte(secret), []byte(want)) != 1 {
		return tokenResponse{}, &tokenError{http.StatusUnauthorized, "invalid_client", "client authentication failed"}
	}
	scopes := client.Scopes
	if asked := strings.Fields(r.PostForm.Get("scope")); len(asked) > 0 {
		for _, s := range asked {
			if !slices.Contains(client.Scopes, s) {
				return tokenResponse{}, &tokenError{http.StatusBadRequest, "invalid_scope", "the client may not ask for that scope"}
			}
		}
		scopes = asked
	}
	now := i.now().Truncate(time.Second)
	exp := now.Add(MachineTTL)
	scope := scopeString(scopes)
	tok := jwt.NewBuilder().
		Issuer(i.url).
		Subject(client.ClientID).
		Audience([]string{Audience}).
		IssuedAt(now).
		NotBefore(now).
		Expiration(exp).
		Claim(ClaimRoles, client.Roles).
		Claim(ClaimClientID, client.ClientID).
		Claim(ClaimScope, scope)
	signed, err := i.sign(tok)
	if err != nil {
		return tokenResponse{}, err
	}
	return tokenResponse{accessToken: signed, scope: scope, expires: exp}, nil
}

// token serves POST /token, the OAuth token endpoint. It grants client_credentials to the
// machine clients and exchanges a browser client's authorization code (authorize.go); a quick
// token for a test or a shell comes from /dev/token.
func (i *Issuer) token(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	fail := func(e *tokenError) {
		if e.status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="oidcdev"`)
		}
		writeJSON(w, e.status, map[string]string{"error": e.code, "error_description": e.description})
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		fail(&tokenError{http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded"})
		return
	}
	if err := r.ParseForm(); err != nil {
		fail(&tokenError{http.StatusBadRequest, "invalid_request", "the body is not a form"})
		return
	}
	var (
		resp tokenResponse
		err  error
	)
	switch r.PostForm.Get("grant_type") {
	case "client_credentials":
		resp, err = i.clientCredentials(r)
	case "authorization_code":
		resp, err = i.authorizationCodeGrant(r)
	case "":
		err = &tokenError{http.StatusBadRequest, "invalid_request", "grant_type is required"}
	default:
		err = &tokenError{http.StatusBadRequest, "unsupported_grant_type", "this issuer grants authorization_code and client_credentials"}
	}
	var te *tokenError
	if errors.As(err, &te) {
		fail(te)
		return
	}
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}
	body := map[string]any{
		"access_token": resp.accessToken,
		"token_type":   "Bearer",
		"expires_in":   int64(resp.expires.Sub(i.now()).Round(time.Second) / time.Second),
		"scope":        resp.scope,
	}
	if resp.idToken != "" {
		body["id_token"] = resp.idToken
	}
	writeJSON(w, http.StatusOK, body)
}

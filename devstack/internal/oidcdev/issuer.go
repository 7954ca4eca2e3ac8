// Package oidcdev is the dev stack's OpenID Connect issuer: it serves a discovery document and a
// JWKS, and mints signed access tokens (ES256) for the seeded demo users so that the services can
// be exercised end to end without a real identity provider. It exists only in the dev stack and
// must only ever listen on loopback: anyone who reaches it can mint any token.
package oidcdev

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// Token lifetimes: DefaultTTL unless the caller asks for another one within [1s, MaxTTL].
const (
	DefaultTTL = 15 * time.Minute
	MaxTTL     = 24 * time.Hour
)

// ErrUnknownUser is returned by Mint when the user is not one of Users.
var ErrUnknownUser = errors.New("unknown dev user")

// ErrBadRequest is returned by Mint for an out-of-range ttl or auth age.
var ErrBadRequest = errors.New("bad token request")

// Issuer signs dev tokens with one ECDSA P-256 key and publishes its public half.
type Issuer struct {
	url    string
	signer jwk.Key
	public jwk.Set
	now    func() time.Time
	// secrets are the machine clients' secrets, by client id (SetClientSecrets).
	secrets map[string]string
	// browser are the public clients that sign people in (SetBrowserClient), and codes the
	// authorization codes they have not yet exchanged.
	browserMu sync.RWMutex
	browser   map[string]BrowserClient
	codes     codeStore
}

// MintOptions adjusts one token. Zero values mean the defaults.
type MintOptions struct {
	TTL     time.Duration // lifetime; DefaultTTL when zero
	AuthAge time.Duration // how long ago auth_time lies (to test stale sessions); 0 = now
	Scope   string        // replaces the user's scopes when not empty (space-separated)
	// ClientID names another client application than the portal (ClientID), to try an
	// unregistered or care-team app.
	ClientID string
}

// LoadOrCreateKey reads the PKCS#8 PEM signing key at path, creating it (0600) on first use so
// that tokens and JWKS stay valid across restarts of the dev stack.
func LoadOrCreateKey(path string) (*ecdsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		block, _ := pem.Decode(data)
		if block == nil {
			return nil, fmt.Errorf("signing key %s: no PEM block", path)
		}
		parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("signing key %s: %w", path, err)
		}
		key, ok := parsed.(*ecdsa.PrivateKey)
		if !ok || key.Curve != elliptic.P256() {
			return nil, fmt.Errorf("signing key %s: not an ECDSA P-256 key", path)
		}
		return key, nil
	case errors.Is(err, fs.ErrNotExist):
	default:
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode signing key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create key folder: %w", err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	return key, nil
}

// New returns an issuer that names itself issuerURL and signs with key. The key id is the
// key's RFC 7638 thumbprint, so it only changes when the key does.
func New(issuerURL string, key *ecdsa.PrivateKey) (*Issuer, error) {
	signer, err := jwk.Import(key)
	if err != nil {
		return nil, fmt.Errorf("import signing key: %w", err)
	}
	if err := jwk.AssignKeyID(signer); err != nil {
		return nil, fmt.Errorf("assign key id: %w", err)
	}
	if err := signer.Set(jwk.AlgorithmKey, jwa.ES256()); err != nil {
		return nil, fmt.Errorf("set key alg: %w", err)
	}
	pub, err := signer.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	if err := pub.Set(jwk.KeyUsageKey, jwk.ForSignature); err != nil {
		return nil, fmt.Errorf("set key use: %w", err)
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		return nil, fmt.Errorf("build jwks: %w", err)
	}
	iss := &Issuer{url: strings.TrimRight(issuerURL, "/"), signer: signer, public: set, now: time.Now}
	iss.SetBrowserClient(BrowserClient{ClientID: ClientID, RedirectURIs: []string{DefaultPortalRedirectURI}})
	return iss, nil
}

// URL is the issuer identifier (the iss claim).
func (i *Issuer) URL() string { return i.url }

// PublicKeys is the JWKS the issuer serves.
func (i *Issuer) PublicKeys() jwk.Set { return i.public }

// Mint signs an access token for the named seeded user.
func (i *Issuer) Mint(name string, opts MintOptions) (string, time.Time, error) {
	user, ok := Users[name]
	if !ok {
		return "", time.Time{}, fmt.Errorf("%w %q (known: %s)", ErrUnknownUser, name, strings.Join(UserNames(), ", "))
	}
	ttl := opts.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl < time.Second || ttl > MaxTTL {
		return "", time.Time{}, fmt.Errorf("%w: ttl %s outside [1s, %s]", ErrBadRequest, ttl, MaxTTL)
	}
	if opts.AuthAge < 0 || opts.AuthAge > MaxTTL {
		return "", time.Time{}, fmt.Errorf("%w: auth age %s outside [0, %s]", ErrBadRequest, opts.AuthAge, MaxTTL)
	}
	clientID := ClientID
	if opts.ClientID != "" {
		if len(opts.ClientID) > 200 || strings.ContainsAny(opts.ClientID, " \t\r\n\"") {
			return "", time.Time{}, fmt.Errorf("%w: client_id is malformed", ErrBadRequest)
		}
		clientID = opts.ClientID
	}
	now := i.now().Truncate(time.Second)
	exp := now.Add(ttl)
	scope := scopeString(user.Scopes)
	if opts.Scope != "" {
		scope = scopeString(strings.Fields(opts.Scope))
	}
	b := jwt.NewBuilder().
		Issuer(i.url).
		Subject(user.Name).
		Audience([]string{Audience}).
		IssuedAt(now).
		NotBefore(now).
		Expiration(exp).
		Claim(ClaimAuthTime, now.Add(-opts.AuthAge).Unix()).
		Claim(ClaimAMR, user.AMR).
		Claim(ClaimRoles, user.Roles).
		Claim(ClaimClientID, clientID).
		Claim(ClaimScope, scope)
	if user.DisplayName != "" {
		b = b.Claim(ClaimName, user.DisplayName)
	}
	if user.Age > 0 {
		// Half a year past the birthday, so the age holds for the token's life.
		b = b.Claim(ClaimBirthdate, now.AddDate(-user.Age, -6, 0).Format(time.DateOnly))
	}
	if user.PatientID != "" {
		b = b.Claim(ClaimPatientID, user.PatientID)
	}
	if len(user.CarePools) > 0 {
		b = b.Claim(ClaimCarePools, user.CarePools)
	}
	if len(user.ProxyFor) > 0 {
		grants := make([]ProxyGrant, len(user.ProxyFor))
		for n, g := range user.ProxyFor {
			grants[n] = ProxyGrant{PatientID: g.PatientID, Scope: g.Scope, ExpiresAt: now.Add(GrantTTL).Unix()}
		}
		b = b.Claim(ClaimProxyGrants, grants)
	}
	signed, err := i.sign(b)
	if err != nil {
		return "", time.Time{}, err
	}
	return signed, exp, nil
}

// sign builds and signs a token with the issuer's key. Its aud is a plain string, as most
// identity providers send a single audience.
func (i *Issuer) sign(b *jwt.Builder) (string, error) {
	tok, err := b.Build()
	if err != nil {
		return "", fmt.Errorf("build token: %w", err)
	}
	tok.Options().Enable(jwt.FlattenAudience)
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256(), i.signer))
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return string(signed), nil
}

// Handler serves discovery, the JWKS and the dev-only mint endpoint:
//
//	GET  /.well-known/openid-configuration
//	GET  /jwks.json
//	POST /dev/token?user=NAME[&ttl=DURATION][&auth_age=DURATION][&scope=S][&client_id=C][&format=raw]
//	GET  /dev/token?...   (the same, for a browser or a quick curl)
//	GET  /authorize       the authorization endpoint: a persona picker for a browser client's
//	                      sign-in (code flow with PKCE S256 only)
//	POST /authorize       the pick; redirects back with a one-time code
//	POST /token           the OAuth token endpoint: grant_type=authorization_code for the
//	                      browser clients, client_credentials for the machine clients
//	                      (MachineClients), as an identity provider's SCIM client gets its token
//	GET  /healthz
//
// The token response is the OAuth one ({"access_token", "token_type", "expires_in", "scope"});
// format=raw returns the bare JWT followed by a newline, for shell use.
func (i *Issuer) Handler(log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	discovery := i.withCORS(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{
			"issuer":                                         i.url,
			"jwks_uri":                                       i.url + "/jwks.json",
			"authorization_endpoint":                         i.url + "/authorize",
			"token_endpoint":                                 i.url + "/token",
			"grant_types_supported":                          []string{"authorization_code", "client_credentials"},
			"token_endpoint_auth_methods_supported":          []string{"none", "client_secret_basic", "client_secret_post"},
			"response_types_supported":                       []string{"code"},
			"response_modes_supported":                       []string{"query"},
			"code_challenge_methods_supported":               []string{"S256"},
			"authorization_response_iss_parameter_supported": true,
			"subject_types_supported":                        []string{"public"},
			"id_token_signing_alg_values_supported":          []string{"ES256"},
			"scopes_supported": []string{"openid", ScopeMessagesRead, ScopeMessagesWrite, ScopeAttachmentsRead,
				ScopeAttachmentsWrite, ScopeNotificationsManage, ScopeAuditRead, ScopeAdmin, ScopeDirectoryProvision},
			"claims_supported": []string{ClaimIssuer, ClaimSubject, ClaimName, ClaimBirthdate, ClaimAudience, ClaimExpiration, ClaimIssuedAt,
				ClaimNotBefore, ClaimAuthTime, ClaimAMR, ClaimRoles, ClaimPatientID, ClaimCarePools,
				ClaimProxyGrants, ClaimClientID, ClaimScope},
		})
	})
	mux.HandleFunc("GET /.well-known/openid-configuration", discovery)
	mux.HandleFunc("OPTIONS /.well-known/openid-configuration", discovery)
	jwks := i.withCORS(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=60")
		writeJSON(w, http.StatusOK, i.public)
	})
	mux.HandleFunc("GET /jwks.json", jwks)
	mux.HandleFunc("OPTIONS /jwks.json", jwks)
	mux.HandleFunc("GET /authorize", i.authorize)
	mux.HandleFunc("POST /authorize", i.authorize)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("ok\n"))
	})
	mint := func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var opts MintOptions
		var err error
		if opts.TTL, err = parseDuration(q.Get("ttl")); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "ttl: " + err.Error()})
			return
		}
		if opts.AuthAge, err = parseDuration(q.Get("auth_age")); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "auth_age: " + err.Error()})
			return
		}
		opts.Scope, opts.ClientID = q.Get("scope"), q.Get("client_id")
		user := q.Get("user")
		token, exp, err := i.Mint(user, opts)
		if err != nil {
			// The error names the user and the known users only: no token material.
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": err.Error()})
			return
		}
		log.Info("minted dev token", "user", user, "expires", exp.UTC().Format(time.RFC3339))
		w.Header().Set("Cache-Control", "no-store")
		if q.Get("format") == "raw" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = w.Write([]byte(token + "\n"))
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"access_token": token,
			"token_type":   "Bearer",
			"expires_in":   int64(time.Until(exp).Round(time.Second) / time.Second),
			"scope":        scopeOf(user, opts.Scope),
		})
	}
	token := i.withCORS(i.token)
	mux.HandleFunc("POST /token", token)
	mux.HandleFunc("OPTIONS /token", token)
	mux.HandleFunc("POST /dev/token", mint)
	mux.HandleFunc("GET /dev/token", mint)
	return mux
}

func scopeOf(user, override string) string {
	if override != "" {
		return scopeString(strings.Fields(override))
	}
	return scopeString(Users[user].Scopes)
}

// parseDuration accepts a Go duration ("90s", "2h") or plain seconds ("900").
func parseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(s)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

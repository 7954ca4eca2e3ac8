// Package authtest is a test OIDC issuer: an httptest server publishing a discovery document and
// a JWKS of keys generated in the test, and a Mint method to sign tokens with them. Tests of auth,
// policy and the services use it instead of the dev issuer when they need to forge bad tokens.
package authtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// Audience is the audience Mint puts in tokens by default.
const Audience = "securemsg"

// Key is a signing key the issuer may or may not publish.
type Key struct {
	KID     string
	Alg     jwa.SignatureAlgorithm
	Private jwk.Key
	Public  jwk.Key
	// Raw is the crypto.Signer, for tests that hand-craft tokens.
	Raw crypto.Signer
}

// Issuer is a fake OIDC issuer on 127.0.0.1.
type Issuer struct {
	Server  *httptest.Server
	URL     string
	JWKSURL string

	mu        sync.Mutex
	published []*Key
	fetches   atomic.Int64
}

// NewIssuer starts an issuer publishing one RS256 key with kid "k1". It stops with the test.
func NewIssuer(tb testing.TB) *Issuer {
	tb.Helper()
	iss := &Issuer{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": iss.URL, "jwks_uri": iss.JWKSURL})
	})
	mux.HandleFunc("GET /jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		iss.fetches.Add(1)
		set := jwk.NewSet()
		iss.mu.Lock()
		for _, k := range iss.published {
			_ = set.AddKey(k.Public)
		}
		iss.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	})
	iss.Server = httptest.NewServer(mux)
	tb.Cleanup(iss.Server.Close)
	iss.URL = iss.Server.URL
	iss.JWKSURL = iss.Server.URL + "/jwks.json"
	iss.Publish(NewKey(tb, "k1", jwa.RS256()))
	return iss
}

// NewKey generates a key for alg (RS256, PS256, ES256 or EdDSA).
func NewKey(tb testing.TB, kid string, alg jwa.SignatureAlgorithm) *Key {
	tb.Helper()
	var raw crypto.Signer
	var err error
	switch alg.String() {
	case "RS256", "PS256":
		raw, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		raw, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "EdDSA":
		_, raw, err = ed25519.GenerateKey(rand.Reader)
	default:
		tb.Fatalf("NewKey: unsupported alg %s", alg)
	}
	if err != nil {
		tb.Fatalf("generate %s key: %v", alg, err)
	}
	priv, err := jwk.Import(raw)
	if err != nil {
		tb.Fatalf("import key: %v", err)
	}
	pub, err := jwk.Import(raw.Public())
	if err != nil {
		tb.Fatalf("import public key: %v", err)
	}
	for _, k := range []jwk.Key{priv, pub} {
		_ = k.Set(jwk.KeyIDKey, kid)
		_ = k.Set(jwk.AlgorithmKey, alg)
	}
	return &Key{KID: kid, Alg: alg, Private: priv, Public: pub, Raw: raw}
}

// Publish adds k to the JWKS the issuer serves.
func (i *Issuer) Publish(k *Key) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.published = append(i.published, k)
}

// Key returns the published key with kid, or nil.
func (i *Issuer) Key(kid string) *Key {
	i.mu.Lock()
	defer i.mu.Unlock()
	for _, k := range i.published {
		if k.KID == kid {
			return k
		}
	}
	return nil
}

// Fetches counts JWKS downloads (to check unknown-kid refreshes are bounded).
func (i *Issuer) Fetches() int64 { return i.fetches.Load() }

// Claims returns valid claims for sub with roles: issued now, expiring in 10 minutes, with
// auth_time now, amr ["pwd","otp"] and the scopes every role needs. Tests edit the map.
func (i *Issuer) Claims(sub string, roles ...string) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss":       i.URL,
		"aud":       []string{Audience},
		"sub":       sub,
		"iat":       now.Unix(),
		"nbf":       now.Unix(),
		"exp":       now.Add(10 * time.Minute).Unix(),
		"auth_time": now.Unix(),
		"roles":     roles,
		"amr":       []string{"pwd", "otp"},
		"client_id": "portal-web",
		"scope":     "openid messages.read messages.write attachments.read attachments.write notifications.manage audit.read admin",
	}
}

// Mint signs claims with the issuer's key kid (default "k1").
func (i *Issuer) Mint(tb testing.TB, claims map[string]any, kid ...string) string {
	tb.Helper()
	id := "k1"
	if len(kid) > 0 {
		id = kid[0]
	}
	k := i.Key(id)
	if k == nil {
		tb.Fatalf("Mint: no key %q", id)
	}
	return MintWith(tb, k, claims)
}

// MintWith signs claims with k, published or not.
func MintWith(tb testing.TB, k *Key, claims map[string]any) string {
	tb.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		tb.Fatalf("marshal claims: %v", err)
	}
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.KeyIDKey, k.KID)
	_ = hdr.Set(jws.TypeKey, "at+jwt")
	out, err := jws.Sign(payload, jws.WithKey(k.Alg, k.Private, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		tb.Fatalf("sign token: %v", err)
	}
	return string(out)
}

// ParseUnverified decodes a token's claims without checking anything (test assertions only).
func ParseUnverified(tb testing.TB, raw string) jwt.Token {
	tb.Helper()
	tok, err := jwt.Parse([]byte(raw), jwt.WithVerify(false), jwt.WithValidate(false))
	if err != nil {
		tb.Fatalf("parse token: %v", err)
	}
	return tok
}

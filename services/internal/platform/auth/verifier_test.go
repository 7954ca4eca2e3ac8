package auth_test

import (
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"

	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/auth/authtest"
)

func newVerifier(tb testing.TB, iss *authtest.Issuer, edit ...func(*auth.VerifierConfig)) *auth.Verifier {
	tb.Helper()
	cfg := auth.VerifierConfig{Issuer: iss.URL, Audience: authtest.Audience, MinUnknownKIDFetch: time.Hour}
	for _, e := range edit {
		e(&cfg)
	}
	v, err := auth.NewVerifier(tb.Context(), cfg)
	if err != nil {
		tb.Fatalf("NewVerifier() error = %v", err)
	}
	tb.Cleanup(func() { _ = v.Close(context.Background()) })
	return v
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// handMade builds a compact JWS with any header, payload and signature function.
func handMade(header map[string]any, claims map[string]any, sign func(signingInput []byte) []byte) string {
	h, _ := json.Marshal(header)
	p, _ := json.Marshal(claims)
	in := b64(h) + "." + b64(p)
	return in + "." + b64(sign([]byte(in)))
}

func TestVerifyAcceptsValidTokens(t *testing.T) {
	t.Parallel()
	iss := authtest.NewIssuer(t)
	for _, alg := range []jwa.SignatureAlgorithm{jwa.PS256(), jwa.ES256(), jwa.EdDSA()} {
		iss.Publish(authtest.NewKey(t, "k-"+alg.String(), alg))
	}
	v := newVerifier(t, iss)
	for _, kid := range []string{"k1", "k-PS256", "k-ES256", "k-EdDSA"} {
		t.Run(kid, func(t *testing.T) {
			t.Parallel()
			c := iss.Claims("user-1", "proxy", "bogus-role", "patient")
			c["patient_id"] = "pat-1"
			c["name"], c["birthdate"] = "Alex Example", "2010-02-28"
			c["care_pools"] = []string{"pool-a"}
			c["proxy_grants"] = []map[string]any{
				{"patient_id": "pat-2", "scope": []string{"read"}, "expires_at": time.Now().Add(time.Hour).Unix()},
				{"patient_id": "", "scope": []string{"read"}, "expires_at": time.Now().Add(time.Hour).Unix()},
			}
			p, err := v.Verify(t.Context(), iss.Mint(t, c, kid))
			if err != nil {
				t.Fatalf("Verify(%s) error = %v", kid, err)
			}
			if p.Subject != "user-1" || p.Kind != auth.KindUser || p.PatientID != "pat-1" || p.ClientID != "portal-web" {
				t.Errorf("Verify(%s) = %+v, want subject user-1, patient pat-1, client portal-web", kid, p)
			}
			if p.Name != "Alex Example" || !p.BirthDate.Equal(time.Date(2010, 2, 28, 0, 0, 0, 0, time.UTC)) {
				t.Errorf("Verify(%s) name, birth date = %q, %v; want the claims", kid, p.Name, p.BirthDate)
			}
			if got := p.RoleNames(); strings.Join(got, ",") != "proxy,patient" {
				t.Errorf("Verify(%s) roles = %v, want [proxy patient] (unknown roles dropped)", kid, got)
			}
			if len(p.ProxyGrants) != 1 || p.ProxyGrants[0].PatientID != "pat-2" {
				t.Errorf("Verify(%s) grants = %+v, want one grant for pat-2", kid, p.ProxyGrants)
			}
			if _, ok := p.ActiveGrant("pat-2", time.Now()); !ok {
				t.Errorf("ActiveGrant(pat-2) = false, want true")
			}
			if len(p.Scopes) < 2 || p.Scopes[0] != "openid" {
				t.Errorf("Verify(%s) scopes = %v, want the space-separated scope claim", kid, p.Scopes)
			}
		})
	}
}

// badTokens builds every kind of bad token the issue lists; each must be refused with the
// expected reason.
func badTokens(t testing.TB, iss *authtest.Issuer) []struct {
	name   string
	token  string
	reason auth.Reason
} {
	k1 := iss.Key("k1")
	valid := iss.Claims("user-1", "patient")
	edit := func(f func(map[string]any)) map[string]any {
		c := map[string]any{}
		for k, v := range valid {
			c[k] = v
		}
		f(c)
		return c
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(k1.Raw.Public())
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hs256 := func(secret []byte) func([]byte) []byte {
		return func(in []byte) []byte { m := hmac.New(sha256.New, secret); m.Write(in); return m.Sum(nil) }
	}
	good := iss.Mint(t, valid)
	parts := strings.Split(good, ".")
	tamperedClaims := edit(func(c map[string]any) { c["roles"] = []string{"admin"} })
	tp, _ := json.Marshal(tamperedClaims)
	unpublished := authtest.NewKey(t, "k-unknown", jwa.RS256())
	return []struct {
		name   string
		token  string
		reason auth.Reason
	}{
		{"empty", "", auth.ReasonMissing},
		{"alg none", handMade(map[string]any{"alg": "none", "kid": "k1"}, valid, func([]byte) []byte { return nil }), auth.ReasonAlgorithm},
		{"alg none unsigned", b64([]byte(`{"alg":"none"}`)) + "." + parts[1] + ".", auth.ReasonAlgorithm},
		{"HS256 with public key PEM", handMade(map[string]any{"alg": "HS256", "kid": "k1", "typ": "JWT"}, valid, hs256(pubPEM)), auth.ReasonAlgorithm},
		{"HS256 with public key DER", handMade(map[string]any{"alg": "HS256", "kid": "k1"}, valid, hs256(pubDER)), auth.ReasonAlgorithm},
		{"RS512 not allowed", handMade(map[string]any{"alg": "RS512", "kid": "k1"}, valid, func(in []byte) []byte {
			h := crypto.SHA512.New()
			h.Write(in)
			s, _ := k1.Raw.Sign(nil, h.Sum(nil), crypto.SHA512)
			return s
		}), auth.ReasonAlgorithm},
		{"PS256 header on RS256 key", handMade(map[string]any{"alg": "PS256", "kid": "k1"}, valid, func([]byte) []byte { return []byte("x") }), auth.ReasonAlgorithm},
		{"expired", iss.Mint(t, edit(func(c map[string]any) {
			c["exp"] = time.Now().Add(-5 * time.Minute).Unix()
			c["iat"] = time.Now().Add(-10 * time.Minute).Unix()
		})), auth.ReasonExpired},
		{"not yet valid", iss.Mint(t, edit(func(c map[string]any) { c["nbf"] = time.Now().Add(5 * time.Minute).Unix() })), auth.ReasonNotYetValid},
		{"issued in the future", iss.Mint(t, edit(func(c map[string]any) { c["iat"] = time.Now().Add(5 * time.Minute).Unix() })), auth.ReasonNotYetValid},
		{"wrong audience", iss.Mint(t, edit(func(c map[string]any) { c["aud"] = []string{"someone-else"} })), auth.ReasonAudience},
		{"wrong issuer", iss.Mint(t, edit(func(c map[string]any) { c["iss"] = "http://evil.example" })), auth.ReasonIssuer},
		{"no exp", iss.Mint(t, edit(func(c map[string]any) { delete(c, "exp") })), auth.ReasonClaims},
		{"no sub", iss.Mint(t, edit(func(c map[string]any) { delete(c, "sub") })), auth.ReasonClaims},
		{"service subject", iss.Mint(t, edit(func(c map[string]any) { c["sub"] = "service:messaging" })), auth.ReasonClaims},
		{"token too old", iss.Mint(t, edit(func(c map[string]any) { c["iat"] = time.Now().Add(-2 * time.Hour).Unix() })), auth.ReasonTooOld},
		{"session too old", iss.Mint(t, edit(func(c map[string]any) { c["auth_time"] = time.Now().Add(-13 * time.Hour).Unix() })), auth.ReasonSessionOld},
		{"unknown kid", authtest.MintWith(t, unpublished, valid), auth.ReasonUnknownKey},
		{"no kid", handMade(map[string]any{"alg": "RS256"}, valid, func([]byte) []byte { return []byte("x") }), auth.ReasonUnknownKey},
		{"tampered payload", parts[0] + "." + b64(tp) + "." + parts[2], auth.ReasonSignature},
		{"tampered signature", parts[0] + "." + parts[1] + "." + b64([]byte("not the signature")), auth.ReasonSignature},
		{"oversized", iss.Mint(t, edit(func(c map[string]any) { c["pad"] = strings.Repeat("A", 9000) })), auth.ReasonTooLarge},
		{"garbage", "this is not a token", auth.ReasonMalformed},
		{"garbage with dots", "a.b.c", auth.ReasonMalformed},
		{"json serialization", `{"payload":"e30","signatures":[]}`, auth.ReasonMalformed},
		{"two dots too many", good + ".extra", auth.ReasonMalformed},
	}
}

func TestVerifyRefusesBadTokens(t *testing.T) {
	t.Parallel()
	iss := authtest.NewIssuer(t)
	v := newVerifier(t, iss)
	for _, tc := range badTokens(t, iss) {
		t.Run(tc.name, func(t *testing.T) {
			p, err := v.Verify(t.Context(), tc.token)
			if err == nil {
				t.Fatalf("Verify(%s) = %+v, want error", tc.name, p)
			}
			var te *auth.TokenError
			if !errors.As(err, &te) || !errors.Is(err, auth.ErrInvalidToken) {
				t.Fatalf("Verify(%s) error = %v, want a TokenError matching ErrInvalidToken", tc.name, err)
			}
			if te.Reason != tc.reason {
				t.Errorf("Verify(%s) reason = %s, want %s", tc.name, te.Reason, tc.reason)
			}
			if strings.Contains(err.Error(), "user-1") || (len(tc.token) > 8 && strings.Contains(err.Error(), tc.token[:8])) {
				t.Errorf("Verify(%s) error %q leaks claims or token", tc.name, err)
			}
		})
	}
}

func TestVerifyUnknownKIDRefreshesOnceThenFinds(t *testing.T) {
	t.Parallel()
	iss := authtest.NewIssuer(t)
	v := newVerifier(t, iss)
	before := iss.Fetches()

	// A key the issuer publishes after the verifier started (rotation): one refresh finds it.
	rotated := authtest.NewKey(t, "k2", jwa.ES256())
	iss.Publish(rotated)
	if _, err := v.Verify(t.Context(), iss.Mint(t, iss.Claims("u", "patient"), "k2")); err != nil {
		t.Fatalf("Verify(rotated key) error = %v, want nil", err)
	}
	if got := iss.Fetches() - before; got != 1 {
		t.Errorf("JWKS fetches after rotation = %d, want 1", got)
	}
	// Unknown kids are refused; the refresh budget (one per MinUnknownKIDFetch = 1h) is spent,
	// so a flood of forged kids costs the issuer nothing.
	forged := authtest.NewKey(t, "forged", jwa.RS256())
	for range 20 {
		if _, err := v.Verify(t.Context(), authtest.MintWith(t, forged, iss.Claims("u", "patient"))); !errors.Is(err, auth.ErrInvalidToken) {
			t.Fatalf("Verify(forged kid) error = %v, want ErrInvalidToken", err)
		}
	}
	if got := iss.Fetches() - before; got != 1 {
		t.Errorf("JWKS fetches after 20 forged kids = %d, want 1", got)
	}
}

func TestVerifyUnknownKIDTriggersOneRefresh(t *testing.T) {
	t.Parallel()
	iss := authtest.NewIssuer(t)
	v := newVerifier(t, iss)
	before := iss.Fetches()
	forged := authtest.NewKey(t, "forged", jwa.RS256())
	for range 5 {
		if _, err := v.Verify(t.Context(), authtest.MintWith(t, forged, iss.Claims("u", "patient"))); !errors.Is(err, auth.ErrInvalidToken) {
			t.Fatalf("Verify(unknown kid) error = %v, want ErrInvalidToken", err)
		}
	}
	if got := iss.Fetches() - before; got != 1 {
		t.Errorf("JWKS fetches for 5 unknown-kid tokens = %d, want 1", got)
	}
}

func TestNewVerifierConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  auth.VerifierConfig
	}{
		{"no issuer", auth.VerifierConfig{Audience: "a"}},
		{"no audience", auth.VerifierConfig{Issuer: "http://127.0.0.1:1"}},
		{"skew too large", auth.VerifierConfig{Issuer: "http://127.0.0.1:1", Audience: "a", ClockSkew: time.Hour}},
		{"issuer down", auth.VerifierConfig{Issuer: "http://127.0.0.1:1", Audience: "a"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if v, err := auth.NewVerifier(t.Context(), tc.cfg); err == nil {
				_ = v.Close(context.Background())
				t.Errorf("NewVerifier(%s) error = nil, want error", tc.name)
			}
		})
	}
}

// FuzzVerify feeds arbitrary strings (seeded with every bad token and a good one) to Verify: it
// must never panic, every refusal is a TokenError, and anything it accepts is the good token's
// subject (base64 malleability aside, no mutation may change who the caller is).
func FuzzVerify(f *testing.F) {
	iss := authtest.NewIssuer(f)
	v := newVerifier(f, iss)
	for _, tc := range badTokens(f, iss) {
		f.Add(tc.token)
	}
	f.Add(iss.Mint(f, iss.Claims("fuzz-user", "patient")))
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := v.Verify(context.Background(), raw)
		if err != nil {
			var te *auth.TokenError
			if !errors.As(err, &te) {
				t.Fatalf("Verify() error = %T %v, want *TokenError", err, err)
			}
			return
		}
		if p.Subject != "fuzz-user" {
			t.Fatalf("Verify() accepted a token for %q, want only the seeded good token", p.Subject)
		}
	})
}

// TestVerifyCacheRechecksTimes: a cached verification is served without a second signature
// check but still expires with the token, and a token differing in one byte is verified afresh.
func TestVerifyCacheRechecksTimes(t *testing.T) {
	t.Parallel()
	iss := authtest.NewIssuer(t)
	now := time.Now()
	clock := func() time.Time { return now }
	v, err := auth.NewVerifier(t.Context(), auth.VerifierConfig{Issuer: iss.URL, Audience: authtest.Audience, Now: func() time.Time { return clock() }})
	if err != nil {
		t.Fatal(err)
	}
	claims := iss.Claims("u-cache", "patient")
	claims["exp"] = now.Add(20 * time.Second).Unix()
	raw := iss.Mint(t, claims)
	first, err := v.Verify(t.Context(), raw)
	if err != nil {
		t.Fatalf("Verify() = %v", err)
	}
	second, err := v.Verify(t.Context(), raw)
	if err != nil || second != first {
		t.Fatalf("Verify() again = %p, %v; want the cached principal %p", second, err, first)
	}
	forged := raw[:len(raw)-2] + "AA"
	if forged == raw {
		forged = raw[:len(raw)-2] + "BB"
	}
	if _, err := v.Verify(t.Context(), forged); err == nil {
		t.Errorf("Verify(token with an altered signature) = nil error, want a refusal")
	}
	now = now.Add(time.Minute) // past exp + skew, within no cache TTL
	if _, err := v.Verify(t.Context(), raw); err == nil {
		t.Errorf("Verify(expired cached token) = nil error, want a refusal")
	}
}

// TestBirthDateClaim: a malformed or year-less birthdate is unknown, never a refusal.
func TestBirthDateClaim(t *testing.T) {
	t.Parallel()
	iss := authtest.NewIssuer(t)
	v := newVerifier(t, iss)
	for _, bd := range []any{"0000-03-04", "2010-13-01", "04/03/2010", 20100304, ""} {
		c := iss.Claims("user-bd", "patient")
		c["birthdate"] = bd
		p, err := v.Verify(t.Context(), iss.Mint(t, c, "k1"))
		if bd == 20100304 {
			// A number where the standard says string: the claim set is malformed as a whole.
			if err == nil && !p.BirthDate.IsZero() {
				t.Errorf("birthdate %v read as %v", bd, p.BirthDate)
			}
			continue
		}
		if err != nil || !p.BirthDate.IsZero() {
			t.Errorf("birthdate %q: %v, %v; want admitted with no birth date", bd, p, err)
		}
	}
}

package auth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/lestrrat-go/httprc/v3"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"golang.org/x/time/rate"
)

// Defaults for VerifierConfig. They are configuration, not policy: services override them from
// their SECUREMSG_* settings.
const (
	DefaultClockSkew          = 30 * time.Second
	MaxClockSkew              = 5 * time.Minute
	DefaultMaxTokenAge        = time.Hour
	DefaultMaxAuthAge         = 12 * time.Hour
	DefaultMaxTokenBytes      = 8 << 10
	DefaultRefreshInterval    = 15 * time.Minute
	DefaultMinUnknownKIDFetch = 30 * time.Second
	DefaultVerifiedCacheTTL   = time.Minute
	DefaultVerifiedCacheSize  = 10000
)

// AllowedAlgorithms is the signature algorithm allow-list. Only asymmetric algorithms: an HMAC
// "signed" with the issuer's public key, or alg=none, never verifies.
var AllowedAlgorithms = []string{"RS256", "PS256", "ES256", "EdDSA"}

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// Issuer is the expected `iss`, e.g. "http://127.0.0.1:8400".
	Issuer string
	// Audience must be one of the token's `aud` values.
	Audience string
	// JWKSURL is where the issuer publishes its keys. Empty: discovered from
	// Issuer + "/.well-known/openid-configuration" (jwks_uri).
	JWKSURL string
	// ClockSkew tolerated on exp, nbf and iat (default 30s, at most 5m).
	ClockSkew time.Duration
	// MaxTokenAge bounds now - iat (default 1h): a leaked token stops working even if its exp is far.
	MaxTokenAge time.Duration
	// MaxAuthAge bounds now - auth_time when the token carries auth_time (default 12h): the
	// session limit after which the person must log in again.
	MaxAuthAge time.Duration
	// MaxTokenBytes rejects longer tokens before any parsing (default 8 KiB).
	MaxTokenBytes int
	// RefreshInterval is how often the key set is refreshed in the background (default 15m).
	RefreshInterval time.Duration
	// MinUnknownKIDFetch spaces out refreshes triggered by unknown key ids (default 30s), so a
	// flood of forged kids cannot turn the verifier into a load generator against the issuer.
	MinUnknownKIDFetch time.Duration
	// VerifiedCacheTTL is how long a verified token is remembered so later calls with it skip the
	// signature check (default 60s; negative turns the cache off). Time limits (exp, nbf, token
	// and session age) are still checked on every call; what the cache can delay is the effect of
	// the issuer withdrawing a signing key, by at most this long.
	VerifiedCacheTTL time.Duration
	// VerifiedCacheSize bounds the cache (default 10000 tokens).
	VerifiedCacheSize int
	// HTTPClient fetches discovery and JWKS documents (default: 10s timeout).
	HTTPClient *http.Client
	// Now is the clock (default time.Now); tests move it.
	Now func() time.Time
}

func (c *VerifierConfig) withDefaults() error {
	var errs []error
	if c.Issuer == "" {
		errs = append(errs, errors.New("issuer is required"))
	}
	if c.Audience == "" {
		errs = append(errs, errors.New("audience is required"))
	}
	if c.ClockSkew == 0 {
		c.ClockSkew = DefaultClockSkew
	}
	if c.ClockSkew < 0 || c.ClockSkew > MaxClockSkew {
		errs = append(errs, fmt.Errorf("clock skew %s outside [0, %s]", c.ClockSkew, MaxClockSkew))
	}
	if c.MaxTokenAge == 0 {
		c.MaxTokenAge = DefaultMaxTokenAge
	}
	if c.MaxAuthAge == 0 {
		c.MaxAuthAge = DefaultMaxAuthAge
	}
	if c.MaxTokenBytes == 0 {
		c.MaxTokenBytes = DefaultMaxTokenBytes
	}
	if c.RefreshInterval == 0 {
		c.RefreshInterval = DefaultRefreshInterval
	}
	if c.MinUnknownKIDFetch == 0 {
		c.MinUnknownKIDFetch = DefaultMinUnknownKIDFetch
	}
	if c.VerifiedCacheTTL == 0 {
		c.VerifiedCacheTTL = DefaultVerifiedCacheTTL
	}
	if c.VerifiedCacheSize <= 0 {
		c.VerifiedCacheSize = DefaultVerifiedCacheSize
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return errors.Join(errs...)
}

// Reason says why a token was refused. It is for logs and audit records only; callers see the
// fixed ErrInvalidToken message whatever the reason.
type Reason string

// Reasons a token is refused.
const (
	ReasonMissing     Reason = "missing"
	ReasonTooLarge    Reason = "too_large"
	ReasonMalformed   Reason = "malformed"
	ReasonAlgorithm   Reason = "algorithm_not_allowed"
	ReasonUnknownKey  Reason = "unknown_key"
	ReasonKeysDown    Reason = "keys_unavailable"
	ReasonSignature   Reason = "bad_signature"
	ReasonExpired     Reason = "expired"
	ReasonNotYetValid Reason = "not_yet_valid"
	ReasonIssuer      Reason = "wrong_issuer"
	ReasonAudience    Reason = "wrong_audience"
	ReasonTooOld      Reason = "token_too_old"
	ReasonSessionOld  Reason = "session_too_old"
	ReasonClaims      Reason = "bad_claims"
	ReasonNoServiceID Reason = "no_service_identity"
)

// TokenError is returned by Verify. Its message names only the Reason, never the token or any
// claim value, so it is safe to log.
type TokenError struct{ Reason Reason }

func (e *TokenError) Error() string { return "invalid token: " + string(e.Reason) }

// Is makes every TokenError match ErrInvalidToken.
func (e *TokenError) Is(target error) bool { return target == ErrInvalidToken }

// ErrInvalidToken matches every error Verify returns (errors.Is).
var ErrInvalidToken = errors.New("invalid token")

func refuse(r Reason) error { return &TokenError{Reason: r} }

// Verifier checks OIDC access tokens. It is safe for concurrent use.
type Verifier struct {
	cfg       VerifierConfig
	verified  *lru.Cache[[sha256.Size]byte, verifiedToken]
	jwksURL   string
	cache     *jwk.Cache
	refreshes *rate.Limiter // unknown-kid refreshes
	mu        sync.Mutex    // serialises unknown-kid refreshes
}

// NewVerifier fetches the issuer's keys (discovering the JWKS URL if needed) and starts their
// background refresh, which stops when ctx ends. It fails if the keys cannot be fetched, so a
// service does not start unable to authenticate anyone.
func NewVerifier(ctx context.Context, cfg VerifierConfig) (*Verifier, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, fmt.Errorf("verifier config: %w", err)
	}
	jwksURL := cfg.JWKSURL
	if jwksURL == "" {
		u, err := discoverJWKS(ctx, cfg.HTTPClient, cfg.Issuer)
		if err != nil {
			return nil, err
		}
		jwksURL = u
	}
	// Only the one JWKS URL may ever be fetched: kids and other token fields never become URLs.
	client := httprc.NewClient(httprc.WithWhitelist(httprc.NewMapWhitelist().Add(jwksURL)))
	cache, err := jwk.NewCache(ctx, client)
	if err != nil {
		return nil, fmt.Errorf("jwks cache: %w", err)
	}
	if err := cache.Register(ctx, jwksURL,
		jwk.WithHTTPClient(cfg.HTTPClient),
		jwk.WithMinInterval(min(cfg.MinUnknownKIDFetch, cfg.RefreshInterval)),
		jwk.WithMaxInterval(cfg.RefreshInterval),
		jwk.WithWaitReady(true),
	); err != nil {
		return nil, fmt.Errorf("fetch issuer keys: %w", err)
	}
	verified, err := lru.New[[sha256.Size]byte, verifiedToken](cfg.VerifiedCacheSize)
	if err != nil {
		return nil, fmt.Errorf("verified token cache: %w", err)
	}
	return &Verifier{
		cfg:       cfg,
		verified:  verified,
		jwksURL:   jwksURL,
		cache:     cache,
		refreshes: rate.NewLimiter(rate.Every(cfg.MinUnknownKIDFetch), 1),
	}, nil
}

func discoverJWKS(ctx context.Context, client *http.Client, issuer string) (string, error) {
	url := strings.TrimRight(issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", fmt.Errorf("oidc discovery request: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("oidc discovery: %w", err)
	}
	defer func() { _ = resp.Body.Close() }() // a read-only body: nothing to lose on close
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("oidc discovery: status %d", resp.StatusCode)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&doc); err != nil {
		return "", fmt.Errorf("oidc discovery document: %w", err)
	}
	if doc.Issuer != issuer || doc.JWKSURI == "" {
		return "", fmt.Errorf("oidc discovery: issuer mismatch or no jwks_uri")
	}
	return doc.JWKSURI, nil
}

// claims are the non-registered claims the suite reads (names fixed with the dev issuer).
type claims struct {
	Roles       []string `json:"roles"`
	Name        string   `json:"name"`
	BirthDate   string   `json:"birthdate"`
	PatientID   string   `json:"patient_id"`
	CarePools   []string `json:"care_pools"`
	ProxyGrants []struct {
		PatientID string   `json:"patient_id"`
		Scope     []string `json:"scope"`
		ExpiresAt int64    `json:"expires_at"`
	} `json:"proxy_grants"`
	AMR      []string `json:"amr"`
	AuthTime int64    `json:"auth_time"`
	ClientID string   `json:"client_id"`
	Scope    string   `json:"scope"`
}

// Verify checks raw (a compact JWS, without "Bearer ") and returns the caller. Every failure is a
// *TokenError matching ErrInvalidToken.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Principal, error) {
	if raw == "" {
		return nil, refuse(ReasonMissing)
	}
	if len(raw) > v.cfg.MaxTokenBytes {
		return nil, refuse(ReasonTooLarge)
	}
	if strings.Count(raw, ".") != 2 {
		return nil, refuse(ReasonMalformed)
	}
	if v.cfg.VerifiedCacheTTL < 0 {
		return v.verify(ctx, raw)
	}
	// Keyed by a hash of the whole token: a token differing in any byte (a forged signature
	// included) is a different key and takes the full path.
	sum := sha256.Sum256([]byte(raw))
	now := v.cfg.Now()
	if vt, ok := v.verified.Get(sum); ok && now.Before(vt.until) {
		if err := v.checkTimes(vt.p, vt.notBefore, vt.expires, now); err != nil {
			v.verified.Remove(sum)
			return nil, err
		}
		return vt.p, nil
	}
	p, err := v.verify(ctx, raw)
	if err != nil {
		return nil, err
	}
	v.verified.Add(sum, verifiedToken{p: p, until: now.Add(v.cfg.VerifiedCacheTTL), notBefore: p.notBefore, expires: p.expires})
	return p, nil
}

// verifiedToken is a cached verification: the Principal and the token's time limits.
type verifiedToken struct {
	p                  *Principal
	until              time.Time // when the cache entry lapses
	notBefore, expires time.Time
}

// checkTimes re-applies a cached token's time limits at now, as the full verification would.
func (v *Verifier) checkTimes(p *Principal, notBefore, expires, now time.Time) error {
	skew := v.cfg.ClockSkew
	switch {
	case !expires.IsZero() && !now.Before(expires.Add(skew)):
		return refuse(ReasonExpired)
	case !notBefore.IsZero() && now.Add(skew).Before(notBefore):
		return refuse(ReasonNotYetValid)
	case now.Sub(p.IssuedAt) > v.cfg.MaxTokenAge+skew:
		return refuse(ReasonTooOld)
	case !p.AuthTime.IsZero() && now.Sub(p.AuthTime) > v.cfg.MaxAuthAge+skew:
		return refuse(ReasonSessionOld)
	}
	return nil
}

// verify is the full verification: signature against the issuer's keys, then claims.
func (v *Verifier) verify(ctx context.Context, raw string) (*Principal, error) {
	msg, err := jws.Parse([]byte(raw), jws.WithCompact())
	if err != nil || len(msg.Signatures()) != 1 {
		return nil, refuse(ReasonMalformed)
	}
	hdr := msg.Signatures()[0].ProtectedHeaders()
	alg, ok := hdr.Algorithm()
	if !ok || !slices.Contains(AllowedAlgorithms, alg.String()) {
		return nil, refuse(ReasonAlgorithm)
	}
	kid, ok := hdr.KeyID()
	if !ok || kid == "" {
		return nil, refuse(ReasonUnknownKey)
	}
	key, err := v.key(ctx, kid)
	if err != nil {
		return nil, err
	}
	// A key published for one algorithm must not verify another (e.g. an RSA key and PS256 vs
	// RS256 is fine only when the JWK does not pin its alg).
	if kalg, ok := key.Algorithm(); ok && kalg.String() != alg.String() {
		return nil, refuse(ReasonAlgorithm)
	}
	now := v.cfg.Now()
	tok, err := jwt.Parse([]byte(raw),
		jwt.WithKey(alg, key),
		jwt.WithValidate(true),
		jwt.WithIssuer(v.cfg.Issuer),
		jwt.WithAudience(v.cfg.Audience),
		jwt.WithAcceptableSkew(v.cfg.ClockSkew),
		jwt.WithClock(jwt.ClockFunc(func() time.Time { return now })),
		jwt.WithRequiredClaim("exp"),
		jwt.WithRequiredClaim("iat"),
		jwt.WithRequiredClaim("sub"),
	)
	if err != nil {
		return nil, refuse(classify(err))
	}
	iat, _ := tok.IssuedAt()
	if now.Sub(iat) > v.cfg.MaxTokenAge+v.cfg.ClockSkew {
		return nil, refuse(ReasonTooOld)
	}
	var c claims
	if err := json.Unmarshal(msg.Payload(), &c); err != nil {
		return nil, refuse(ReasonClaims)
	}
	p := &Principal{Kind: KindUser, IssuedAt: iat, PatientID: c.PatientID, ClientID: c.ClientID, Name: c.Name,
		BirthDate: parseBirthDate(c.BirthDate)}
	p.expires, _ = tok.Expiration()
	p.notBefore, _ = tok.NotBefore()
	p.Subject, _ = tok.Subject()
	if p.Subject == "" || strings.HasPrefix(p.Subject, "service:") {
		return nil, refuse(ReasonClaims)
	}
	if c.AuthTime != 0 {
		p.AuthTime = time.Unix(c.AuthTime, 0)
		if now.Sub(p.AuthTime) > v.cfg.MaxAuthAge+v.cfg.ClockSkew || p.AuthTime.After(now.Add(v.cfg.ClockSkew)) {
			return nil, refuse(ReasonSessionOld)
		}
	}
	for _, r := range c.Roles {
		if slices.Contains(KnownRoles, Role(r)) && !slices.Contains(p.Roles, Role(r)) {
			p.Roles = append(p.Roles, Role(r))
		}
	}
	p.CarePools = nonEmpty(c.CarePools)
	p.AMR = nonEmpty(c.AMR)
	p.Scopes = strings.Fields(c.Scope)
	for _, g := range c.ProxyGrants {
		if g.PatientID == "" || g.ExpiresAt == 0 {
			continue // a grant without a patient or an expiry grants nothing
		}
		p.ProxyGrants = append(p.ProxyGrants, ProxyGrant{
			PatientID: g.PatientID, Scopes: nonEmpty(g.Scope), ExpiresAt: time.Unix(g.ExpiresAt, 0),
		})
	}
	return p, nil
}

func nonEmpty(in []string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// key finds kid in the cached set; an unknown kid refreshes the set at most once per
// MinUnknownKIDFetch (issuers rotate keys by publishing the new one before using it).
func (v *Verifier) key(ctx context.Context, kid string) (jwk.Key, error) {
	set, err := v.cache.Lookup(ctx, v.jwksURL)
	if err != nil {
		return nil, refuse(ReasonKeysDown)
	}
	if k, ok := set.LookupKeyID(kid); ok {
		return k, nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	// Another request may have refreshed while this one waited for the lock.
	if set, err = v.cache.Lookup(ctx, v.jwksURL); err == nil {
		if k, ok := set.LookupKeyID(kid); ok {
			return k, nil
		}
	}
	if !v.refreshes.Allow() {
		return nil, refuse(ReasonUnknownKey)
	}
	set, err = v.cache.Refresh(ctx, v.jwksURL)
	if err != nil {
		return nil, refuse(ReasonKeysDown)
	}
	if k, ok := set.LookupKeyID(kid); ok {
		return k, nil
	}
	return nil, refuse(ReasonUnknownKey)
}

func classify(err error) Reason {
	switch {
	case errors.Is(err, jwt.TokenExpiredError()):
		return ReasonExpired
	case errors.Is(err, jwt.TokenNotYetValidError()):
		return ReasonNotYetValid
	case errors.Is(err, jwt.InvalidIssuerError()):
		return ReasonIssuer
	case errors.Is(err, jwt.InvalidAudienceError()):
		return ReasonAudience
	case errors.Is(err, jwt.InvalidIssuedAtError()):
		return ReasonNotYetValid
	case errors.Is(err, jwt.MissingRequiredClaimError()):
		return ReasonClaims
	case errors.Is(err, jwt.ValidateError()):
		return ReasonClaims
	default:
		return ReasonSignature
	}
}

// Close stops the background key refresh.
func (v *Verifier) Close(ctx context.Context) error { return v.cache.Shutdown(ctx) }

// parseBirthDate reads an OIDC birthdate claim. A malformed one, or one without a year
// ("0000-MM-DD", which the standard allows), is unknown: it does not decide access, it only
// narrows proxy grants, so it is not a reason to refuse the token.
func parseBirthDate(s string) time.Time {
	d, err := time.Parse(time.DateOnly, s)
	if err != nil || d.Year() < 1900 {
		return time.Time{}
	}
	return d
}

// Package auth authenticates callers: it verifies OIDC access tokens against the issuer's JWKS,
// turns their claims into a Principal, recognises service identities from mTLS client
// certificates, and carries the Principal in the request context. Authorisation (what a Principal
// may do) lives in package policy; this package only answers "who is calling".
package auth

import (
	"context"
	"slices"
	"time"
)

// Role is a person's role in the portal, as named in the token's `roles` claim.
type Role string

// The roles the suite knows. A token may carry several; unknown role names are dropped when a
// token is verified, so a typo in the identity provider grants nothing.
const (
	RolePatient   Role = "patient"
	RoleProxy     Role = "proxy"
	RoleClinician Role = "clinician"
	RoleStaff     Role = "staff"
	RoleAdmin     Role = "admin"
	RoleAuditor   Role = "auditor"
	// RoleProvisioner is a machine identity: an organisation's identity provider provisioning
	// people and pool memberships over SCIM with client-credentials tokens. The directory admits
	// it only from a provisioning client application (directory.Snapshot.Admit).
	RoleProvisioner Role = "provisioner"
)

// KnownRoles lists every Role, in a stable order.
var KnownRoles = []Role{RolePatient, RoleProxy, RoleClinician, RoleStaff, RoleAdmin, RoleAuditor, RoleProvisioner}

// Kind tells a person (OIDC token) from a service (mTLS certificate).
type Kind int

const (
	// KindUser is a person authenticated by an OIDC access token.
	KindUser Kind = iota + 1
	// KindService is one of the suite's services authenticated by its mTLS client certificate.
	KindService
)

// ProxyGrant lets a proxy (parent, guardian, carer) act for one patient, for the listed scopes,
// until ExpiresAt. Scopes are the proxy scopes the policies check (e.g. "read", "write").
type ProxyGrant struct {
	PatientID string
	Scopes    []string
	ExpiresAt time.Time
}

// ActiveAt reports whether the grant is still valid at now.
func (g ProxyGrant) ActiveAt(now time.Time) bool { return now.Before(g.ExpiresAt) }

// Principal is the authenticated caller. It is immutable once built: share it freely.
type Principal struct {
	Kind Kind
	// Subject is the token's `sub` for people, or "service:<name>" for services.
	Subject string
	// Name is the token's name claim (OIDC standard claims): the person's display name, which
	// messaging records sealed at first contact. Personal data: never logged.
	Name string
	// BirthDate is the token's birthdate claim (OIDC standard claims, "YYYY-MM-DD") at
	// midnight UTC; zero when the token has none or gives no year. Proxy-grant age rules use a
	// patient's. Personal data: never logged.
	BirthDate time.Time
	// Service is the service name from the certificate's SPIFFE ID (KindService only).
	Service     string
	Roles       []Role
	PatientID   string
	CarePools   []string
	ProxyGrants []ProxyGrant
	// AMR lists the authentication methods (RFC 8176) the identity provider used.
	AMR []string
	// AuthTime is when the person last authenticated interactively (zero when unknown).
	AuthTime time.Time
	// IssuedAt is the token's `iat`.
	IssuedAt time.Time
	// ClientID is the OAuth client (portal app) the token was issued to.
	ClientID string
	// Scopes are the OAuth scopes granted to the client.
	Scopes []string
	// Via is the peer service that relayed a person's token over mTLS, when there was one.
	Via string

	// The token's validity window, kept so a cached verification re-checks it on every call.
	notBefore, expires time.Time
}

// ExpiresAt is when the principal's token expires (zero for a service identity, whose
// certificate the TLS layer checks): a long-lived call, such as a watch, ends then.
func (p *Principal) ExpiresAt() time.Time { return p.expires }

// HasRole reports whether the principal holds r.
func (p *Principal) HasRole(r Role) bool { return slices.Contains(p.Roles, r) }

// RoleNames returns the roles as strings, for audit records.
func (p *Principal) RoleNames() []string {
	out := make([]string, len(p.Roles))
	for i, r := range p.Roles {
		out[i] = string(r)
	}
	return out
}

// ActiveGrant returns the proxy grant for patientID that is active at now, if any.
func (p *Principal) ActiveGrant(patientID string, now time.Time) (ProxyGrant, bool) {
	for _, g := range p.ProxyGrants {
		if g.PatientID == patientID && g.ActiveAt(now) {
			return g, true
		}
	}
	return ProxyGrant{}, false
}

type principalKey struct{}

// WithPrincipal returns a context carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the authenticated principal, or false when the request is anonymous (only
// health and reflection are served anonymously).
func FromContext(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	return p, ok && p != nil
}

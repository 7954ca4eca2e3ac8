package directory

import (
	"slices"
	"time"

	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// The refusals of Admit. Each names what the caller (or its administrator) can act on, never
// what the directory holds about anyone else.
var (
	ErrDirectoryUnavailable = usererr.New(usererr.Unavailable, "DIRECTORY_UNAVAILABLE", "the directory is not loaded yet; retry shortly")
	ErrAccountDeactivated   = usererr.New(usererr.PermissionDenied, "ACCOUNT_DEACTIVATED", "this account is deactivated")
	ErrClientNotRegistered  = usererr.New(usererr.PermissionDenied, "CLIENT_NOT_REGISTERED", "the client application is not registered, or is disabled")
	ErrScopeNotAllowed      = usererr.New(usererr.PermissionDenied, "SCOPE_NOT_ALLOWED", "the token asks for a scope its client application is not approved for")
	ErrRoleNotForClient     = usererr.New(usererr.PermissionDenied, "ROLE_NOT_ALLOWED_FOR_CLIENT", "the token carries a role its client application may not confer")
)

// oidcScopes are the identity provider's own scopes: they ask for no securemsg access, so an
// application's registration need not list them.
var oidcScopes = []string{"openid", "profile", "email", "phone", "address", "offline_access"}

// Admit checks a verified person against the directory and returns the principal the rest of
// the call sees (auth.Admission). It refuses a deactivated person, a token from an unregistered
// or disabled client application, and a token whose scopes reach beyond its application's. It
// replaces the token's care pools and proxy grants with the stored ones: a claim can narrow
// them (pools and grants the token names, scopes it names, the earlier expiry), never widen
// them, so a removal or revocation takes effect on the next call whatever the token says. A
// care-team or third-party application is further held to its own pools. The provisioner role
// and provisioning applications go together: the role from any other application, or any other
// role from a provisioning one, is refused, so neither a person's token nor the identity
// provider's machine token can become the other. Service identities are not in the directory
// and pass unchanged.
func (s *Snapshot) Admit(p *auth.Principal, now time.Time) (*auth.Principal, error) {
	if p.Kind != auth.KindUser {
		return p, nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.loaded {
		return nil, ErrDirectoryUnavailable
	}
	app, ok := s.apps[p.ClientID]
	if !ok || !app.GetActive() {
		return nil, ErrClientNotRegistered
	}
	for _, scope := range p.Scopes {
		if !slices.Contains(oidcScopes, scope) && !slices.Contains(app.GetAllowedScopes(), scope) {
			return nil, ErrScopeNotAllowed
		}
	}
	if err := provisioningRoles(p, app); err != nil {
		return nil, err
	}
	if person, ok := s.people[p.Subject]; ok && person.GetStatus() == directoryv1.PersonStatus_PERSON_STATUS_DEACTIVATED {
		return nil, ErrAccountDeactivated
	}
	admitted := *p
	admitted.CarePools = s.carePools(p, app)
	admitted.ProxyGrants = s.proxyGrants(p, now)
	return &admitted, nil
}

// provisioningRoles holds the provisioner role to provisioning applications and those
// applications to that one role.
func provisioningRoles(p *auth.Principal, app *directoryv1.ClientAppEntry) error {
	provisioning := app.GetKind() == directoryv1.ClientAppKind_CLIENT_APP_KIND_PROVISIONING
	if !provisioning {
		if p.HasRole(auth.RoleProvisioner) {
			return ErrRoleNotForClient
		}
		return nil
	}
	if len(p.Roles) != 1 || p.Roles[0] != auth.RoleProvisioner || p.PatientID != "" || len(p.ProxyGrants) > 0 {
		return ErrRoleNotForClient
	}
	return nil
}

func (s *Snapshot) carePools(p *auth.Principal, app *directoryv1.ClientAppEntry) []string {
	var pools []string
	for _, m := range s.members[p.Subject].GetPools() {
		id := m.GetPoolId()
		if len(p.CarePools) > 0 && !slices.Contains(p.CarePools, id) {
			continue
		}
		switch app.GetKind() {
		case directoryv1.ClientAppKind_CLIENT_APP_KIND_CARE_TEAM, directoryv1.ClientAppKind_CLIENT_APP_KIND_THIRD_PARTY:
			if !slices.Contains(app.GetPoolIds(), id) {
				continue
			}
		}
		pools = append(pools, id)
	}
	return pools
}

func (s *Snapshot) proxyGrants(p *auth.Principal, now time.Time) []auth.ProxyGrant {
	var out []auth.ProxyGrant
	for _, g := range s.grants[p.Subject].GetGrants() {
		grant := auth.ProxyGrant{PatientID: g.GetPatientId(), Scopes: slices.Clone(g.GetScopes()), ExpiresAt: g.GetExpireTime().AsTime()}
		if len(p.ProxyGrants) > 0 {
			claimed, ok := claimedGrant(p.ProxyGrants, grant.PatientID, now)
			if !ok {
				continue
			}
			grant.Scopes = slices.DeleteFunc(grant.Scopes, func(s string) bool { return !slices.Contains(claimed.Scopes, s) })
			if claimed.ExpiresAt.Before(grant.ExpiresAt) {
				grant.ExpiresAt = claimed.ExpiresAt
			}
		}
		if len(grant.Scopes) > 0 && grant.ActiveAt(now) {
			out = append(out, grant)
		}
	}
	return out
}

func claimedGrant(claims []auth.ProxyGrant, patientID string, now time.Time) (auth.ProxyGrant, bool) {
	for _, g := range claims {
		if g.PatientID == patientID && g.ActiveAt(now) {
			return g, true
		}
	}
	return auth.ProxyGrant{}, false
}

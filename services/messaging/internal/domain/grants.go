package domain

import (
	"context"
	"slices"
	"time"

	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// ProxyGrant is a patient's stored consent for a proxy to act for them.
type ProxyGrant struct {
	ID           string
	ProxySubject string
	PatientID    string
	Scopes       []string
	ExpiresAt    time.Time
	CreatedAt    time.Time
	RevokedAt    time.Time // zero while the grant stands
	GrantedBy    string
}

// ProxyScopes are the scopes a grant may give.
var ProxyScopes = []string{"read", "write", "notifications"}

// MaxProxyGrant is the longest a patient may give a grant for; a longer consent is renewed.
const MaxProxyGrant = 365 * 24 * time.Hour

// CheckGrant validates a grant a patient gives at now.
func (g ProxyGrant) CheckGrant(now time.Time) error {
	if g.ProxySubject == "" {
		return invalid("FIELD_REQUIRED", "proxy_subject is required")
	}
	if len(g.ProxySubject) > 200 {
		return invalid("FIELD_TOO_LONG", "proxy_subject is too long")
	}
	if len(g.Scopes) == 0 {
		return invalid("FIELD_REQUIRED", "scopes is required")
	}
	for _, s := range g.Scopes {
		if !slices.Contains(ProxyScopes, s) {
			return invalid("PROXY_SCOPE_UNKNOWN", "scopes may hold only read, write and notifications")
		}
	}
	if slices.Contains(g.Scopes, "write") && !slices.Contains(g.Scopes, "read") {
		return invalid("PROXY_WRITE_WITHOUT_READ", "a proxy who may write must also be given read")
	}
	if !g.ExpiresAt.After(now) {
		return invalid("FIELD_OUT_OF_RANGE", "expire_time must be in the future")
	}
	if g.ExpiresAt.After(now.Add(MaxProxyGrant)) {
		return invalid("PROXY_GRANT_TOO_LONG", "expire_time lies beyond the longest grant the organisation allows (365 days)")
	}
	return nil
}

// The ages at which what a proxy may be given changes, as patient portals have it: a child's
// guardian may act for them fully until AdolescentAge; a grant for a patient from
// AdolescentAge to AdultAge is limited (reading and notifications, never writing as the
// patient; their confidential threads stay hidden whatever the grant) and ends at AdultAge,
// when the patient decides alone.
const (
	AdolescentAge = 12
	AdultAge      = 18
)

// ErrAdolescentWrite refuses a write scope for an adolescent patient's proxy.
var ErrAdolescentWrite = usererr.New(usererr.FailedPrecondition, "PROXY_SCOPE_ADOLESCENT",
	"a proxy for a patient aged 12 to 17 may be given read and notifications, not write")

// ApplyAgeRules limits g by the age of its patient, born on birth (zero: unknown, no limit),
// at now: a write scope for an adolescent is refused, and the grant ends at the latest when the
// patient reaches the next age that changes it (AdolescentAge for a child, AdultAge for an
// adolescent). It reports whether the end was brought forward.
func (g *ProxyGrant) ApplyAgeRules(birth, now time.Time) (capped bool, err error) {
	if birth.IsZero() {
		return false, nil
	}
	var until time.Time
	switch {
	case now.Before(birth.AddDate(AdolescentAge, 0, 0)):
		until = birth.AddDate(AdolescentAge, 0, 0)
	case now.Before(birth.AddDate(AdultAge, 0, 0)):
		if slices.Contains(g.Scopes, "write") {
			return false, ErrAdolescentWrite
		}
		until = birth.AddDate(AdultAge, 0, 0)
	default:
		return false, nil
	}
	if g.ExpiresAt.After(until) {
		g.ExpiresAt = until
		return true, nil
	}
	return false, nil
}

// GrantQuery selects grants: those a patient gave, or those a proxy holds (optionally for one
// patient).
type GrantQuery struct {
	PatientID    string
	ProxySubject string
	Limit        int
}

// GrantRepository stores proxy grants. Every change also republishes the proxy's grants in
// the directory every service admits callers by.
type GrantRepository interface {
	// ProxyGrants lists the grants q selects, newest first.
	ProxyGrants(ctx context.Context, q GrantQuery) ([]ProxyGrant, error)
	// CreateProxyGrant stores g with rows, in one commit.
	CreateProxyGrant(ctx context.Context, g ProxyGrant, rows []outbox.Event) error
	// RevokeProxyGrant loads the grant under its row lock, lets decide check it and return the
	// rows of its revocation (nil rows and nil error: leave it as it is), marks it revoked at at
	// and commits. ErrGrantNotFound when there is none; decide's error is returned as it is.
	RevokeProxyGrant(ctx context.Context, id string, at time.Time, decide func(g ProxyGrant) ([]outbox.Event, error)) (ProxyGrant, error)
}

// ErrGrantNotFound is the refusal when no grant has the id, or it is not the caller's.
var ErrGrantNotFound = usererr.New(usererr.NotFound, "PROXY_GRANT_NOT_FOUND", "proxy grant not found")

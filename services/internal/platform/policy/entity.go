package policy

import (
	"context"

	"github.com/cedar-policy/cedar-go/types"

	"github.com/securemsg/securemsg/services/internal/platform/auth"
)

// principalEntity is a Principal as a Cedar entity, built once per request: the Guard stores it
// in the context so record-level checks in the same request reuse it.
type principalEntity struct {
	of     *auth.Principal
	entity types.Entity
}

type principalEntityKey struct{}

func withPrincipalEntity(ctx context.Context, pe *principalEntity) context.Context {
	return context.WithValue(ctx, principalEntityKey{}, pe)
}

// principalEntityFromContext returns the cached entity for p, building it when the request did
// not pass the Guard (or p is another principal, e.g. a user named in a service's request).
func principalEntityFromContext(ctx context.Context, p *auth.Principal) *principalEntity {
	if pe, ok := ctx.Value(principalEntityKey{}).(*principalEntity); ok && pe.of == p {
		return pe
	}
	return principalEntityFor(p)
}

// principalEntityFor maps a Principal to User::"<sub>" (in Role::"<role>" for each role, with
// proxy grants as tags keyed by patient id) or Service::"<name>". Nil for nil or unknown kinds.
func principalEntityFor(p *auth.Principal) *principalEntity {
	if p == nil {
		return nil
	}
	switch p.Kind {
	case auth.KindService:
		if p.Service == "" {
			return nil
		}
		return &principalEntity{of: p, entity: types.Entity{UID: types.NewEntityUID("Service", types.String(p.Service))}}
	case auth.KindUser:
		if p.Subject == "" {
			return nil
		}
	default:
		return nil
	}
	roles := make([]types.EntityUID, len(p.Roles))
	for i, r := range p.Roles {
		roles[i] = types.NewEntityUID("Role", types.String(r))
	}
	tags := types.RecordMap{}
	for _, g := range p.ProxyGrants {
		if prev, ok := tags[types.String(g.PatientID)]; ok {
			// Two grants for one patient: keep the later expiry; scopes are not merged, since a
			// narrower newer grant should not inherit an older wider one.
			if prevExp, _ := prev.(types.Record).Get("expiresAt"); prevExp.(types.Long) >= types.Long(g.ExpiresAt.Unix()) {
				continue
			}
		}
		tags[types.String(g.PatientID)] = types.NewRecord(types.RecordMap{
			"scopes":    stringSet(g.Scopes),
			"expiresAt": types.Long(g.ExpiresAt.Unix()),
		})
	}
	return &principalEntity{of: p, entity: types.Entity{
		UID:     types.NewEntityUID("User", types.String(p.Subject)),
		Parents: types.NewEntityUIDSet(roles...),
		Attributes: types.NewRecord(types.RecordMap{
			"sub":       types.String(p.Subject),
			"patientId": types.String(p.PatientID),
			"carePools": stringSet(p.CarePools),
			"amr":       stringSet(p.AMR),
			"clientId":  types.String(p.ClientID),
			"scopes":    stringSet(p.Scopes),
		}),
		Tags: types.NewRecord(tags),
	}}
}

func stringSet(in []string) types.Set {
	vals := make([]types.Value, len(in))
	for i, s := range in {
		vals[i] = types.String(s)
	}
	return types.NewSet(vals...)
}

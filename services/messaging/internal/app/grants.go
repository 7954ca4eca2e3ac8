package app

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/policy"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// maxListedGrants bounds a grant listing: a patient's or proxy's grants are few.
const maxListedGrants = 200

func grantTarget(g domain.ProxyGrant) auditlog.Target {
	return auditlog.Target{Type: eventsv1.RecordType_RECORD_TYPE_PROXY_GRANT, ID: g.ID, PatientID: g.PatientID}
}

func grantResource(g domain.ProxyGrant) policy.Resource {
	return policy.Resource{Type: "ProxyGrant", ID: g.ID, PatientID: g.PatientID, Owner: g.ProxySubject}
}

// ListProxyGrants lists the grants a patient gave, or a proxy holds, newest first.
func (s *Service) ListProxyGrants(ctx context.Context, p *auth.Principal, patientID string) ([]domain.ProxyGrant, error) {
	if len(patientID) > 100 {
		return nil, usererr.New(usererr.InvalidArgument, "FIELD_TOO_LONG", "patient_id is too long")
	}
	q := domain.GrantQuery{Limit: maxListedGrants}
	var res policy.Resource
	switch {
	case p.HasRole(auth.RolePatient) && p.PatientID != "" && (patientID == "" || patientID == p.PatientID):
		q.PatientID = p.PatientID
		res = policy.Resource{Type: "Patient", ID: p.PatientID, PatientID: p.PatientID}
	case p.HasRole(auth.RoleProxy):
		q.ProxySubject, q.PatientID = p.Subject, patientID
		res = policy.Resource{Type: "ProxyGrant", ID: "held", PatientID: patientID, Owner: p.Subject}
	default:
		res = policy.Resource{Type: "Patient", ID: patientID, PatientID: patientID}
	}
	if _, err := s.authorize(ctx, p, actListGrants, res, policy.Context{}, nil); err != nil {
		return nil, err
	}
	grants, err := s.Grants.ProxyGrants(ctx, q)
	return grants, storeError("list proxy grants", err)
}

// GrantProxyAccess stores a patient's grant of proxy access to their own record.
func (s *Service) GrantProxyAccess(ctx context.Context, p *auth.Principal, proxySubject string, scopes []string, expires time.Time) (domain.ProxyGrant, error) {
	now := s.Now()
	g := domain.ProxyGrant{ID: uuid.NewString(), ProxySubject: proxySubject, PatientID: p.PatientID, Scopes: slices.Clone(scopes),
		ExpiresAt: expires, CreatedAt: now, GrantedBy: p.Subject}
	slices.Sort(g.Scopes)
	if err := g.CheckGrant(now); err != nil {
		return domain.ProxyGrant{}, err
	}
	if proxySubject == p.Subject {
		return domain.ProxyGrant{}, usererr.New(usererr.InvalidArgument, "PROXY_IS_PATIENT", "a patient cannot be their own proxy")
	}
	// The patient's age is their token's birthdate claim; without one, adult rules apply.
	if _, err := g.ApplyAgeRules(p.BirthDate, now); err != nil {
		return domain.ProxyGrant{}, err
	}
	if g.PatientID == "" {
		return domain.ProxyGrant{}, errPolicyDenied
	}
	if _, err := s.authorize(ctx, p, actGrantProxy, grantResource(g), policy.Context{}, nil); err != nil {
		return domain.ProxyGrant{}, err
	}
	b := s.newBatch(ctx)
	b.audit(actorFor(p, g.PatientID, ""), eventsv1.Action_ACTION_CREATE, grantTarget(g), auditlog.Reason("proxy_grant_given"),
		auditlog.WithPurpose(commonv1.PurposeOfUse_PURPOSE_OF_USE_PATIENT_REQUEST))
	rows, err := b.rows()
	if err == nil {
		err = s.Grants.CreateProxyGrant(ctx, g, rows)
	}
	if err != nil {
		return domain.ProxyGrant{}, storeError("grant proxy access", err)
	}
	s.Logger.InfoContext(ctx, "proxy grant given", slog.String("grant_id", g.ID), slog.Any("scopes", g.Scopes))
	return g, nil
}

// RevokeProxyAccess ends a grant now; the patient who gave it or the proxy holding it may.
func (s *Service) RevokeProxyAccess(ctx context.Context, p *auth.Principal, grantID string) (domain.ProxyGrant, error) {
	id, err := domain.CheckID("grant_id", grantID)
	if err != nil {
		return domain.ProxyGrant{}, err
	}
	now := s.Now()
	var refused *policy.Decision
	var refusedOn policy.Resource
	g, err := s.Grants.RevokeProxyGrant(ctx, id, now, func(g domain.ProxyGrant) ([]outbox.Event, error) {
		if d := s.Policy.Evaluate(p, actRevokeProxy, grantResource(g), policy.Context{}); !d.Allowed {
			// Someone else's grant is not found: its existence says who acts for whom.
			refused, refusedOn = &d, grantResource(g)
			return nil, domain.ErrGrantNotFound
		}
		if !g.RevokedAt.IsZero() {
			return nil, nil
		}
		reason := "proxy_grant_revoked"
		if p.Subject == g.ProxySubject {
			reason = "proxy_grant_renounced"
		}
		b := s.newBatch(ctx)
		b.audit(actorFor(p, g.PatientID, ""), eventsv1.Action_ACTION_UPDATE, grantTarget(g), auditlog.Reason(reason))
		return b.rows()
	})
	if refused != nil {
		// Recorded once the grant's row lock is released: the denial commits on its own.
		s.deny(ctx, p, actRevokeProxy, refusedOn, *refused)
	}
	if err != nil {
		return domain.ProxyGrant{}, storeError("revoke proxy access", err)
	}
	s.Logger.InfoContext(ctx, "proxy grant revoked", slog.String("grant_id", g.ID))
	return g, nil
}

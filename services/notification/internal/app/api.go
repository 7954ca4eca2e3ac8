package app

import (
	"context"
	"errors"
	"slices"
	"sort"
	"time"

	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/policy"
	"github.com/securemsg/securemsg/services/notification/internal/domain"
)

// notificationsScope is the proxy grant scope that lets a proxy be alerted for a patient.
const notificationsScope = "notifications"

// roleOf is the role recipient resolution knows p by: the most specific one they hold.
func roleOf(p *auth.Principal) domain.Role {
	for _, r := range []auth.Role{auth.RoleClinician, auth.RoleStaff, auth.RolePatient, auth.RoleProxy} {
		if p.HasRole(r) {
			return domain.Role(r)
		}
	}
	return domain.RoleOther
}

// identityOf is what p's token says about reaching them: their role and, for proxies, the
// patients whose active grants include the notifications scope.
func identityOf(p *auth.Principal, now time.Time) domain.Identity {
	id := domain.Identity{Subject: p.Subject, Role: roleOf(p)}
	if !p.HasRole(auth.RoleProxy) {
		return id
	}
	id.NotifyGrants = map[string]time.Time{}
	for _, g := range p.ProxyGrants {
		if g.ActiveAt(now) && slices.Contains(g.Scopes, notificationsScope) {
			id.NotifyGrants[g.PatientID] = g.ExpiresAt
		}
	}
	return id
}

func (s *Service) authorize(ctx context.Context, p *auth.Principal, action string, res policy.Resource) error {
	d, err := s.policy.Authorize(ctx, p, action, res, policy.Context{})
	if errors.Is(err, policy.ErrNotRecorded) {
		return domain.ErrAccessNotRecorded(err)
	}
	if err != nil {
		return err
	}
	if !d.Allowed {
		return domain.ErrPermissionDenied
	}
	return nil
}

// auditEvents builds the audit record of an API change by the caller in ctx and encodes it for
// the repository to commit with the change.
func (s *Service) auditEvents(ctx context.Context, action eventsv1.Action, target auditlog.Target, reason string) ([]outbox.Event, error) {
	ev, err := s.audit.Event(ctx, s.audit.NewRecord(ctx, action, target, auditlog.Reason(reason)))
	if err != nil {
		return nil, err
	}
	return []outbox.Event{ev}, nil
}

// GetPreferences returns the caller's preferences with contact points opened. The policy
// records the read (contact points are PHI).
func (s *Service) GetPreferences(ctx context.Context, p *auth.Principal) (domain.Preferences, error) {
	if err := s.authorize(ctx, p, "notification.GetPreferences", policy.Resource{Type: "Preferences", ID: p.Subject, Owner: p.Subject}); err != nil {
		return domain.Preferences{}, err
	}
	return s.prefs.OwnPreferences(ctx, identityOf(p, time.Now()))
}

// UpdatePreferences applies change to the caller's preferences (if expectVersion matches, when
// non-zero), validates and stores them, and records the change in the audit trail.
func (s *Service) UpdatePreferences(ctx context.Context, p *auth.Principal, expectVersion int64, change func(*domain.Preferences)) (domain.Preferences, error) {
	if err := s.authorize(ctx, p, "notification.UpdatePreferences", policy.Resource{Type: "Preferences", ID: p.Subject, Owner: p.Subject}); err != nil {
		return domain.Preferences{}, err
	}
	who := identityOf(p, time.Now())
	return s.prefs.UpdatePreferences(ctx, who, func(cur *domain.Preferences) ([]outbox.Event, error) {
		if expectVersion != 0 && expectVersion != cur.Version {
			return nil, domain.ErrStale
		}
		change(cur)
		cur.Subject, cur.Role = who.Subject, who.Role
		if err := cur.Validate(); err != nil {
			return nil, err
		}
		for _, ch := range domain.Channels {
			if set := cur.Channel(ch); set.Enabled && set.Address == "" {
				return nil, domain.ErrChannelNeedsAddress(ch)
			}
		}
		for _, pool := range cur.PoolSubscriptions {
			if !slices.Contains(p.CarePools, pool) {
				return nil, domain.ErrNotPoolMember
			}
		}
		return s.auditEvents(ctx, eventsv1.Action_ACTION_UPDATE,
			auditlog.Target{Type: eventsv1.RecordType_RECORD_TYPE_NOTIFICATION_PREFERENCES, ID: p.Subject}, "own_preferences")
	})
}

// ListDeliveries lists the caller's delivery log. A filter naming someone else is refused.
func (s *Service) ListDeliveries(ctx context.Context, p *auth.Principal, f domain.DeliveryFilter, after *domain.DeliveryCursor, limit int) ([]domain.Delivery, error) {
	if f.Recipient == "" {
		f.Recipient = p.Subject
	}
	if err := s.authorize(ctx, p, "notification.ListDeliveries", policy.Resource{Type: "Deliveries", ID: f.Recipient, Owner: f.Recipient}); err != nil {
		return nil, err
	}
	return s.delivery.ListDeliveries(ctx, f, after, limit)
}

// ListTemplates lists every template: stored overrides and the shipped defaults they do not
// replace, ordered by kind, channel, locale.
func (s *Service) ListTemplates(ctx context.Context, p *auth.Principal) ([]domain.Template, error) {
	if err := s.authorize(ctx, p, "notification.ListTemplates", policy.Resource{Type: "Template", ID: "templates"}); err != nil {
		return nil, err
	}
	stored, err := s.tmpl.Templates(ctx)
	if err != nil {
		return nil, err
	}
	byKey := map[string]domain.Template{}
	for k, t := range s.defaults {
		byKey[k] = t
	}
	for _, t := range stored {
		byKey[t.Key()] = t
	}
	out := make([]domain.Template, 0, len(byKey))
	for _, t := range byKey {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Channel != b.Channel {
			return a.Channel < b.Channel
		}
		return a.Locale < b.Locale
	})
	return out, nil
}

// UpdateTemplate lints and stores t (if expectVersion matches the stored version, when
// non-zero; a template never stored has version 0), and records the change in the audit trail.
func (s *Service) UpdateTemplate(ctx context.Context, p *auth.Principal, t domain.Template, expectVersion int64) (domain.Template, error) {
	if err := s.authorize(ctx, p, "notification.UpdateTemplate", policy.Resource{Type: "Template", ID: t.Key()}); err != nil {
		return t, err
	}
	if err := domain.LintTemplate(t); err != nil {
		return t, err
	}
	return s.tmpl.UpdateTemplate(ctx, t, func(cur *domain.Template) ([]outbox.Event, error) {
		if expectVersion != 0 && expectVersion != cur.Version {
			return nil, domain.ErrStale
		}
		cur.Subject, cur.Body, cur.UpdatedBy = t.Subject, t.Body, p.Subject
		return s.auditEvents(ctx, eventsv1.Action_ACTION_UPDATE,
			auditlog.Target{Type: eventsv1.RecordType_RECORD_TYPE_NOTIFICATION_TEMPLATE, ID: t.Key()}, "template_lint_passed")
	})
}

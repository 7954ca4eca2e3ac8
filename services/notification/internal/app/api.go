package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/policy"
	"github.com/securemsg/securemsg/services/notification/internal/adapters/pgstore"
	"github.com/securemsg/securemsg/services/notification/internal/domain"
)

// Errors of the API use cases; ports map them to gRPC codes.
var (
	// ErrPermissionDenied: policy refused the caller.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrStale: the etag does not match the stored version.
	ErrStale = errors.New("stale etag")
	// ErrNeedsAddress: a channel is enabled without a contact point.
	ErrNeedsAddress = errors.New("channel enabled without an address")
	// ErrNotPoolMember: a pool subscription names a pool the caller is not a member of.
	ErrNotPoolMember = errors.New("not a member of the subscribed pool")
)

// notificationsScope is the proxy grant scope that lets a proxy be alerted for a patient.
const notificationsScope = "notifications"

func roleOf(p *auth.Principal) domain.Role {
	for _, r := range []auth.Role{auth.RoleClinician, auth.RoleStaff, auth.RolePatient, auth.RoleProxy} {
		if p.HasRole(r) {
			return domain.Role(r)
		}
	}
	return domain.RoleOther
}

func (s *Service) authorize(ctx context.Context, p *auth.Principal, action string, res policy.Resource) error {
	d, err := s.d.Policy.Authorize(ctx, p, action, res, policy.Context{})
	if err != nil {
		return err
	}
	if !d.Allowed {
		return ErrPermissionDenied
	}
	return nil
}

// syncIdentity records what the caller's token says about how to resolve them as a recipient:
// their role and, for proxies, the patients whose grants include the notifications scope.
func (s *Service) syncIdentity(ctx context.Context, tx pgx.Tx, p *auth.Principal) error {
	if err := s.d.Store.SetRole(ctx, tx, p.Subject, roleOf(p)); err != nil {
		return err
	}
	if !p.HasRole(auth.RoleProxy) {
		return nil
	}
	grants := map[string]time.Time{}
	now := time.Now()
	for _, g := range p.ProxyGrants {
		if g.ActiveAt(now) && slices.Contains(g.Scopes, notificationsScope) {
			grants[g.PatientID] = g.ExpiresAt
		}
	}
	return s.d.Store.ReplaceNotifyGrants(ctx, tx, p.Subject, grants)
}

// GetPreferences returns the caller's preferences with contact points opened. The policy
// records the read (contact points are PHI).
func (s *Service) GetPreferences(ctx context.Context, p *auth.Principal) (domain.Preferences, error) {
	if err := s.authorize(ctx, p, "notification.GetPreferences", policy.Resource{Type: "Preferences", ID: p.Subject, Owner: p.Subject}); err != nil {
		return domain.Preferences{}, err
	}
	var out domain.Preferences
	err := s.d.Store.Tx(ctx, func(tx pgx.Tx) error {
		if err := s.syncIdentity(ctx, tx, p); err != nil {
			return err
		}
		var err error
		out, _, err = s.d.Store.LoadPreferences(ctx, tx, p.Subject, true)
		return err
	})
	return out, err
}

// UpdatePreferences applies change to the caller's preferences (if expectVersion matches, when
// non-zero), validates and stores them, and records the change in the audit trail.
func (s *Service) UpdatePreferences(ctx context.Context, p *auth.Principal, expectVersion int64, change func(*domain.Preferences)) (domain.Preferences, error) {
	if err := s.authorize(ctx, p, "notification.UpdatePreferences", policy.Resource{Type: "Preferences", ID: p.Subject, Owner: p.Subject}); err != nil {
		return domain.Preferences{}, err
	}
	var out domain.Preferences
	err := s.d.Store.Tx(ctx, func(tx pgx.Tx) error {
		if err := s.syncIdentity(ctx, tx, p); err != nil {
			return err
		}
		cur, _, err := s.d.Store.LoadPreferences(ctx, tx, p.Subject, true)
		if err != nil {
			return err
		}
		if expectVersion != 0 && expectVersion != cur.Version {
			return ErrStale
		}
		change(&cur)
		cur.Subject, cur.Role = p.Subject, roleOf(p)
		if err := cur.Validate(); err != nil {
			return err
		}
		for _, ch := range domain.Channels {
			if set := cur.Channel(ch); set.Enabled && set.Address == "" {
				return fmt.Errorf("%w: %s", ErrNeedsAddress, ch)
			}
		}
		for _, pool := range cur.PoolSubscriptions {
			if !slices.Contains(p.CarePools, pool) {
				return ErrNotPoolMember
			}
		}
		out, err = s.d.Store.SavePreferences(ctx, tx, cur, expectVersion)
		if errors.Is(err, pgstore.ErrVersionMismatch) {
			return ErrStale
		}
		if err != nil {
			return err
		}
		_, err = s.d.Audit.Record(ctx, tx, s.apiRecord(ctx, p, eventsv1.Action_ACTION_UPDATE,
			eventsv1.RecordType_RECORD_TYPE_NOTIFICATION_PREFERENCES, p.Subject, "own_preferences", "UpdatePreferences"))
		return err
	})
	return out, err
}

func (s *Service) apiRecord(ctx context.Context, p *auth.Principal, action eventsv1.Action, rt eventsv1.RecordType, id, reason, method string) *eventsv1.AuditRecord {
	info := auth.RequestInfoFrom(ctx)
	return &eventsv1.AuditRecord{
		Actor:      &eventsv1.AuditActor{Subject: p.Subject, Role: auditlog.RoleOf(p.RoleNames())},
		Action:     action,
		RecordType: rt,
		RecordId:   id,
		Outcome:    eventsv1.Outcome_OUTCOME_SUCCESS,
		ReasonCode: reason,
		SourceIp:   info.SourceIP,
		UserAgent:  info.UserAgent,
		ClientApp:  p.ClientID,
		Operation:  "/securemsg.notification.v1.NotificationService/" + method,
	}
}

// ListDeliveries lists the caller's delivery log. A filter naming someone else is refused.
func (s *Service) ListDeliveries(ctx context.Context, p *auth.Principal, f domain.DeliveryFilter, cur *pgstore.Cursor, limit int) ([]domain.Delivery, error) {
	if f.Recipient == "" {
		f.Recipient = p.Subject
	}
	if err := s.authorize(ctx, p, "notification.ListDeliveries", policy.Resource{Type: "Deliveries", ID: f.Recipient, Owner: f.Recipient}); err != nil {
		return nil, err
	}
	return s.d.Store.ListDeliveries(ctx, f, cur, limit)
}

// ListTemplates lists every template: stored overrides and the shipped defaults they do not
// replace, ordered by kind, channel, locale.
func (s *Service) ListTemplates(ctx context.Context, p *auth.Principal) ([]domain.Template, error) {
	if err := s.authorize(ctx, p, "notification.ListTemplates", policy.Resource{Type: "Template", ID: "templates"}); err != nil {
		return nil, err
	}
	stored, err := s.d.Store.Templates(ctx)
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

// UpdateTemplate lints and stores t, and records the change in the audit trail.
func (s *Service) UpdateTemplate(ctx context.Context, p *auth.Principal, t domain.Template, expectVersion int64) (domain.Template, error) {
	if err := s.authorize(ctx, p, "notification.UpdateTemplate", policy.Resource{Type: "Template", ID: t.Key()}); err != nil {
		return t, err
	}
	if err := domain.LintTemplate(t); err != nil {
		return t, err
	}
	var out domain.Template
	err := s.d.Store.Tx(ctx, func(tx pgx.Tx) error {
		var err error
		out, err = s.d.Store.UpsertTemplate(ctx, tx, t, expectVersion, p.Subject)
		if errors.Is(err, pgstore.ErrVersionMismatch) {
			return ErrStale
		}
		if err != nil {
			return err
		}
		_, err = s.d.Audit.Record(ctx, tx, s.apiRecord(ctx, p, eventsv1.Action_ACTION_UPDATE,
			eventsv1.RecordType_RECORD_TYPE_NOTIFICATION_TEMPLATE, t.Key(), "template_lint_passed", "UpdateTemplate"))
		return err
	})
	return out, err
}

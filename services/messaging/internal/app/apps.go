package app

import (
	"context"
	"log/slog"
	"slices"

	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/policy"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

func appResource(clientID string) policy.Resource {
	return policy.Resource{Type: "ClientApp", ID: clientID}
}

func appTarget(clientID string) auditlog.Target {
	return auditlog.Target{Type: eventsv1.RecordType_RECORD_TYPE_CLIENT_APP, ID: clientID}
}

// ListClientApps lists the registrations, by client id.
func (s *Service) ListClientApps(ctx context.Context, p *auth.Principal, pageSize int, pageToken string) ([]domain.ClientApp, string, error) {
	limit := pageLimit(pageSize, 100, 500)
	after := ""
	if pageToken != "" {
		parts, err := parseKeysetToken("apps", pageToken, 1)
		if err != nil {
			return nil, "", err
		}
		after = parts[0]
	}
	// The listing is about the registry as a whole, which policy sees as one record.
	if _, err := s.authorize(ctx, p, actListApps, appResource("registry"), policy.Context{}, nil); err != nil {
		return nil, "", err
	}
	apps, err := s.Apps.ClientApps(ctx, after, limit+1)
	if err != nil {
		return nil, "", storeError("list client apps", err)
	}
	next := ""
	if len(apps) > limit {
		apps = apps[:limit]
		next = keysetToken("apps", apps[limit-1].ClientID)
	}
	return apps, next, nil
}

// RegisterClientApp registers a client application, active.
func (s *Service) RegisterClientApp(ctx context.Context, p *auth.Principal, a domain.ClientApp) (domain.ClientApp, error) {
	if err := a.Check(); err != nil {
		return domain.ClientApp{}, err
	}
	if _, err := s.authorize(ctx, p, actRegisterApp, appResource(a.ClientID), policy.Context{}, nil); err != nil {
		return domain.ClientApp{}, err
	}
	a.UpdatedAt = s.Now()
	b := s.newBatch(ctx)
	b.audit(actorFor(p, "", ""), eventsv1.Action_ACTION_CREATE, appTarget(a.ClientID), auditlog.Reason("client_app_registered"))
	rows, err := b.rows()
	if err == nil {
		a, err = s.Apps.RegisterClientApp(ctx, a, rows)
	}
	if err != nil {
		return domain.ClientApp{}, storeError("register client app", err)
	}
	s.Logger.InfoContext(ctx, "client app registered", slog.String("client_id", a.ClientID), slog.String("kind", a.Kind.String()),
		slog.Any("allowed_scopes", a.AllowedScopes))
	return a, nil
}

// Registration fields UpdateClientApp may change.
var appFields = map[string]bool{"display_name": true, "allowed_scopes": true, "pool_ids": true, "active": true}

// UpdateClientApp changes the named fields of a registration.
func (s *Service) UpdateClientApp(ctx context.Context, p *auth.Principal, in domain.ClientApp, mask []string) (domain.ClientApp, error) {
	if in.ClientID == "" {
		return domain.ClientApp{}, usererr.New(usererr.InvalidArgument, "FIELD_REQUIRED", "app.client_id is required")
	}
	if len(mask) == 0 {
		return domain.ClientApp{}, usererr.New(usererr.InvalidArgument, "FIELD_REQUIRED", "update_mask is required")
	}
	for _, f := range mask {
		if !appFields[f] {
			return domain.ClientApp{}, usererr.New(usererr.InvalidArgument, "UPDATE_MASK_FIELD_UNKNOWN", "update_mask names an unknown or read-only field")
		}
	}
	if _, err := s.authorize(ctx, p, actUpdateApp, appResource(in.ClientID), policy.Context{}, nil); err != nil {
		return domain.ClientApp{}, err
	}
	out, err := s.Apps.UpdateClientApp(ctx, in.ClientID, func(cur domain.ClientApp) (domain.ClientApp, []outbox.Event, error) {
		next := cur
		for _, f := range mask {
			switch f {
			case "display_name":
				next.DisplayName = in.DisplayName
			case "allowed_scopes":
				next.AllowedScopes = slices.Clone(in.AllowedScopes)
			case "pool_ids":
				next.PoolIDs = slices.Clone(in.PoolIDs)
			case "active":
				next.Active = in.Active
			}
		}
		if err := next.Check(); err != nil {
			return cur, nil, err
		}
		next.UpdatedAt = s.Now()
		reason := "client_app_updated"
		if next.Active != cur.Active {
			reason = map[bool]string{true: "client_app_reinstated", false: "client_app_withdrawn"}[next.Active]
		}
		b := s.newBatch(ctx)
		b.audit(actorFor(p, "", ""), eventsv1.Action_ACTION_UPDATE, appTarget(in.ClientID), auditlog.Reason(reason))
		rows, err := b.rows()
		return next, rows, err
	})
	if err != nil {
		return domain.ClientApp{}, storeError("update client app", err)
	}
	s.Logger.InfoContext(ctx, "client app updated", slog.String("client_id", out.ClientID), slog.Bool("active", out.Active),
		slog.Any("allowed_scopes", out.AllowedScopes))
	return out, nil
}

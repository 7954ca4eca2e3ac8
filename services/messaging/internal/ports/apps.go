package ports

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"

	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

func appProto(a domain.ClientApp) *messagingv1.ClientApp {
	return &messagingv1.ClientApp{ClientId: a.ClientID, Kind: a.Kind, DisplayName: a.DisplayName, AllowedScopes: a.AllowedScopes,
		PoolIds: a.PoolIDs, Active: a.Active, UpdateTime: timestamppb.New(a.UpdatedAt)}
}

func appFromProto(in *messagingv1.ClientApp) domain.ClientApp {
	return domain.ClientApp{ClientID: in.GetClientId(), Kind: in.GetKind(), DisplayName: in.GetDisplayName(),
		AllowedScopes: in.GetAllowedScopes(), PoolIDs: in.GetPoolIds(), Active: in.GetActive()}
}

// ListClientApps implements messagingv1.MessagingServiceServer.
func (h *Handler) ListClientApps(ctx context.Context, req *messagingv1.ListClientAppsRequest) (*messagingv1.ListClientAppsResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	apps, next, err := h.svc.ListClientApps(ctx, p, int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	out := &messagingv1.ListClientAppsResponse{NextPageToken: next}
	for _, a := range apps {
		out.Apps = append(out.Apps, appProto(a))
	}
	return out, nil
}

// RegisterClientApp implements messagingv1.MessagingServiceServer.
func (h *Handler) RegisterClientApp(ctx context.Context, req *messagingv1.RegisterClientAppRequest) (*messagingv1.RegisterClientAppResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	a, err := h.svc.RegisterClientApp(ctx, p, appFromProto(req.GetApp()))
	if err != nil {
		return nil, err
	}
	return &messagingv1.RegisterClientAppResponse{App: appProto(a)}, nil
}

// UpdateClientApp implements messagingv1.MessagingServiceServer.
func (h *Handler) UpdateClientApp(ctx context.Context, req *messagingv1.UpdateClientAppRequest) (*messagingv1.UpdateClientAppResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	a, err := h.svc.UpdateClientApp(ctx, p, appFromProto(req.GetApp()), req.GetUpdateMask().GetPaths())
	if err != nil {
		return nil, err
	}
	return &messagingv1.UpdateClientAppResponse{App: appProto(a)}, nil
}

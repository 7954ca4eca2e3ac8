package ports

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"

	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

func grantProto(g domain.ProxyGrant) *messagingv1.ProxyGrant {
	out := &messagingv1.ProxyGrant{GrantId: g.ID, ProxySubject: g.ProxySubject, PatientId: g.PatientID, Scopes: g.Scopes,
		ExpireTime: timestamppb.New(g.ExpiresAt), CreateTime: timestamppb.New(g.CreatedAt), GrantedBySubject: g.GrantedBy}
	if !g.RevokedAt.IsZero() {
		out.RevokeTime = timestamppb.New(g.RevokedAt)
	}
	return out
}

// ListProxyGrants implements messagingv1.MessagingServiceServer.
func (h *Handler) ListProxyGrants(ctx context.Context, req *messagingv1.ListProxyGrantsRequest) (*messagingv1.ListProxyGrantsResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	grants, err := h.svc.ListProxyGrants(ctx, p, req.GetPatientId())
	if err != nil {
		return nil, err
	}
	out := &messagingv1.ListProxyGrantsResponse{}
	for _, g := range grants {
		out.Grants = append(out.Grants, grantProto(g))
	}
	return out, nil
}

// GrantProxyAccess implements messagingv1.MessagingServiceServer.
func (h *Handler) GrantProxyAccess(ctx context.Context, req *messagingv1.GrantProxyAccessRequest) (*messagingv1.GrantProxyAccessResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	if err := req.GetExpireTime().CheckValid(); err != nil {
		return nil, usererr.New(usererr.InvalidArgument, "FIELD_INVALID", "expire_time is not a valid time")
	}
	g, err := h.svc.GrantProxyAccess(ctx, p, req.GetProxySubject(), req.GetScopes(), req.GetExpireTime().AsTime())
	if err != nil {
		return nil, err
	}
	return &messagingv1.GrantProxyAccessResponse{Grant: grantProto(g)}, nil
}

// RevokeProxyAccess implements messagingv1.MessagingServiceServer.
func (h *Handler) RevokeProxyAccess(ctx context.Context, req *messagingv1.RevokeProxyAccessRequest) (*messagingv1.RevokeProxyAccessResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	g, err := h.svc.RevokeProxyAccess(ctx, p, req.GetGrantId())
	if err != nil {
		return nil, err
	}
	return &messagingv1.RevokeProxyAccessResponse{Grant: grantProto(g)}, nil
}

package ports

import (
	"context"
	"strconv"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/messaging/internal/app"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

func poolProto(v app.PoolView) *messagingv1.Pool {
	p := v.Pool
	out := &messagingv1.Pool{
		PoolId: p.ID, Name: p.Name, Organisation: p.Organisation, Audience: messagingv1.PoolAudience_POOL_AUDIENCE_ALL_PATIENTS,
		PatientIds: p.PatientIDs, Active: p.Active, OpenNow: v.OpenNow, EmergencyDisclaimer: v.Settings.EmergencyDisclaimer,
		MemberCount: p.MemberCount, CreateTime: timestamppb.New(p.CreatedAt), UpdateTime: timestamppb.New(p.UpdatedAt),
		Etag: strconv.FormatInt(p.Version, 10),
	}
	if p.ListedOnly {
		out.Audience = messagingv1.PoolAudience_POOL_AUDIENCE_LISTED_PATIENTS
	}
	if len(p.Hours.Windows) > 0 {
		out.ActiveHours = &messagingv1.ActiveHours{TimeZone: p.Hours.TimeZone}
		for _, w := range p.Hours.Windows {
			out.ActiveHours.Windows = append(out.ActiveHours.Windows, &messagingv1.HoursWindow{
				DayOfWeek: int32(w.Day), OpenMinute: int32(w.Open), CloseMinute: int32(w.Close), //nolint:gosec // G115: checked to be within a week's minutes
			})
		}
	}
	if v.Settings.Turnaround > 0 {
		out.TurnaroundTime = durationpb.New(v.Settings.Turnaround)
	}
	return out
}

func poolFromProto(in *messagingv1.Pool) domain.Pool {
	p := domain.Pool{
		ID: in.GetPoolId(), Name: in.GetName(), Organisation: in.GetOrganisation(),
		ListedOnly: in.GetAudience() == messagingv1.PoolAudience_POOL_AUDIENCE_LISTED_PATIENTS,
		PatientIDs: in.GetPatientIds(), Active: in.GetActive(),
		Hours: domain.ActiveHours{TimeZone: in.GetActiveHours().GetTimeZone()},
	}
	for _, w := range in.GetActiveHours().GetWindows() {
		p.Hours.Windows = append(p.Hours.Windows, domain.HoursWindow{Day: int(w.GetDayOfWeek()), Open: int(w.GetOpenMinute()), Close: int(w.GetCloseMinute())})
	}
	return p
}

func memberProto(m domain.PoolMember) *messagingv1.PoolMember {
	return &messagingv1.PoolMember{Subject: m.Subject, Role: m.Role, AddTime: timestamppb.New(m.AddedAt)}
}

// ListPools implements messagingv1.MessagingServiceServer.
func (h *Handler) ListPools(ctx context.Context, req *messagingv1.ListPoolsRequest) (*messagingv1.ListPoolsResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	pools, next, err := h.svc.ListPools(ctx, p, app.ListPoolsCmd{
		PatientID: req.GetPatientId(), IncludeInactive: req.GetIncludeInactive(), PageSize: int(req.GetPageSize()), PageToken: req.GetPageToken(),
	})
	if err != nil {
		return nil, err
	}
	out := &messagingv1.ListPoolsResponse{NextPageToken: next}
	for _, v := range pools {
		out.Pools = append(out.Pools, poolProto(v))
	}
	return out, nil
}

// GetPool implements messagingv1.MessagingServiceServer.
func (h *Handler) GetPool(ctx context.Context, req *messagingv1.GetPoolRequest) (*messagingv1.GetPoolResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	v, err := h.svc.GetPool(ctx, p, req.GetPoolId())
	if err != nil {
		return nil, err
	}
	return &messagingv1.GetPoolResponse{Pool: poolProto(v)}, nil
}

// ListPoolMembers implements messagingv1.MessagingServiceServer.
func (h *Handler) ListPoolMembers(ctx context.Context, req *messagingv1.ListPoolMembersRequest) (*messagingv1.ListPoolMembersResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	members, next, err := h.svc.ListPoolMembers(ctx, p, req.GetPoolId(), int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	out := &messagingv1.ListPoolMembersResponse{NextPageToken: next}
	for _, m := range members {
		out.Members = append(out.Members, memberProto(m))
	}
	return out, nil
}

// CreatePool implements messagingv1.MessagingServiceServer.
func (h *Handler) CreatePool(ctx context.Context, req *messagingv1.CreatePoolRequest) (*messagingv1.CreatePoolResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	v, err := h.svc.CreatePool(ctx, p, poolFromProto(req.GetPool()))
	if err != nil {
		return nil, err
	}
	return &messagingv1.CreatePoolResponse{Pool: poolProto(v)}, nil
}

// UpdatePool implements messagingv1.MessagingServiceServer.
func (h *Handler) UpdatePool(ctx context.Context, req *messagingv1.UpdatePoolRequest) (*messagingv1.UpdatePoolResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	v, err := h.svc.UpdatePool(ctx, p, poolFromProto(req.GetPool()), req.GetPool().GetEtag(), req.GetUpdateMask().GetPaths())
	if err != nil {
		return nil, err
	}
	return &messagingv1.UpdatePoolResponse{Pool: poolProto(v)}, nil
}

// SetPoolMember implements messagingv1.MessagingServiceServer.
func (h *Handler) SetPoolMember(ctx context.Context, req *messagingv1.SetPoolMemberRequest) (*messagingv1.SetPoolMemberResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	m, added, err := h.svc.SetPoolMember(ctx, p, domain.PoolMember{PoolID: req.GetPoolId(), Subject: req.GetSubject(), Role: req.GetRole()})
	if err != nil {
		return nil, err
	}
	return &messagingv1.SetPoolMemberResponse{Member: memberProto(m), Added: added}, nil
}

// RemovePoolMember implements messagingv1.MessagingServiceServer.
func (h *Handler) RemovePoolMember(ctx context.Context, req *messagingv1.RemovePoolMemberRequest) (*messagingv1.RemovePoolMemberResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	n, err := h.svc.RemovePoolMember(ctx, p, req.GetPoolId(), req.GetSubject())
	if err != nil {
		return nil, err
	}
	return &messagingv1.RemovePoolMemberResponse{AssignedThreads: n}, nil
}

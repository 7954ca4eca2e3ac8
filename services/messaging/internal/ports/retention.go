package ports

import (
	"context"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
)

// GetRetentionPolicy implements messagingv1.MessagingServiceServer.
func (h *Handler) GetRetentionPolicy(ctx context.Context, _ *messagingv1.GetRetentionPolicyRequest) (*messagingv1.GetRetentionPolicyResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	pol, err := h.svc.GetRetentionPolicy(ctx, p)
	if err != nil {
		return nil, err
	}
	out := &messagingv1.GetRetentionPolicyResponse{AsOf: timestamppb.New(pol.AsOf), ThreadsOnLegalHold: pol.Holds.ThreadsHeld,
		PatientLegalHolds: pol.Holds.PatientHolds, ThreadLegalHolds: pol.Holds.ThreadHolds}
	if pol.PurgeInterval > 0 {
		out.PurgeInterval = durationpb.New(pol.PurgeInterval)
	}
	for _, r := range pol.Periods {
		out.Periods = append(out.Periods, &messagingv1.RetentionPeriod{Category: r.Category, Period: durationpb.New(r.Period), CutoffTime: timestamppb.New(r.Cutoff)})
	}
	return out, nil
}

// ListLegalHolds implements messagingv1.MessagingServiceServer.
func (h *Handler) ListLegalHolds(ctx context.Context, req *messagingv1.ListLegalHoldsRequest) (*messagingv1.ListLegalHoldsResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	holds, next, err := h.svc.ListLegalHolds(ctx, p, int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	out := &messagingv1.ListLegalHoldsResponse{NextPageToken: next}
	for _, hd := range holds {
		lh := &messagingv1.LegalHold{CaseReference: hd.CaseReference, CreatedBySubject: hd.CreatedBySubject}
		if hd.ThreadID != "" {
			lh.Target = &messagingv1.LegalHold_ThreadId{ThreadId: hd.ThreadID}
		} else {
			lh.Target = &messagingv1.LegalHold_PatientId{PatientId: hd.PatientID}
		}
		if !hd.CreatedAt.IsZero() {
			lh.CreateTime = timestamppb.New(hd.CreatedAt)
		}
		out.LegalHolds = append(out.LegalHolds, lh)
	}
	return out, nil
}

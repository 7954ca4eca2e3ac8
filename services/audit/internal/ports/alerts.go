package ports

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
	"github.com/securemsg/securemsg/services/audit/internal/domain"
)

// ListAlerts implements the rpc.
func (g *GRPC) ListAlerts(ctx context.Context, req *auditv1.ListAlertsRequest) (*auditv1.ListAlertsResponse, error) {
	page, err := g.svc.ListAlerts(ctx, domain.AlertFilter{OpenOnly: req.GetOpenOnly(), RuleID: req.GetRuleId()}, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	resp := &auditv1.ListAlertsResponse{NextPageToken: page.NextPageToken}
	for _, a := range page.Alerts {
		resp.Alerts = append(resp.Alerts, alertProto(a))
	}
	return resp, nil
}

// AcknowledgeAlert implements the rpc.
func (g *GRPC) AcknowledgeAlert(ctx context.Context, req *auditv1.AcknowledgeAlertRequest) (*auditv1.AcknowledgeAlertResponse, error) {
	a, err := g.svc.AcknowledgeAlert(ctx, req.GetAlertId(), req.GetNote())
	if err != nil {
		return nil, err
	}
	return &auditv1.AcknowledgeAlertResponse{Alert: alertProto(a)}, nil
}

func alertProto(a domain.RaisedAlert) *auditv1.Alert {
	out := &auditv1.Alert{AlertId: a.ID, RuleId: a.RuleID, Actor: a.Actor, Severity: a.Severity,
		WindowStart: timestamppb.New(a.WindowStart), WindowEnd: timestamppb.New(a.WindowEnd), Count: a.Count, Threshold: a.Threshold,
		FirstSequence: a.FirstSeq, LastSequence: a.LastSeq, RaiseTime: timestamppb.New(a.RaisedAt),
		AcknowledgedBy: a.AcknowledgedBy, Note: a.Note}
	if !a.Open() {
		out.AcknowledgeTime = timestamppb.New(a.AcknowledgedAt)
	}
	return out
}

package ports

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"

	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/internal/platform/protoenum"
	"github.com/securemsg/securemsg/services/messaging/internal/app"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

func personProto(v app.PersonView) *messagingv1.Person {
	p := v.Person
	return &messagingv1.Person{
		Subject: p.Subject, ExternalId: p.ExternalID, UserName: p.UserName, DisplayName: v.DisplayName,
		Roles: p.Roles, Status: p.Status, PatientId: p.PatientID, Source: messagingv1.PersonSource(p.Source),
		CreateTime: timestamppb.New(p.CreatedAt), UpdateTime: timestamppb.New(p.UpdatedAt),
	}
}

// ListPeople implements messagingv1.MessagingServiceServer.
func (h *Handler) ListPeople(ctx context.Context, req *messagingv1.ListPeopleRequest) (*messagingv1.ListPeopleResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	q := domain.PersonQuery{UserName: req.GetUserName(), ExternalID: req.GetExternalId()}
	for _, src := range req.GetSources() {
		q.Sources = append(q.Sources, domain.PersonSource(protoenum.Code(src, 0)))
	}
	people, next, err := h.svc.ListPeople(ctx, p, q, int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	out := &messagingv1.ListPeopleResponse{NextPageToken: next}
	for _, v := range people {
		out.People = append(out.People, personProto(v))
	}
	return out, nil
}

// GetPerson implements messagingv1.MessagingServiceServer.
func (h *Handler) GetPerson(ctx context.Context, req *messagingv1.GetPersonRequest) (*messagingv1.GetPersonResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	v, err := h.svc.GetPerson(ctx, p, req.GetSubject())
	if err != nil {
		return nil, err
	}
	return &messagingv1.GetPersonResponse{Person: personProto(v)}, nil
}

// ProvisionPerson implements messagingv1.MessagingServiceServer.
func (h *Handler) ProvisionPerson(ctx context.Context, req *messagingv1.ProvisionPersonRequest) (*messagingv1.ProvisionPersonResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	in := req.GetPerson()
	v, created, err := h.svc.ProvisionPerson(ctx, p, app.PersonInput{Subject: in.GetSubject(), ExternalID: in.GetExternalId(),
		UserName: in.GetUserName(), DisplayName: in.GetDisplayName(), Roles: in.GetRoles(), Status: in.GetStatus()})
	if err != nil {
		return nil, err
	}
	return &messagingv1.ProvisionPersonResponse{Person: personProto(v), Created: created}, nil
}

// SetPersonStatus implements messagingv1.MessagingServiceServer.
func (h *Handler) SetPersonStatus(ctx context.Context, req *messagingv1.SetPersonStatusRequest) (*messagingv1.SetPersonStatusResponse, error) {
	p, err := h.principal(ctx)
	if err != nil {
		return nil, err
	}
	v, err := h.svc.SetPersonStatus(ctx, p, req.GetSubject(), req.GetStatus())
	if err != nil {
		return nil, err
	}
	return &messagingv1.SetPersonStatusResponse{Person: personProto(v)}, nil
}

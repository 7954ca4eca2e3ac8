package auditlog_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
)

func TestNewRecordFillsEveryFieldFromTheRequest(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	em, err := auditlog.NewEmitter(commonv1.Component_COMPONENT_ATTACHMENT, auditlog.WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	reqCtx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("user-agent", "portal/1.0", "x-request-id", "req-1"))
	target := auditlog.Target{Type: eventsv1.RecordType_RECORD_TYPE_ATTACHMENT, ID: "att-1", PatientID: "pat-1", PoolID: "pool-1",
		Sensitivity: commonv1.Sensitivity_SENSITIVITY_NORMAL}
	tests := []struct {
		name      string
		principal *auth.Principal
		opts      []auditlog.RecordOption
		want      *eventsv1.AuditRecord
	}{
		{
			name:      "patient reads their own record",
			principal: &auth.Principal{Kind: auth.KindUser, Subject: "pat-1", Roles: []auth.Role{auth.RolePatient}, PatientID: "pat-1", ClientID: "portal"},
			want: &eventsv1.AuditRecord{
				Actor:        &eventsv1.AuditActor{Subject: "pat-1", Role: commonv1.Role_ROLE_PATIENT},
				PurposeOfUse: commonv1.PurposeOfUse_PURPOSE_OF_USE_PATIENT_REQUEST,
				Outcome:      eventsv1.Outcome_OUTCOME_SUCCESS, ClientApp: "portal",
			},
		},
		{
			name:      "proxy acts on behalf of the patient",
			principal: &auth.Principal{Kind: auth.KindUser, Subject: "prx-1", Roles: []auth.Role{auth.RoleProxy}, PatientID: "prx-1", ClientID: "portal"},
			want: &eventsv1.AuditRecord{
				Actor:        &eventsv1.AuditActor{Subject: "prx-1", Role: commonv1.Role_ROLE_PROXY, OnBehalfOf: "pat-1"},
				PurposeOfUse: commonv1.PurposeOfUse_PURPOSE_OF_USE_PATIENT_REQUEST,
				Outcome:      eventsv1.Outcome_OUTCOME_SUCCESS, ClientApp: "portal",
			},
		},
		{
			name:      "clinician denied, with a reason",
			principal: &auth.Principal{Kind: auth.KindUser, Subject: "clin-1", Roles: []auth.Role{auth.RoleClinician}, ClientID: "careapp"},
			opts:      []auditlog.RecordOption{auditlog.Denied("No_Permit")},
			want: &eventsv1.AuditRecord{
				Actor:        &eventsv1.AuditActor{Subject: "clin-1", Role: commonv1.Role_ROLE_CLINICIAN},
				PurposeOfUse: commonv1.PurposeOfUse_PURPOSE_OF_USE_TREATMENT,
				Outcome:      eventsv1.Outcome_OUTCOME_DENIED, ReasonCode: "no_permit", ClientApp: "careapp",
			},
		},
		{
			name:      "break glass",
			principal: &auth.Principal{Kind: auth.KindUser, Subject: "clin-1", Roles: []auth.Role{auth.RoleClinician}, ClientID: "careapp"},
			opts:      []auditlog.RecordOption{auditlog.BreakGlass()},
			want: &eventsv1.AuditRecord{
				Actor:        &eventsv1.AuditActor{Subject: "clin-1", Role: commonv1.Role_ROLE_CLINICIAN},
				PurposeOfUse: commonv1.PurposeOfUse_PURPOSE_OF_USE_EMERGENCY, Severity: eventsv1.Severity_SEVERITY_HIGH,
				Outcome: eventsv1.Outcome_OUTCOME_SUCCESS, ReasonCode: "break_glass", ClientApp: "careapp",
			},
		},
		{
			name: "a job acts as the service",
			opts: []auditlog.RecordOption{auditlog.Operation("attachment.cleanup")},
			want: &eventsv1.AuditRecord{
				Actor:        &eventsv1.AuditActor{Subject: "svc:attachment", Role: commonv1.Role_ROLE_SERVICE},
				PurposeOfUse: commonv1.PurposeOfUse_PURPOSE_OF_USE_OPERATIONS,
				Outcome:      eventsv1.Outcome_OUTCOME_SUCCESS,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := reqCtx
			if tt.principal != nil {
				ctx = auth.WithPrincipal(ctx, tt.principal)
			}
			got := em.NewRecord(ctx, eventsv1.Action_ACTION_READ, target, tt.opts...)
			want := proto.Clone(tt.want).(*eventsv1.AuditRecord)
			want.Meta = &eventsv1.EventMeta{RequestId: "req-1", OccurredAt: got.GetMeta().GetOccurredAt()}
			want.Action, want.RecordType, want.RecordId = eventsv1.Action_ACTION_READ, target.Type, target.ID
			want.PatientId, want.PoolId, want.Sensitivity = target.PatientID, target.PoolID, target.Sensitivity
			want.UserAgent = "portal/1.0"
			if want.Operation == "" {
				want.Operation = "attachment.cleanup"
				if tt.principal != nil {
					want.Operation = "attachment" // no rpc in this context: the service's name
				}
			}
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("NewRecord() mismatch (-want +got):\n%s", diff)
			}
			if !got.GetMeta().GetOccurredAt().AsTime().Equal(now) {
				t.Errorf("occurred_at = %v, want the emitter's clock %v", got.GetMeta().GetOccurredAt().AsTime(), now)
			}
			if _, err := em.Event(ctx, got); err != nil {
				t.Errorf("Event(NewRecord()) = %v, want a valid record", err)
			}
		})
	}
}

func TestNewEventFillsMetaAndEncodes(t *testing.T) {
	t.Parallel()
	em, err := auditlog.NewEmitter(commonv1.Component_COMPONENT_ATTACHMENT)
	if err != nil {
		t.Fatal(err)
	}
	ctx := metadata.NewIncomingContext(t.Context(), metadata.Pairs("x-request-id", "req-9"))
	ev, err := em.NewEvent(ctx, "securemsg.events.attachment.scanned", &eventsv1.AttachmentScanned{AttachmentId: "att-1"})
	if err != nil {
		t.Fatalf("NewEvent() error = %v", err)
	}
	var got eventsv1.AttachmentScanned
	if err := proto.Unmarshal(ev.Payload, &got); err != nil {
		t.Fatal(err)
	}
	m := got.GetMeta()
	if ev.ID == "" || m.GetEventId() != ev.ID || m.GetProducer() != commonv1.Component_COMPONENT_ATTACHMENT || m.GetRequestId() != "req-9" || m.GetOccurredAt() == nil {
		t.Errorf("NewEvent() meta = %v (event id %q), want id, producer, request id and time", m, ev.ID)
	}
	if got.GetAttachmentId() != "att-1" || ev.Subject != "securemsg.events.attachment.scanned" {
		t.Errorf("NewEvent() = %v on %q, want the payload on the given subject", &got, ev.Subject)
	}
	if _, err := em.NewEvent(ctx, "s.x", &eventsv1.AuditActor{}); err == nil {
		t.Errorf("NewEvent(a message without meta) = nil error, want one")
	}
}

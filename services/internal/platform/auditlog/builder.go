package auditlog

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/logging"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
)

// Target is the record an audited action touched: its type and id, and the patient, pool and
// sensitivity it belongs to where it has them.
type Target struct {
	Type        eventsv1.RecordType
	ID          string
	PatientID   string
	PoolID      string
	Sensitivity commonv1.Sensitivity
}

// Actor is who acted, as the audit record names them.
type Actor struct {
	Subject string
	Role    commonv1.Role
	// OnBehalfOf is the patient a proxy acted for.
	OnBehalfOf string
}

// RecordOption changes a record NewRecord builds.
type RecordOption func(*eventsv1.AuditRecord)

// As names the actor when the service knows better than the principal's roles which role the
// caller acted in (a clinician acting as a pool member, a proxy for one patient).
func As(a Actor) RecordOption {
	return func(r *eventsv1.AuditRecord) {
		r.Actor = &eventsv1.AuditActor{Subject: a.Subject, Role: a.Role, OnBehalfOf: a.OnBehalfOf}
		r.PurposeOfUse = purposeOf(a.Role)
	}
}

// Denied marks the action as refused, with the deciding reason code.
func Denied(reason string) RecordOption {
	return func(r *eventsv1.AuditRecord) {
		r.Outcome = eventsv1.Outcome_OUTCOME_DENIED
		r.ReasonCode = normaliseCode(reason)
	}
}

// Failed marks the action as attempted and failed, with a reason code.
func Failed(reason string) RecordOption {
	return func(r *eventsv1.AuditRecord) {
		r.Outcome = eventsv1.Outcome_OUTCOME_FAILURE
		r.ReasonCode = normaliseCode(reason)
	}
}

// Reason sets the reason code (a lower-case code, never free text).
func Reason(code string) RecordOption {
	return func(r *eventsv1.AuditRecord) { r.ReasonCode = normaliseCode(code) }
}

// WithSeverity overrides the default severity (DefaultSeverity).
func WithSeverity(s eventsv1.Severity) RecordOption {
	return func(r *eventsv1.AuditRecord) { r.Severity = s }
}

// BreakGlass marks an emergency access: HIGH severity, purpose of use EMERGENCY.
func BreakGlass() RecordOption {
	return func(r *eventsv1.AuditRecord) {
		r.Severity = eventsv1.Severity_SEVERITY_HIGH
		r.PurposeOfUse = commonv1.PurposeOfUse_PURPOSE_OF_USE_EMERGENCY
		if r.ReasonCode == "" {
			r.ReasonCode = "break_glass"
		}
	}
}

// Operation names what ran when it is not an rpc (a job: "messaging.retention_purge").
func Operation(name string) RecordOption {
	return func(r *eventsv1.AuditRecord) { r.Operation = name }
}

// OccurredAt sets when the action happened (default: the emitter's clock now).
func OccurredAt(t time.Time) RecordOption {
	return func(r *eventsv1.AuditRecord) { r.Meta.OccurredAt = timestamppb.New(t) }
}

// WithPurpose overrides the purpose of use derived from the actor's role.
func WithPurpose(p commonv1.PurposeOfUse) RecordOption {
	return func(r *eventsv1.AuditRecord) { r.PurposeOfUse = p }
}

// NewRecord builds the audit record of action on target by the caller of the request in ctx,
// the one way every service builds one:
//   - actor: the principal in ctx (ActorOf), or this service itself when there is none (a
//     job or a consumer);
//   - purpose of use from the actor's role: patients and proxies PATIENT_REQUEST, clinicians
//     and staff TREATMENT, everyone else OPERATIONS;
//   - where the request came from: source address, user agent, request id, client app;
//   - the rpc's full method as the operation (Operation names a job instead);
//   - outcome SUCCESS.
//
// Options change any of these. Record and Event complete and validate it.
func (e *Emitter) NewRecord(ctx context.Context, action eventsv1.Action, target Target, opts ...RecordOption) *eventsv1.AuditRecord {
	ri := auth.RequestInfoFrom(ctx)
	rec := &eventsv1.AuditRecord{
		Meta:        &eventsv1.EventMeta{RequestId: ri.RequestID, OccurredAt: timestamppb.New(e.now())},
		Action:      action,
		RecordType:  target.Type,
		RecordId:    target.ID,
		PatientId:   target.PatientID,
		PoolId:      target.PoolID,
		Sensitivity: target.Sensitivity,
		Outcome:     eventsv1.Outcome_OUTCOME_SUCCESS,
		SourceIp:    ri.SourceIP,
		UserAgent:   ri.UserAgent,
		Operation:   ri.Method,
	}
	if rec.Meta.RequestId == "" {
		rec.Meta.RequestId = logging.RequestID(ctx)
	}
	if p, ok := auth.FromContext(ctx); ok {
		a := ActorOf(p, target.PatientID)
		rec.Actor = &eventsv1.AuditActor{Subject: a.Subject, Role: a.Role, OnBehalfOf: a.OnBehalfOf}
		rec.ClientApp = p.ClientID
	} else {
		rec.Actor = &eventsv1.AuditActor{Subject: "svc:" + serviceToken(e.producer), Role: commonv1.Role_ROLE_SERVICE}
	}
	rec.PurposeOfUse = purposeOf(rec.Actor.Role)
	for _, o := range opts {
		o(rec)
	}
	if rec.Operation == "" {
		rec.Operation = serviceToken(e.producer)
	}
	return rec
}

// ActorOf is the actor a principal is recorded as on a record of patientID: a service as
// ROLE_SERVICE, a proxy acting for someone else's record as ROLE_PROXY on behalf of that
// patient, anyone else in their most specific role (RoleOf).
func ActorOf(p *auth.Principal, patientID string) Actor {
	a := Actor{Subject: p.Subject}
	switch {
	case p.Kind == auth.KindService:
		a.Role = commonv1.Role_ROLE_SERVICE
	case p.HasRole(auth.RoleProxy) && patientID != "" && p.PatientID != patientID:
		a.Role, a.OnBehalfOf = commonv1.Role_ROLE_PROXY, patientID
	default:
		a.Role = RoleOf(p.RoleNames())
	}
	return a
}

func purposeOf(r commonv1.Role) commonv1.PurposeOfUse {
	switch r {
	case commonv1.Role_ROLE_PATIENT, commonv1.Role_ROLE_PROXY:
		return commonv1.PurposeOfUse_PURPOSE_OF_USE_PATIENT_REQUEST
	case commonv1.Role_ROLE_CLINICIAN, commonv1.Role_ROLE_STAFF:
		return commonv1.PurposeOfUse_PURPOSE_OF_USE_TREATMENT
	}
	return commonv1.PurposeOfUse_PURPOSE_OF_USE_OPERATIONS
}

// EventMeta is the metadata of a new event from this service, the one way every service makes
// it: a new event id (uuid v7), now, the producer and the request id of ctx.
func (e *Emitter) EventMeta(ctx context.Context) *eventsv1.EventMeta {
	return &eventsv1.EventMeta{
		EventId:    outbox.NewID(),
		OccurredAt: timestamppb.New(e.now()),
		Producer:   e.producer,
		RequestId:  logging.RequestID(ctx),
	}
}

// NewEvent fills the `meta` field of msg (an events.v1 message) with EventMeta and encodes it
// as an outbox event on subject, with the event id as its Nats-Msg-Id.
func (e *Emitter) NewEvent(ctx context.Context, subject string, msg proto.Message) (outbox.Event, error) {
	meta := e.EventMeta(ctx)
	if meta.RequestId == "" {
		meta.RequestId = auth.RequestInfoFrom(ctx).RequestID
	}
	m := msg.ProtoReflect()
	fd := m.Descriptor().Fields().ByName("meta")
	if fd == nil || fd.Message() == nil || fd.Message().FullName() != meta.ProtoReflect().Descriptor().FullName() {
		return outbox.Event{}, fmt.Errorf("auditlog: %s has no events.v1.EventMeta meta field", m.Descriptor().FullName())
	}
	m.Set(fd, protoreflect.ValueOfMessage(meta.ProtoReflect()))
	payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		return outbox.Event{}, fmt.Errorf("auditlog: encode event %s: %w", meta.EventId, err)
	}
	return outbox.Event{ID: meta.EventId, Subject: subject, Payload: payload}, nil
}

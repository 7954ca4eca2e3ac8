package auditlog

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
)

// Recorder adapts the emitter to auth.DecisionRecorder for the rpc guards: each decision is
// written in a short transaction of its own on db (the guard has no transaction of the use
// case's). An allowed PHI read whose record cannot be written gets the error back, and the
// guard refuses the read.
func (e *Emitter) Recorder(db pg.TxBeginner) auth.DecisionRecorder {
	return auth.RecorderFunc(func(ctx context.Context, d auth.DecisionRecord) error {
		rec := FromDecision(d)
		return pg.WithTx(ctx, db, func(tx pgx.Tx) error {
			_, err := e.Record(ctx, tx, rec)
			return err
		})
	})
}

// FromDecision maps a guard's decision to an audit record: denials become ACTION_DENY with
// outcome DENIED, break-the-glass ACTION_BREAK_GLASS (HIGH), allowed PHI reads ACTION_READ.
func FromDecision(d auth.DecisionRecord) *eventsv1.AuditRecord {
	rec := &eventsv1.AuditRecord{
		Meta:       &eventsv1.EventMeta{RequestId: d.RequestID},
		Actor:      &eventsv1.AuditActor{Subject: d.ActorSubject, Role: RoleOf(d.ActorRoles), OnBehalfOf: d.OnBehalfOf},
		RecordType: RecordTypeOf(d.RecordType),
		RecordId:   d.RecordID,
		PatientId:  d.PatientID,
		ReasonCode: d.ReasonCode,
		SourceIp:   d.SourceIP,
		UserAgent:  d.UserAgent,
		ClientApp:  d.ClientApp,
		Operation:  d.Action,
	}
	if !d.Time.IsZero() {
		rec.Meta.OccurredAt = timestamppb.New(d.Time)
	}
	if rec.Actor.Subject == "" {
		rec.Actor.Subject = "anonymous"
	}
	rec.PurposeOfUse = purposeOf(rec.Actor.Role)
	switch {
	case d.Outcome == auth.OutcomeDenied:
		rec.Action, rec.Outcome = eventsv1.Action_ACTION_DENY, eventsv1.Outcome_OUTCOME_DENIED
	case d.BreakGlass:
		rec.Action, rec.Outcome = eventsv1.Action_ACTION_BREAK_GLASS, eventsv1.Outcome_OUTCOME_SUCCESS
		rec.Severity = eventsv1.Severity_SEVERITY_HIGH
		rec.PurposeOfUse = commonv1.PurposeOfUse_PURPOSE_OF_USE_EMERGENCY
	default:
		rec.Action, rec.Outcome = eventsv1.Action_ACTION_READ, eventsv1.Outcome_OUTCOME_SUCCESS
	}
	if rec.RecordType == eventsv1.RecordType_RECORD_TYPE_UNSPECIFIED {
		// An rpc-level decision names no record; it is still an access to the service's API.
		rec.RecordType = eventsv1.RecordType_RECORD_TYPE_AUDIT_LOG
		if !strings.HasPrefix(d.Action, "audit.") {
			rec.RecordType = eventsv1.RecordType_RECORD_TYPE_THREAD
		}
	}
	// Reason codes from the guard may hold policy ids with characters outside the code
	// vocabulary; normalise them rather than lose the record.
	rec.ReasonCode = normaliseCode(rec.ReasonCode)
	if rec.Operation != "" && !operationPattern.MatchString(rec.Operation) {
		rec.Operation = ""
	}
	return rec
}

// RoleOf picks the most specific role of a principal's role names for the audit record.
func RoleOf(roles []string) commonv1.Role {
	best := commonv1.Role_ROLE_UNSPECIFIED
	for _, r := range roles {
		var v commonv1.Role
		switch auth.Role(r) {
		case auth.RolePatient:
			v = commonv1.Role_ROLE_PATIENT
		case auth.RoleProxy:
			v = commonv1.Role_ROLE_PROXY
		case auth.RoleClinician:
			v = commonv1.Role_ROLE_CLINICIAN
		case auth.RoleStaff:
			v = commonv1.Role_ROLE_STAFF
		case auth.RoleAdmin:
			v = commonv1.Role_ROLE_ADMIN
		case auth.RoleAuditor:
			v = commonv1.Role_ROLE_AUDITOR
		case auth.RoleProvisioner:
			v = commonv1.Role_ROLE_PROVISIONER
		case "service":
			v = commonv1.Role_ROLE_SERVICE
		}
		if best == commonv1.Role_ROLE_UNSPECIFIED {
			best = v
		}
	}
	return best
}

// RoleName is the role name (auth.Role) an audit role stands for; "" for none.
func RoleName(r commonv1.Role) string {
	switch r {
	case commonv1.Role_ROLE_PATIENT:
		return string(auth.RolePatient)
	case commonv1.Role_ROLE_PROXY:
		return string(auth.RoleProxy)
	case commonv1.Role_ROLE_CLINICIAN:
		return string(auth.RoleClinician)
	case commonv1.Role_ROLE_STAFF:
		return string(auth.RoleStaff)
	case commonv1.Role_ROLE_ADMIN:
		return string(auth.RoleAdmin)
	case commonv1.Role_ROLE_AUDITOR:
		return string(auth.RoleAuditor)
	case commonv1.Role_ROLE_PROVISIONER:
		return string(auth.RoleProvisioner)
	case commonv1.Role_ROLE_SERVICE:
		return "service"
	}
	return ""
}

// RecordTypeOf maps a policy resource type ("Thread", "Message", ...) to a RecordType.
func RecordTypeOf(t string) eventsv1.RecordType {
	switch strings.ToLower(t) {
	case "thread":
		return eventsv1.RecordType_RECORD_TYPE_THREAD
	case "message":
		return eventsv1.RecordType_RECORD_TYPE_MESSAGE
	case "attachment":
		return eventsv1.RecordType_RECORD_TYPE_ATTACHMENT
	case "pool":
		return eventsv1.RecordType_RECORD_TYPE_POOL
	case "poolmembership", "pool_membership":
		return eventsv1.RecordType_RECORD_TYPE_POOL_MEMBERSHIP
	case "proxygrant", "proxy_grant":
		return eventsv1.RecordType_RECORD_TYPE_PROXY_GRANT
	case "clientapp", "client_app":
		return eventsv1.RecordType_RECORD_TYPE_CLIENT_APP
	case "person":
		return eventsv1.RecordType_RECORD_TYPE_PERSON
	case "poolsettings", "pool_settings":
		return eventsv1.RecordType_RECORD_TYPE_POOL_SETTINGS
	case "preferences", "notificationpreferences":
		return eventsv1.RecordType_RECORD_TYPE_NOTIFICATION_PREFERENCES
	case "template", "notificationtemplate":
		return eventsv1.RecordType_RECORD_TYPE_NOTIFICATION_TEMPLATE
	case "auditlog", "audit_log", "audit":
		return eventsv1.RecordType_RECORD_TYPE_AUDIT_LOG
	case "key", "encryptionkey":
		return eventsv1.RecordType_RECORD_TYPE_ENCRYPTION_KEY
	case "legalhold", "legal_hold":
		return eventsv1.RecordType_RECORD_TYPE_LEGAL_HOLD
	}
	return eventsv1.RecordType_RECORD_TYPE_UNSPECIFIED
}

// normaliseCode lower-cases a code and replaces characters outside the code alphabet with "_".
func normaliseCode(s string) string {
	if s == "" || codePattern.MatchString(s) {
		return s
	}
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '.', r == ':', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= 128 {
			break
		}
	}
	out := strings.TrimLeft(b.String(), "_.:-")
	if out == "" {
		return "unknown"
	}
	return out
}

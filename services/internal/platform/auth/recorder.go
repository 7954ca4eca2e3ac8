package auth

import (
	"context"
	"time"
)

// Outcome of an access decision.
type Outcome string

// Outcomes recorded in a DecisionRecord.
const (
	OutcomeAllowed Outcome = "allowed"
	OutcomeDenied  Outcome = "denied"
)

// DecisionRecord is one access decision for the audit trail. It carries ids and codes only,
// never PHI: in particular a break-glass reason is recorded as present (BreakGlass) and its text
// is stored by the use case, encrypted, if at all.
type DecisionRecord struct {
	Time         time.Time
	ActorSubject string
	ActorRoles   []string
	// OnBehalfOf is the patient a proxy acted for, when the record has one.
	OnBehalfOf string
	// Via is the service that relayed the caller's token, if any.
	Via        string
	Action     string // e.g. "messaging.GetThread"
	RecordType string // "rpc" for rpc-level decisions, else the resource type ("Thread", ...)
	RecordID   string
	PatientID  string
	Outcome    Outcome
	// ReasonCode is a fixed code: the deciding policy ids, or e.g. "unauthenticated:expired",
	// "rate_limited", "ip_denied", "no_permit".
	ReasonCode string
	BreakGlass bool
	// PHIRead marks an allowed read of PHI: recording it must succeed or the read is refused.
	PHIRead   bool
	SourceIP  string
	UserAgent string
	ClientApp string
	RequestID string
}

// DecisionRecorder writes decisions to the audit trail (the services implement it with their
// outbox). Every denial and every allowed PHI read is recorded. When RecordDecision fails for an
// allowed PHI read the read is refused (fail closed); for a denial the error is only logged,
// since the request is refused anyway.
type DecisionRecorder interface {
	RecordDecision(ctx context.Context, rec DecisionRecord) error
}

// RecorderFunc adapts a function to DecisionRecorder.
type RecorderFunc func(ctx context.Context, rec DecisionRecord) error

// RecordDecision calls f.
func (f RecorderFunc) RecordDecision(ctx context.Context, rec DecisionRecord) error {
	return f(ctx, rec)
}

// NewRecord fills the actor and request fields of a DecisionRecord from ctx and p (p may be nil
// for unauthenticated callers).
func NewRecord(ctx context.Context, p *Principal, now time.Time) DecisionRecord {
	ri := RequestInfoFrom(ctx)
	rec := DecisionRecord{Time: now, SourceIP: ri.SourceIP, UserAgent: ri.UserAgent, RequestID: ri.RequestID}
	if p != nil {
		rec.ActorSubject = p.Subject
		rec.ActorRoles = p.RoleNames()
		rec.ClientApp = p.ClientID
		rec.Via = p.Via
	}
	return rec
}

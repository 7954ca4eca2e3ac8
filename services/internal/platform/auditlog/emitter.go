// Package auditlog is how every securemsg service records an audited action: an Emitter turns
// the action into an events.v1.AuditRecord and writes it to the service's transactional outbox
// in the caller's own transaction, on subject securemsg.audit.<service>. The outbox relay
// publishes it to JetStream and the audit service appends it to the hash-chained log.
//
// Fail closed: Record returns an error when the record cannot be written, and since it writes in
// the caller's transaction, that transaction must not commit. A PHI read records its access
// before it returns any data, so a read whose audit record cannot be written is refused.
//
// Records carry ids and codes only. Validation rejects anything that looks like free text in the
// code fields (reason codes are lower-case identifiers from a fixed vocabulary), so PHI cannot
// slip into the audit trail through a "reason".
//
// The package also holds the producer side of reconciliation (Reconciler), which lets the audit
// service find and ask for audit records that JetStream acknowledged but lost.
package auditlog

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/internal/platform/logging"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
)

// DefaultSubjectPrefix is the subject tree audit records are published under; the record of
// service s goes to DefaultSubjectPrefix + "." + s.
const DefaultSubjectPrefix = "securemsg.audit"

// MaxUserAgent is the longest User-Agent kept, in bytes (longer ones are truncated).
const MaxUserAgent = 256

// ErrInvalidRecord is returned by Record for a record that must not enter the audit trail:
// a missing action, outcome or actor, or a code field holding something other than a code.
// The error names the field, never its value (it might be the PHI the check caught).
var ErrInvalidRecord = errors.New("auditlog: invalid audit record")

// codePattern is the shape of reason codes, operations aside: a short lower-case identifier.
// It admits "own_thread", "proxy_grant", "policy:clinician-pool", never a sentence.
var codePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.:\-]{0,127}$`)

// idPattern is the shape of ids (subjects, record, patient, pool, organisation ids): no
// whitespace, no control characters, bounded length.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:@/\-]{0,199}$`)

// operationPattern is a gRPC full method or a job name.
var operationPattern = regexp.MustCompile(`^[A-Za-z0-9/_.\-]{1,200}$`)

// tracePattern is a W3C trace id.
var tracePattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// Emitter writes audit records for one producing service. It is safe for concurrent use.
type Emitter struct {
	producer commonv1.Component
	subject  string
	now      func() time.Time
}

// Option configures an Emitter.
type Option func(*Emitter)

// WithSubjectPrefix replaces DefaultSubjectPrefix (tests use unique prefixes; see
// natsx.Topology.AuditSubject).
func WithSubjectPrefix(prefix string) Option {
	return func(e *Emitter) { e.subject = prefix + "." + serviceToken(e.producer) }
}

// WithClock replaces time.Now for occurred_at (tests).
func WithClock(now func() time.Time) Option { return func(e *Emitter) { e.now = now } }

// NewEmitter returns an emitter for producer, publishing on securemsg.audit.<service>.
func NewEmitter(producer commonv1.Component, opts ...Option) (*Emitter, error) {
	if serviceToken(producer) == "" {
		return nil, fmt.Errorf("auditlog: unknown producer %v", producer)
	}
	e := &Emitter{producer: producer, now: time.Now}
	e.subject = DefaultSubjectPrefix + "." + serviceToken(producer)
	for _, o := range opts {
		o(e)
	}
	return e, nil
}

// Subject is the NATS subject this emitter's records are published on.
func (e *Emitter) Subject() string { return e.subject }

// serviceToken names a component as a subject token.
func serviceToken(c commonv1.Component) string {
	switch c {
	case commonv1.Component_COMPONENT_MESSAGING:
		return "messaging"
	case commonv1.Component_COMPONENT_ATTACHMENT:
		return "attachment"
	case commonv1.Component_COMPONENT_NOTIFICATION:
		return "notification"
	case commonv1.Component_COMPONENT_AUDIT:
		return "audit"
	case commonv1.Component_COMPONENT_CTL:
		return "ctl"
	}
	return ""
}

// Record completes rec's metadata (a fresh event id, which is also the outbox id and the
// Nats-Msg-Id; occurred_at; producer; the request id from ctx), validates it, and adds it to
// the outbox in tx. It returns the event id. rec is modified (its meta is filled in). On error
// the caller must roll tx back: the action could not be recorded.
func (e *Emitter) Record(ctx context.Context, tx pgx.Tx, rec *eventsv1.AuditRecord) (string, error) {
	ev, err := e.Event(ctx, rec)
	if err != nil {
		return "", err
	}
	if err := outbox.Add(ctx, tx, ev); err != nil {
		return "", fmt.Errorf("auditlog: record %s: %w", ev.ID, err)
	}
	return ev.ID, nil
}

// Event completes and validates rec like Record and returns the outbox event without writing it,
// for callers that add several events in one outbox.Add.
func (e *Emitter) Event(ctx context.Context, rec *eventsv1.AuditRecord) (outbox.Event, error) {
	if rec == nil {
		return outbox.Event{}, fmt.Errorf("%w: nil record", ErrInvalidRecord)
	}
	if rec.Meta == nil {
		rec.Meta = &eventsv1.EventMeta{}
	}
	if rec.Meta.EventId == "" {
		rec.Meta.EventId = outbox.NewID()
	}
	if rec.Meta.OccurredAt == nil {
		rec.Meta.OccurredAt = timestamppb.New(e.now())
	}
	rec.Meta.Producer = e.producer
	if rec.Meta.RequestId == "" {
		rec.Meta.RequestId = logging.RequestID(ctx)
	}
	if len(rec.UserAgent) > MaxUserAgent {
		rec.UserAgent = truncateUTF8(rec.UserAgent, MaxUserAgent)
	}
	if rec.Severity == eventsv1.Severity_SEVERITY_UNSPECIFIED {
		rec.Severity = DefaultSeverity(rec)
	}
	if err := Validate(rec); err != nil {
		return outbox.Event{}, err
	}
	// Deterministic marshalling makes the bytes reproducible for the same record in the same
	// binary; the audit service hashes the bytes it received, never a re-encoding, so the
	// choice is about stable output for tests and golden files, not about verification.
	payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(rec)
	if err != nil {
		return outbox.Event{}, fmt.Errorf("auditlog: encode record %s: %w", rec.Meta.EventId, err)
	}
	return outbox.Event{ID: rec.Meta.EventId, Subject: e.subject, Payload: payload}, nil
}

// DefaultSeverity ranks a record whose producer left severity unset: break-the-glass, purges
// and exports are HIGH, denials and changes MEDIUM, everything else LOW.
func DefaultSeverity(rec *eventsv1.AuditRecord) eventsv1.Severity {
	switch rec.GetAction() {
	case eventsv1.Action_ACTION_BREAK_GLASS, eventsv1.Action_ACTION_PURGE, eventsv1.Action_ACTION_EXPORT:
		return eventsv1.Severity_SEVERITY_HIGH
	case eventsv1.Action_ACTION_DENY, eventsv1.Action_ACTION_DELETE, eventsv1.Action_ACTION_UPDATE:
		return eventsv1.Severity_SEVERITY_MEDIUM
	}
	if rec.GetOutcome() == eventsv1.Outcome_OUTCOME_DENIED {
		return eventsv1.Severity_SEVERITY_MEDIUM
	}
	return eventsv1.Severity_SEVERITY_LOW
}

// Validate checks that rec may enter the audit trail. It reports every problem at once, by
// field name only.
func Validate(rec *eventsv1.AuditRecord) error {
	var problems []string
	bad := func(field, why string) { problems = append(problems, field+" "+why) }
	m := rec.GetMeta()
	if m.GetEventId() == "" || len(m.GetEventId()) > 128 || !idPattern.MatchString(m.GetEventId()) {
		bad("meta.event_id", "is missing or malformed")
	}
	if m.GetOccurredAt() == nil || !m.GetOccurredAt().IsValid() || m.GetOccurredAt().AsTime().IsZero() {
		bad("meta.occurred_at", "is missing")
	}
	if serviceToken(m.GetProducer()) == "" {
		bad("meta.producer", "is not a known component")
	}
	checkOpt := func(field, v string, re *regexp.Regexp) {
		if v != "" && !re.MatchString(v) {
			bad(field, "is not an id or code (free text is not allowed)")
		}
	}
	checkOpt("meta.request_id", m.GetRequestId(), idPattern)
	if t := m.GetTraceId(); t != "" && !tracePattern.MatchString(t) {
		bad("meta.trace_id", "is not 32 lower-case hex digits")
	}
	a := rec.GetActor()
	if a.GetSubject() == "" {
		bad("actor.subject", "is missing")
	}
	checkOpt("actor.subject", a.GetSubject(), idPattern)
	checkOpt("actor.on_behalf_of", a.GetOnBehalfOf(), idPattern)
	checkOpt("actor.organisation_id", a.GetOrganisationId(), idPattern)
	if rec.GetAction() == eventsv1.Action_ACTION_UNSPECIFIED {
		bad("action", "is unspecified")
	}
	if rec.GetOutcome() == eventsv1.Outcome_OUTCOME_UNSPECIFIED {
		bad("outcome", "is unspecified")
	}
	if rec.GetRecordType() == eventsv1.RecordType_RECORD_TYPE_UNSPECIFIED {
		bad("record_type", "is unspecified")
	}
	checkOpt("record_id", rec.GetRecordId(), idPattern)
	checkOpt("patient_id", rec.GetPatientId(), idPattern)
	checkOpt("pool_id", rec.GetPoolId(), idPattern)
	checkOpt("client_app", rec.GetClientApp(), idPattern)
	checkOpt("reason_code", rec.GetReasonCode(), codePattern)
	checkOpt("operation", rec.GetOperation(), operationPattern)
	if ip := rec.GetSourceIp(); ip != "" && (len(ip) > 64 || strings.ContainsAny(ip, " \t\r\n")) {
		bad("source_ip", "is not an address")
	}
	if ua := rec.GetUserAgent(); !utf8.ValidString(ua) || strings.ContainsAny(ua, "\r\n") {
		bad("user_agent", "has control characters or invalid UTF-8")
	}
	if rec.GetAction() == eventsv1.Action_ACTION_BREAK_GLASS && rec.GetSeverity() != eventsv1.Severity_SEVERITY_HIGH {
		bad("severity", "must be HIGH for break-the-glass")
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidRecord, strings.Join(problems, "; "))
	}
	return nil
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

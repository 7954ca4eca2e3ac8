// Package app holds the attachment service's use cases: streaming upload (sniff, scan, encrypt,
// store), ranged download, metadata, deletion, binding to messages, retention purge, and the
// background jobs (re-scanning pending files, cleaning up abandoned drafts and uploads).
//
// Every use case that changes state or reads PHI writes its audit record (and events) into
// the service's outbox in the same Postgres transaction as its change, so an action that cannot
// be recorded does not happen (fail closed).
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/attachment/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/crypto"
	"github.com/securemsg/securemsg/services/internal/platform/keys"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// KeyName is the Transit key the service's DEKs are wrapped under.
const KeyName = "securemsg-attachment"

// KeyRing makes and opens per-object data keys (keys.Keyring implements it).
type KeyRing interface {
	NewDEK(ctx context.Context, keyName string) (keys.DEK, error)
	OpenDEK(ctx context.Context, keyName, wrapped string) ([]byte, error)
}

// AccessAction is what a person wants to do with a message's or thread's attachments.
type AccessAction int

// The actions messaging is asked about.
const (
	AccessRead AccessAction = iota + 1
	AccessDownload
	AccessAttach
)

// AccessTarget names a message (preferred) or a thread.
type AccessTarget struct {
	MessageID string
	ThreadID  string
	Action    AccessAction
}

// Access is messaging's answer, with the ids the audit record needs.
type Access struct {
	Allowed     bool
	ReasonCode  string
	ThreadID    string
	PoolID      string
	PatientID   string
	Sensitivity commonv1.Sensitivity
	BreakGlass  bool
}

// AccessChecker asks the messaging service for access decisions.
type AccessChecker interface {
	CheckAccess(ctx context.Context, p *auth.Principal, t AccessTarget) (Access, error)
}

// Service runs the use cases.
type Service struct {
	Pool    *pgxpool.Pool
	Audit   *auditlog.Emitter
	Keys    KeyRing
	KeyName string
	Store   domain.ObjectStore
	Scanner domain.Scanner
	Access  AccessChecker
	Media   domain.MediaPolicy
	Limits  domain.Limits
	// EventsSubject is the topology's events prefix; events go to EventsSubject+".attachment.*".
	EventsSubject string
	Logger        *slog.Logger
	Now           func() time.Time
	// DraftTTL is how long an upload may stay unbound before the clean-up deletes it;
	// UploadTTL how long a row may stay Uploading (a crashed upload) before it is removed.
	DraftTTL  time.Duration
	UploadTTL time.Duration
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Service) keyName() string {
	if s.KeyName != "" {
		return s.KeyName
	}
	return KeyName
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$`)

func checkID(field, v string, required bool) error {
	if v == "" {
		if required {
			return usererr.New(usererr.InvalidArgument, "FIELD_REQUIRED", field+" is required")
		}
		return nil
	}
	if !idPattern.MatchString(v) {
		return usererr.New(usererr.InvalidArgument, "MALFORMED_ID", field+" is malformed")
	}
	return nil
}

// fileNameAAD binds a sealed file name to its attachment.
func fileNameAAD(attachmentID string) []byte {
	return crypto.BindAAD("securemsg.attachment.file_name", attachmentID)
}

// streamAAD binds an object's ciphertext to its attachment and upload thread, so a segment or
// a whole object moved to another attachment fails authentication.
func streamAAD(a *domain.Attachment) []byte {
	return crypto.AttachmentAAD(a.AADThreadID, a.ID)
}

// keyErr maps a key-service failure.
func keyErr(err error) error {
	switch {
	case errors.Is(err, keys.ErrKeyServiceUnavailable) || keys.IsUnavailable(err):
		return usererr.Wrap(usererr.Unavailable, "KEY_SERVICE_UNAVAILABLE", "key service unavailable", err)
	case errors.Is(err, keys.ErrKeyVersionRetired):
		return usererr.Wrap(usererr.FailedPrecondition, "KEY_VERSION_RETIRED", "the attachment's key version is retired", err)
	case errors.Is(err, keys.ErrInvalidWrappedKey):
		return usererr.Wrap(usererr.DataLoss, "INVALID_WRAPPED_KEY", "the attachment's key is not valid", err)
	}
	return fmt.Errorf("key service: %w", err)
}

// actorOf is how p appears in audit records.
func actorOf(p *auth.Principal, patientID string) *eventsv1.AuditActor {
	a := &eventsv1.AuditActor{Subject: p.Subject}
	switch {
	case p.Kind == auth.KindService:
		a.Role = commonv1.Role_ROLE_SERVICE
	case p.HasRole(auth.RoleProxy) && patientID != "" && p.PatientID != patientID:
		a.Role, a.OnBehalfOf = commonv1.Role_ROLE_PROXY, patientID
	default:
		a.Role = auditlog.RoleOf(p.RoleNames())
	}
	return a
}

// record starts an audit record of p doing action to attachment a, with the request's origin.
func (s *Service) record(ctx context.Context, p *auth.Principal, action eventsv1.Action, a *domain.Attachment, acc Access) *eventsv1.AuditRecord {
	ri := auth.RequestInfoFrom(ctx)
	op, _ := grpc.Method(ctx)
	patient := a.PatientID
	if acc.PatientID != "" {
		patient = acc.PatientID
	}
	pool := a.PoolID
	if acc.PoolID != "" {
		pool = acc.PoolID
	}
	rec := &eventsv1.AuditRecord{
		Meta:        &eventsv1.EventMeta{RequestId: ri.RequestID, OccurredAt: timestamppb.New(s.now())},
		Actor:       actorOf(p, patient),
		Action:      action,
		RecordType:  eventsv1.RecordType_RECORD_TYPE_ATTACHMENT,
		RecordId:    a.ID,
		PatientId:   patient,
		PoolId:      pool,
		Sensitivity: acc.Sensitivity,
		Outcome:     eventsv1.Outcome_OUTCOME_SUCCESS,
		SourceIp:    ri.SourceIP,
		UserAgent:   ri.UserAgent,
		ClientApp:   p.ClientID,
		Operation:   op,
	}
	if acc.BreakGlass {
		rec.Severity = eventsv1.Severity_SEVERITY_HIGH
		rec.ReasonCode = "break_glass"
	}
	return rec
}

// audit records rec by itself: one INSERT in its own implicit transaction, committed when it
// returns, as a transaction around it would be, without BEGIN's and COMMIT's round trips. An
// error means the action cannot be recorded.
func (s *Service) audit(ctx context.Context, rec *eventsv1.AuditRecord) error {
	ev, err := s.Audit.Event(ctx, rec)
	var rows outbox.Rows
	if err == nil {
		rows, err = outbox.NewRows(ev)
	}
	if err == nil {
		err = rows.Insert(ctx, s.Pool)
	}
	if err != nil {
		return domain.NotRecorded(err)
	}
	return nil
}

// writeAudit adds rec to the outbox in tx; an error means the action cannot be recorded.
func (s *Service) writeAudit(ctx context.Context, tx pgx.Tx, rec *eventsv1.AuditRecord) error {
	if _, err := s.Audit.Record(ctx, tx, rec); err != nil {
		return domain.NotRecorded(err)
	}
	return nil
}

// deny records a refused access in a transaction of its own. A denial that cannot be recorded
// is logged; the request is refused anyway.
func (s *Service) deny(ctx context.Context, p *auth.Principal, a *domain.Attachment, acc Access, reason string) {
	rec := s.record(ctx, p, eventsv1.Action_ACTION_DENY, a, acc)
	rec.Outcome = eventsv1.Outcome_OUTCOME_DENIED
	rec.ReasonCode = reason
	if err := s.audit(ctx, rec); err != nil {
		s.Logger.WarnContext(ctx, "denial not recorded", slog.String("attachment_id", a.ID), slog.String("error", err.Error()))
	}
}

// scannedEvent is the AttachmentScanned event for a's verdict.
func (s *Service) scannedEvent(ctx context.Context, a *domain.Attachment, verdict eventsv1.ScanVerdict) (outbox.Event, error) {
	id := outbox.NewID()
	ev := &eventsv1.AttachmentScanned{
		Meta: &eventsv1.EventMeta{
			EventId: id, OccurredAt: timestamppb.New(s.now()),
			Producer: commonv1.Component_COMPONENT_ATTACHMENT, RequestId: auth.RequestInfoFrom(ctx).RequestID,
		},
		AttachmentId: a.ID, ThreadId: a.ThreadID, MessageId: a.MessageID, UploaderSubject: a.UploaderSubject,
		Verdict: verdict, SignatureName: a.SignatureName, SizeBytes: a.SizeBytes, MediaType: a.MediaType,
	}
	b, err := proto.Marshal(ev)
	if err != nil {
		return outbox.Event{}, err
	}
	return outbox.Event{ID: id, Subject: s.EventsSubject + ".attachment.scanned", Payload: b}, nil
}

// authorize decides whether p may read (metadata) or download attachment a:
//   - the messaging service may read metadata of any attachment (it binds and lists them);
//   - the uploader may always read their own unbound upload;
//   - a bound attachment follows its message: messaging's CheckMessageAccess decides;
//   - anyone else's unbound upload is hidden (NotFound).
//
// Denials are audited.
func (s *Service) authorize(ctx context.Context, p *auth.Principal, a *domain.Attachment, action AccessAction) (Access, error) {
	if p.Kind == auth.KindService {
		if p.Service == "messaging" && action == AccessRead {
			return Access{Allowed: true, ReasonCode: "service"}, nil
		}
		return Access{}, usererr.New(usererr.PermissionDenied, "SERVICE_NOT_ALLOWED", "service may not access attachment content")
	}
	if !a.Bound() {
		if p.Subject == a.UploaderSubject {
			return Access{Allowed: true, ReasonCode: "own_upload", ThreadID: a.ThreadID, PatientID: a.PatientID, PoolID: a.PoolID}, nil
		}
		s.deny(ctx, p, a, Access{}, "not_uploader")
		return Access{}, domain.ErrAttachmentNotFound
	}
	acc, err := s.Access.CheckAccess(ctx, p, AccessTarget{MessageID: a.MessageID, ThreadID: a.ThreadID, Action: action})
	if err != nil {
		if errors.Is(err, usererr.ErrNotFound) {
			return Access{}, domain.ErrAttachmentNotFound
		}
		return Access{}, err
	}
	if !acc.Allowed {
		s.deny(ctx, p, a, acc, reasonCode(acc.ReasonCode, "messaging_denied"))
		if acc.ReasonCode == "adolescent_confidential" {
			return Access{}, domain.ErrAttachmentNotFound
		}
		return Access{}, usererr.New(usererr.PermissionDenied, "MESSAGE_ACCESS_DENIED", "access to the attachment's message is denied")
	}
	return acc, nil
}

var codePattern = regexp.MustCompile(`^[a-z0-9_.:-]{1,120}$`)

// reasonCode keeps a reason code that is a code (never free text) or falls back to def.
func reasonCode(c, def string) string {
	if codePattern.MatchString(c) {
		return c
	}
	return def
}

// cleanupCtx is a context for undoing work after the request's context ended.
func cleanupCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}

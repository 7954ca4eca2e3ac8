// Package app holds the attachment service's use cases: streaming upload (sniff, scan, encrypt,
// store), the resumable upload session that browsers use instead (session.go), ranged download, metadata, deletion, binding to messages, retention purge, and the
// background jobs (re-scanning pending files, cleaning up abandoned drafts and uploads). It
// depends on the domain's interfaces only (the repository and the gateways), never on Postgres,
// S3, Vault or gRPC.
//
// Every use case that changes state or reads PHI hands its audit record (and events) to the
// repository to commit with its change, or writes it on its own before any byte is returned, so
// an action that cannot be recorded does not happen (fail closed).
package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/attachment/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/crypto"
	"github.com/securemsg/securemsg/services/internal/platform/keys"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// Config holds the use cases' settings.
type Config struct {
	// KeyName is the Transit key the service's DEKs are wrapped under (securemsg-attachment).
	KeyName string
	// Limits are the upload limits.
	Limits domain.Limits
	// AllowedMediaTypes are the file types accepted; empty means domain.DefaultAllowedMediaTypes.
	AllowedMediaTypes []string
	// EventsSubject is the topology's events prefix; events go to EventsSubject+".attachment.*".
	EventsSubject string
	// DraftTTL is how long an upload may stay unbound before the clean-up deletes it;
	// UploadTTL how long a row may stay Uploading (a crashed upload) before it is removed.
	DraftTTL  time.Duration
	UploadTTL time.Duration
	// SessionTTL is how long an upload session may stay without a chunk or a finish before the
	// clean-up removes it with its staged bytes (abandoned). FinishLease is how long one Finish
	// holds a session; a Finish after it takes over (the first one's process died).
	SessionTTL  time.Duration
	FinishLease time.Duration
}

// Deps are the service's collaborators: the repository (implemented by adapters/pgstore over
// Postgres and adapters/memstore in memory) and the gateways.
type Deps struct {
	Attachments domain.AttachmentRepository
	Sessions    domain.UploadSessionRepository
	AuditTrail  domain.AuditWriter
	Objects     domain.ObjectStore
	Scanner     domain.Scanner
	Access      domain.AccessChecker
	Keys        domain.DEKs
	// Emitter builds audit records as outbox rows (it does no I/O).
	Emitter *auditlog.Emitter
	Logger  *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Service runs the use cases.
type Service struct {
	cfg         Config
	media       domain.MediaPolicy
	attachments domain.AttachmentRepository
	sessions    domain.UploadSessionRepository
	auditTrail  domain.AuditWriter
	objects     domain.ObjectStore
	scanner     domain.Scanner
	access      domain.AccessChecker
	keys        domain.DEKs
	emitter     *auditlog.Emitter
	logger      *slog.Logger
	now         func() time.Time
}

// New returns the use cases over deps, or an error naming what cfg and deps lack.
func New(cfg Config, deps Deps) (*Service, error) {
	var problems []string
	if cfg.KeyName == "" {
		problems = append(problems, "key name")
	}
	if cfg.EventsSubject == "" {
		problems = append(problems, "events subject")
	}
	if cfg.Limits.MaxFileBytes <= 0 || cfg.Limits.MaxPerMessage <= 0 {
		problems = append(problems, "limits")
	}
	if cfg.DraftTTL <= 0 || cfg.UploadTTL <= 0 || cfg.SessionTTL <= 0 || cfg.FinishLease <= 0 {
		problems = append(problems, "draft, upload and session TTLs and the finish lease")
	}
	if deps.Attachments == nil || deps.Sessions == nil || deps.AuditTrail == nil || deps.Objects == nil || deps.Scanner == nil ||
		deps.Access == nil || deps.Keys == nil || deps.Emitter == nil {
		problems = append(problems, "dependencies")
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("attachment app: missing %s", strings.Join(problems, ", "))
	}
	if len(cfg.AllowedMediaTypes) == 0 {
		cfg.AllowedMediaTypes = domain.DefaultAllowedMediaTypes
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	return &Service{
		cfg: cfg, media: domain.NewMediaPolicy(cfg.AllowedMediaTypes),
		attachments: deps.Attachments, sessions: deps.Sessions, auditTrail: deps.AuditTrail, objects: deps.Objects,
		scanner: deps.Scanner, access: deps.Access, keys: deps.Keys, emitter: deps.Emitter,
		logger: deps.Logger, now: deps.Now,
	}, nil
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

// auditRow builds the audit record of p doing action to attachment a, as the outbox row that
// commits with the action. The platform builder fills in the request's origin, the purpose of
// use and the outcome; acc adds messaging's patient, pool, sensitivity and break-the-glass, and
// opts change the rest. An error means the action cannot be recorded.
func (s *Service) auditRow(ctx context.Context, p *auth.Principal, action eventsv1.Action, a *domain.Attachment, acc domain.Access, opts ...auditlog.RecordOption) (outbox.Event, error) {
	target := auditlog.Target{
		Type: eventsv1.RecordType_RECORD_TYPE_ATTACHMENT, ID: a.ID,
		PatientID: cmp.Or(acc.PatientID, a.PatientID), PoolID: cmp.Or(acc.PoolID, a.PoolID), Sensitivity: acc.Sensitivity,
	}
	head := []auditlog.RecordOption{auditlog.As(auditlog.ActorOf(p, target.PatientID))}
	if acc.BreakGlass {
		head = append(head, auditlog.BreakGlass())
	}
	rec := s.emitter.NewRecord(ctx, action, target, append(head, opts...)...)
	ev, err := s.emitter.Event(ctx, rec)
	if err != nil {
		return outbox.Event{}, domain.NotRecorded(err)
	}
	return ev, nil
}

// audit writes the audit record auditRow builds by itself, committed when it returns
// (AuditWriter: one statement). An error means the action cannot be recorded.
func (s *Service) audit(ctx context.Context, p *auth.Principal, action eventsv1.Action, a *domain.Attachment, acc domain.Access, opts ...auditlog.RecordOption) error {
	row, err := s.auditRow(ctx, p, action, a, acc, opts...)
	if err != nil {
		return err
	}
	return s.auditTrail.WriteAudit(ctx, []outbox.Event{row})
}

// deny records a refused access by itself. A denial that cannot be recorded is logged; the
// request is refused anyway.
func (s *Service) deny(ctx context.Context, p *auth.Principal, a *domain.Attachment, acc domain.Access, reason string) {
	if err := s.audit(ctx, p, eventsv1.Action_ACTION_DENY, a, acc, auditlog.Denied(reason)); err != nil {
		s.logger.WarnContext(ctx, "denial not recorded", slog.String("attachment_id", a.ID), slog.String("error", err.Error()))
	}
}

// scannedEvent is the AttachmentScanned event for a's verdict.
func (s *Service) scannedEvent(ctx context.Context, a *domain.Attachment, verdict eventsv1.ScanVerdict) (outbox.Event, error) {
	ev, err := s.emitter.NewEvent(ctx, s.cfg.EventsSubject+".attachment.scanned", &eventsv1.AttachmentScanned{
		AttachmentId: a.ID, ThreadId: a.ThreadID, MessageId: a.MessageID, UploaderSubject: a.UploaderSubject,
		Verdict: verdict, SignatureName: a.SignatureName, SizeBytes: a.SizeBytes, MediaType: a.MediaType,
	})
	if err != nil {
		return outbox.Event{}, domain.NotRecorded(err)
	}
	return ev, nil
}

// authorize decides whether p may read (metadata) or download attachment a:
//   - the messaging service may read metadata of any attachment (it binds and lists them);
//   - the uploader may always read their own unbound upload;
//   - a bound attachment follows its message: messaging's CheckMessageAccess decides;
//   - anyone else's unbound upload is hidden (NotFound).
//
// Denials are audited.
func (s *Service) authorize(ctx context.Context, p *auth.Principal, a *domain.Attachment, action domain.AccessAction) (domain.Access, error) {
	if p.Kind == auth.KindService {
		if p.Service == "messaging" && action == domain.AccessRead {
			return domain.Access{Allowed: true, ReasonCode: "service"}, nil
		}
		return domain.Access{}, usererr.New(usererr.PermissionDenied, "SERVICE_NOT_ALLOWED", "service may not access attachment content")
	}
	if !a.Bound() {
		if p.Subject == a.UploaderSubject {
			return domain.Access{Allowed: true, ReasonCode: "own_upload", ThreadID: a.ThreadID, PatientID: a.PatientID, PoolID: a.PoolID}, nil
		}
		s.deny(ctx, p, a, domain.Access{}, "not_uploader")
		return domain.Access{}, domain.ErrAttachmentNotFound
	}
	acc, err := s.access.CheckAccess(ctx, p, domain.AccessTarget{MessageID: a.MessageID, ThreadID: a.ThreadID, Action: action})
	if err != nil {
		if errors.Is(err, usererr.ErrNotFound) {
			return domain.Access{}, domain.ErrAttachmentNotFound
		}
		return domain.Access{}, err
	}
	if !acc.Allowed {
		s.deny(ctx, p, a, acc, reasonCode(acc.ReasonCode, "messaging_denied"))
		if acc.ReasonCode == "adolescent_confidential" {
			return domain.Access{}, domain.ErrAttachmentNotFound
		}
		return domain.Access{}, usererr.New(usererr.PermissionDenied, "MESSAGE_ACCESS_DENIED", "access to the attachment's message is denied")
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

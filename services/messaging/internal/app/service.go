// Package app holds the messaging service's use cases: creating threads and sending messages
// (sealed under a per-thread DEK), reading them (record-level policy, audited in the same
// commit as the read, fail closed), triage, retract-and-correct, pool settings, legal holds,
// care pools and their members (pools.go), client-app registrations (apps.go), proxy grants patients give and revoke (grants.go), retention, and live inbox watches (watch.go: id-only change notices, each checked against the
// policy before it is sent). It depends on the domain's repository and gateway interfaces only,
// never on a database or transport. Ports call it with the verified principal and domain
// values; it returns usererr refusals, which the edge sends as they are, or internal errors,
// which it masks.
package app

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/crypto"
	"github.com/securemsg/securemsg/services/internal/platform/keys"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/policy"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// Config tunes the use cases.
type Config struct {
	// KeyName is the Transit key wrapping the thread DEKs (securemsg-messaging).
	KeyName string
	// Retention is the retention period per thread category.
	Retention domain.Retention
	// PurgeInterval is how often the service purges by itself (0: never); GetRetentionPolicy
	// reports it.
	PurgeInterval time.Duration
	// RetractWindow is how long after sending a sender may retract a message.
	RetractWindow time.Duration
	// EventsSubject is the events subject prefix (topology), e.g. "securemsg.events".
	EventsSubject string
	// Watch tunes live inbox watches.
	Watch WatchSettings
}

// Deps are the service's collaborators: the repositories (each implemented by
// adapters/pgstore over Postgres and adapters/memstore in memory) and the gateways.
type Deps struct {
	Threads  domain.ThreadRepository
	Messages domain.MessageRepository
	Inbox    domain.InboxRepository
	Settings domain.PoolSettingsRepository
	Pools    domain.PoolRepository
	Apps     domain.AppRepository
	Grants   domain.GrantRepository
	People   domain.PersonRepository
	// Known is who the directory every service watches holds now (nil: ask People).
	Known domain.KnownPeople
	// Members is who works in which pool now, from the directory every service watches.
	Members    domain.Members
	Retention  domain.RetentionRepository
	AuditTrail domain.AuditWriter
	Keys       domain.DEKs
	Policy     domain.Evaluator
	// Emitter builds audit records and domain events as outbox rows (it does no I/O).
	Emitter     *auditlog.Emitter
	Attachments domain.Attachments
	Logger      *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Service runs the messaging use cases. It is safe for concurrent use.
type Service struct {
	cfg Config
	Deps
	watches *watchHub
	names   *nameCache
}

// New returns a Service.
func New(cfg Config, deps Deps) (*Service, error) {
	var problems []string
	if cfg.KeyName == "" {
		problems = append(problems, "key name")
	}
	if cfg.Retention == nil {
		problems = append(problems, "retention")
	}
	if cfg.EventsSubject == "" {
		problems = append(problems, "events subject")
	}
	if deps.Threads == nil || deps.Messages == nil || deps.Inbox == nil || deps.Settings == nil || deps.Pools == nil || deps.Apps == nil || deps.Grants == nil || deps.People == nil || deps.Members == nil || deps.Retention == nil ||
		deps.AuditTrail == nil || deps.Keys == nil || deps.Policy == nil || deps.Emitter == nil || deps.Attachments == nil {
		problems = append(problems, "dependencies")
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("messaging app: missing %s", strings.Join(problems, ", "))
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if cfg.RetractWindow <= 0 {
		cfg.RetractWindow = 15 * time.Minute
	}
	cfg.Watch = cfg.Watch.withDefaults()
	return &Service{cfg: cfg, Deps: deps, watches: newWatchHub(cfg.Watch), names: newNameCache()}, nil
}

// Policy actions the use cases check at record level.
const (
	actCreateThread  = "messaging.CreateThread"
	actSendMessage   = "messaging.SendMessage"
	actListThreads   = "messaging.ListThreads"
	actGetThread     = "messaging.GetThread"
	actReadContent   = "messaging.ReadContent"
	actGetMessage    = "messaging.GetMessage"
	actViewReceipt   = "messaging.ViewReadReceipt"
	actMarkRead      = "messaging.MarkRead"
	actArchive       = "messaging.ArchiveThread"
	actUnarchive     = "messaging.UnarchiveThread"
	actClaim         = "messaging.ClaimThread"
	actAssign        = "messaging.AssignThread"
	actTransfer      = "messaging.TransferThread"
	actClose         = "messaging.CloseThread"
	actReopen        = "messaging.ReopenThread"
	actRetract       = "messaging.RetractMessage"
	actSetLegalHold  = "messaging.SetLegalHold"
	actGetSettings   = "messaging.GetPoolSettings"
	actUpdateSetting = "messaging.UpdatePoolSettings"
	actPurge         = "messaging.RunRetentionPurge"
	actGetRetention  = "messaging.GetRetentionPolicy"
	actListHolds     = "messaging.ListLegalHolds"
	actListPools     = "messaging.ListPools"
	actListMembers   = "messaging.ListPoolMembers"
	actCreatePool    = "messaging.CreatePool"
	actListPeople    = "messaging.ListPeople"
	actGetPerson     = "messaging.GetPerson"
	actProvision     = "messaging.ProvisionPerson"
	actSetStatus     = "messaging.SetPersonStatus"
	actUpdatePool    = "messaging.UpdatePool"
	actSetMember     = "messaging.SetPoolMember"
	actRemoveMember  = "messaging.RemovePoolMember"
	actListApps      = "messaging.ListClientApps"
	actRegisterApp   = "messaging.RegisterClientApp"
	actUpdateApp     = "messaging.UpdateClientApp"
	actListGrants    = "messaging.ListProxyGrants"
	actGrantProxy    = "messaging.GrantProxyAccess"
	actRevokeProxy   = "messaging.RevokeProxyAccess"
)

// idNamespace derives deterministic ids from (subject, client request id), so that a retried
// request binds its attachments to, and collides on, the very ids of the first attempt.
var idNamespace = uuid.MustParse("6f1c7f3e-2b0e-4d8a-9a55-3c1d5e0b7a10")

func derivedID(kind, subject, requestID string) string {
	return uuid.NewSHA1(idNamespace, []byte(kind+"\x00"+subject+"\x00"+requestID)).String()
}

// threadResource is the policy view of a thread.
func threadResource(t *domain.Thread) policy.Resource {
	return policy.Resource{Type: "Thread", ID: t.ID, PatientID: t.PatientID, PoolID: t.PoolID,
		Sensitivity: domain.SensitivityLabel(t.Sensitivity), AssignedTo: t.AssigneeSubject, Owner: t.CreatedBySubject}
}

// hiddenFrom reports whether the thread's existence is hidden from p (adolescent-confidential
// threads for proxies who reach them only through a grant): such denials answer NOT_FOUND.
func hiddenFrom(p *auth.Principal, t *domain.Thread) bool {
	ownRecord := p.PatientID != "" && p.PatientID == t.PatientID
	return t.Sensitivity == commonv1.Sensitivity_SENSITIVITY_ADOLESCENT_CONFIDENTIAL && p.HasRole(auth.RoleProxy) && !ownRecord
}

// actorFor works out the role p acts in on a thread about patientID in poolID: the care-pool
// membership and proxy grants decide it here, which auditlog.ActorOf cannot know.
func actorFor(p *auth.Principal, patientID, poolID string) auditlog.Actor {
	a := auditlog.Actor{Subject: p.Subject}
	switch {
	case p.Kind == auth.KindService:
		a.Role = commonv1.Role_ROLE_SERVICE
	case p.HasRole(auth.RolePatient) && p.PatientID != "" && p.PatientID == patientID:
		a.Role = commonv1.Role_ROLE_PATIENT
	case (p.HasRole(auth.RoleClinician) || p.HasRole(auth.RoleStaff)) && contains(p.CarePools, poolID):
		a.Role = commonv1.Role_ROLE_CLINICIAN
		if !p.HasRole(auth.RoleClinician) {
			a.Role = commonv1.Role_ROLE_STAFF
		}
	case p.HasRole(auth.RoleProxy) && hasGrant(p, patientID):
		a.Role, a.OnBehalfOf = commonv1.Role_ROLE_PROXY, patientID
	default:
		a.Role = auditlog.RoleOf(p.RoleNames())
	}
	return a
}

func hasGrant(p *auth.Principal, patientID string) bool {
	for _, g := range p.ProxyGrants {
		if g.PatientID == patientID {
			return true
		}
	}
	return false
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// errPolicyDenied is a record-level policy refusal; the denial has been audited.
var errPolicyDenied = usererr.New(usererr.PermissionDenied, "POLICY_DENIED", "permission denied")

// authorize evaluates a record-level action. A denial is audited (on its own, since nothing
// else is written) and returned as NotFound when the thread is hidden from the caller,
// PermissionDenied otherwise.
func (s *Service) authorize(ctx context.Context, p *auth.Principal, action string, res policy.Resource, rc policy.Context, t *domain.Thread) (policy.Decision, error) {
	d := s.Policy.Evaluate(p, action, res, rc)
	if d.Allowed {
		return d, nil
	}
	s.deny(ctx, p, action, res, d)
	if t != nil && hiddenFrom(p, t) {
		return d, domain.ErrThreadNotFound
	}
	return d, errPolicyDenied
}

// deny records a refused access. A denial that cannot be recorded is logged; the request is
// refused anyway.
func (s *Service) deny(ctx context.Context, p *auth.Principal, action string, res policy.Resource, d policy.Decision) {
	target := auditlog.Target{Type: auditlog.RecordTypeOf(res.Type), ID: res.ID, PatientID: res.PatientID, PoolID: res.PoolID, Sensitivity: sensitivityOf(res)}
	b := s.newBatch(ctx)
	// The client app is the refused principal's, which for CheckMessageAccess is not the
	// caller in ctx.
	b.audit(actorFor(p, res.PatientID, res.PoolID), eventsv1.Action_ACTION_DENY, target,
		auditlog.Denied(reasonCode(d)), func(r *eventsv1.AuditRecord) { r.ClientApp = p.ClientID })
	err := b.err
	if err == nil {
		err = s.AuditTrail.WriteAudit(ctx, b.events)
	}
	if err != nil {
		s.Logger.WarnContext(ctx, "denial not recorded", slog.String("action", action), slog.String("error", err.Error()))
	}
}

func sensitivityOf(res policy.Resource) commonv1.Sensitivity {
	return commonv1.Sensitivity(commonv1.Sensitivity_value["SENSITIVITY_"+res.Sensitivity])
}

// reasonCode renders a decision's deciding policies as an audit reason code.
func reasonCode(d policy.Decision) string {
	c := strings.ToLower(d.ReasonCode())
	if len(c) > 120 {
		c = c[:120]
	}
	return c
}

// threadTarget is a thread as the record of an audited action.
func threadTarget(t *domain.Thread) auditlog.Target {
	return auditlog.Target{Type: eventsv1.RecordType_RECORD_TYPE_THREAD, ID: t.ID, PatientID: t.PatientID, PoolID: t.PoolID, Sensitivity: t.Sensitivity}
}

// messageTarget is a message of thread t as the record of an audited action.
func messageTarget(t *domain.Thread, messageID string) auditlog.Target {
	return auditlog.Target{Type: eventsv1.RecordType_RECORD_TYPE_MESSAGE, ID: messageID, PatientID: t.PatientID, PoolID: t.PoolID, Sensitivity: t.Sensitivity}
}

// batch collects the outbox rows (domain events and audit records) of one change, which the
// repository commits with it. The first encoding error is kept and stops further rows.
type batch struct {
	s      *Service
	ctx    context.Context
	events []outbox.Event
	err    error
}

func (s *Service) newBatch(ctx context.Context) *batch { return &batch{s: s, ctx: ctx} }

// audit adds the audit record of action on target by a (the platform builder fills in the
// request's origin, purpose of use and outcome; opts change them).
func (b *batch) audit(a auditlog.Actor, action eventsv1.Action, target auditlog.Target, opts ...auditlog.RecordOption) {
	if b.err != nil {
		return
	}
	rec := b.s.Emitter.NewRecord(b.ctx, action, target, append([]auditlog.RecordOption{auditlog.As(a)}, opts...)...)
	ev, err := b.s.Emitter.Event(b.ctx, rec)
	if err != nil {
		b.err = err
		return
	}
	b.events = append(b.events, ev)
}

// event adds a domain event on EventsSubject + "." + suffix, its meta filled in by the
// platform builder.
func (b *batch) event(suffix string, msg proto.Message) {
	if b.err != nil {
		return
	}
	ev, err := b.s.Emitter.NewEvent(b.ctx, b.s.cfg.EventsSubject+"."+suffix, msg)
	if err != nil {
		b.err = err
		return
	}
	b.events = append(b.events, ev)
}

// rows returns the collected rows, or the first error met while building them.
func (b *batch) rows() ([]outbox.Event, error) { return b.events, b.err }

// sealer returns a record sealer under the thread's DEK (from the keyring's cache, or one
// Vault call).
func (s *Service) sealer(ctx context.Context, t *domain.Thread) (*crypto.RecordSealer, error) {
	if t.WrappedDEK == "" {
		return nil, domain.ErrThreadNotFound
	}
	dek, err := s.Keys.OpenDEK(ctx, s.cfg.KeyName, t.WrappedDEK)
	if err != nil {
		return nil, keyError(err)
	}
	defer clear(dek)
	return crypto.NewRecordSealer(dek, t.ID)
}

// keyError turns key-service failures into refusals (fail closed).
func keyError(err error) error {
	switch {
	case keys.IsUnavailable(err):
		return usererr.Wrap(usererr.Unavailable, "KEY_SERVICE_UNAVAILABLE", "key service unavailable; try again later", err)
	case errors.Is(err, keys.ErrKeyVersionRetired):
		return usererr.Wrap(usererr.FailedPrecondition, "KEY_VERSION_RETIRED", "the thread's key version is retired", err)
	}
	return fmt.Errorf("thread key: %w", err)
}

// storeError annotates a repository failure with what was being done: a refusal passes as it
// is, anything else stays internal (the edge masks it and logs the cause).
func storeError(what string, err error) error {
	if err == nil {
		return nil
	}
	if k, _ := usererr.KindOf(err); k != 0 {
		return err
	}
	return fmt.Errorf("%s: %w", what, err)
}

// errNotAuthentic is a sealed field that failed authentication: data loss, never partial
// plaintext.
func errNotAuthentic(what string, cause error) error {
	return usererr.Wrap(usererr.DataLoss, "STORED_DATA_NOT_AUTHENTIC", what+" failed authentication", cause)
}

// open decrypts a sealed field; a failure is data loss, never partial plaintext.
func open(sl *crypto.RecordSealer, sealed, aad []byte) (string, error) {
	pt, err := sl.OpenRecord(sealed, aad)
	if err != nil {
		return "", errNotAuthentic("stored message", err)
	}
	return string(pt), nil
}

// Field names bound into the AAD of sealed records.
const (
	fieldSubject      = "subject"
	fieldBody         = "body"
	fieldFingerprint  = "request_fingerprint"
	fieldTransferNote = "transfer_note"
	fieldBreakGlass   = "break_glass_reason"
)

// fingerprint identifies a request's content, for idempotent retries. It is sealed before it
// is stored: a plain hash of a short body could be confirmed by guessing.
func fingerprint(parts ...string) []byte {
	h := sha256.Sum256(crypto.BindAAD(parts...))
	return h[:]
}

// loadThread loads a thread (ErrThreadNotFound when there is none).
func (s *Service) loadThread(ctx context.Context, id string) (*domain.Thread, error) {
	t, err := s.Threads.Thread(ctx, id)
	return t, storeError("load thread", err)
}

// Package app holds the audit service's use cases: ingesting records into the hash-chained log
// (with anomaly detection in the same commit), signing checkpoints, verifying ranges, proofs,
// auditor queries and exports (themselves audited), patients' access reports, retention, and
// the audit side of reconciliation with the producers' outboxes. The use cases take and return
// domain values and reach storage only through the domain's repository interfaces.
package app

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/audit/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog/tlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// Config tunes the use cases. Zero values take the defaults named.
type Config struct {
	// CheckpointEvery signs a checkpoint once this many records were appended since the last
	// (default 1000) ...
	CheckpointEvery uint64
	// CheckpointInterval ... or when this much time passed with new records (default 30s).
	CheckpointInterval time.Duration
	// Retention is how long records stay (default six years); whole months are dropped.
	Retention time.Duration
	// PartitionsAhead is how many future months have partitions ready (default 3).
	PartitionsAhead int
	// ExportLimit caps the records of one export (default 1,000,000).
	ExportLimit uint64
	// AnomalySubject is where AnomalyAlert events go (default securemsg.events.anomaly.raised).
	AnomalySubject string
	// Rules configures anomaly detection (default domain.DefaultAnomalyRules()).
	Rules *domain.AnomalyRules
	// ShowStaffNames lets access reports name staff; names come from StaffNames.
	ShowStaffNames bool
	// StaffNames names the care team (used only when ShowStaffNames; nil names nobody).
	StaffNames StaffNames
	// OrganisationNames maps organisation ids to display names.
	OrganisationNames map[string]string
	// TrustedKeys are checkpoint public keys trusted besides the signer's own: the keys of
	// earlier signing keys, so checkpoints signed before a key rotation still verify.
	// Checkpoints are checked with the key their key id names; any other key id fails.
	TrustedKeys []ed25519.PublicKey
}

// StaffNames names care-team members for access reports: a clinician's or staff member's name
// is not PHI, and patients have a right to know who of the care team read their records.
type StaffNames interface {
	// StaffName is the subject's display name, or "" when they are not care team or have none.
	StaffName(subject string) string
}

// StaticNames are staff names from configuration, by subject.
type StaticNames map[string]string

// StaffName implements StaffNames.
func (n StaticNames) StaffName(subject string) string { return n[subject] }

// DirectoryNames names staff as the directory every service watches does
// (PersonEntry.staff_display_name, which messaging fills for clinicians and staff only).
type DirectoryNames struct {
	People interface {
		Person(subject string) (*directoryv1.PersonEntry, bool)
	}
}

// StaffName implements StaffNames.
func (n DirectoryNames) StaffName(subject string) string {
	e, ok := n.People.Person(subject)
	if !ok {
		return ""
	}
	return e.GetStaffDisplayName()
}

// Deps are the use cases' collaborators: the repositories, and two platform values without I/O
// of their own.
type Deps struct {
	Log         domain.Log
	Checkpoints domain.Checkpoints
	Marks       domain.ReconcileMarks
	// Alerts stores the anomaly alerts for auditors (written by Log.Append's effects).
	Alerts domain.Alerts
	// Outbox takes the audit records of the service's own reads of the log.
	Outbox domain.Outbox
	// Signer signs checkpoints.
	Signer *tlog.Signer
	// Audit must be the audit service's own emitter (COMPONENT_AUDIT): queries, exports and
	// alerts are recorded through it into the audit schema's outbox and so come back into the
	// same log.
	Audit *auditlog.Emitter
	// Logger receives operational logs (ids and counts only); nil means slog.Default().
	Logger *slog.Logger
}

// DefaultRetention is six years (HIPAA's documentation retention), counted as 6×365+2 days.
const DefaultRetention = (6*365 + 2) * 24 * time.Hour

// Service implements the use cases.
type Service struct {
	log         domain.Log
	checkpoints domain.Checkpoints
	marks       domain.ReconcileMarks
	alerts      domain.Alerts
	outbox      domain.Outbox
	signer      *tlog.Signer
	trusted     *tlog.KeyRing // read-only after New
	emitter     *auditlog.Emitter
	cfg         Config
	logger      *slog.Logger
	now         func() time.Time
	mu          sync.Mutex // serialises the detector (appends take the head lock anyway)
	detector    *domain.Detector
}

// New builds the use cases over deps, every one of which but Logger is required.
func New(cfg Config, deps Deps) (*Service, error) {
	if deps.Log == nil || deps.Checkpoints == nil || deps.Marks == nil || deps.Alerts == nil || deps.Outbox == nil || deps.Signer == nil || deps.Audit == nil {
		return nil, errors.New("audit: app.New needs Log, Checkpoints, Marks, Alerts, Outbox, Signer and Audit")
	}
	if cfg.CheckpointEvery == 0 {
		cfg.CheckpointEvery = 1000
	}
	if cfg.CheckpointInterval == 0 {
		cfg.CheckpointInterval = 30 * time.Second
	}
	if cfg.Retention == 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.PartitionsAhead == 0 {
		cfg.PartitionsAhead = 3
	}
	if cfg.ExportLimit == 0 {
		cfg.ExportLimit = 1_000_000
	}
	if cfg.AnomalySubject == "" {
		cfg.AnomalySubject = "securemsg.events.anomaly.raised"
	}
	if cfg.Rules == nil {
		r := domain.DefaultAnomalyRules()
		cfg.Rules = &r
	}
	if err := cfg.Rules.Validate(); err != nil {
		return nil, err
	}
	logger := deps.Logger
	if logger == nil {
		logger = slog.Default()
	}
	trusted := tlog.NewKeyRing(cfg.TrustedKeys...)
	trusted.Add(deps.Signer.Public())
	return &Service{log: deps.Log, checkpoints: deps.Checkpoints, marks: deps.Marks, alerts: deps.Alerts, outbox: deps.Outbox, signer: deps.Signer,
		trusted: trusted, emitter: deps.Audit, cfg: cfg, logger: logger, now: time.Now, detector: domain.NewDetector(*cfg.Rules)}, nil
}

// TrustedKeyIDs lists the key ids whose checkpoints verify (the signer's and TrustedKeys).
func (s *Service) TrustedKeyIDs() []string { return s.trusted.IDs() }

// RestoreDetector rebuilds the anomaly rules' sliding windows, from empty, out of the log's
// recent entries (those appended within the longest rule window before now), so a burst that
// spans a restart or a change of ingesting replica is still detected. Alerts the replay fires are not raised again: they were raised before
// the restart (the replay also restores the rules' cool-down times). Call it before ingest
// starts.
func (s *Service) RestoreDetector(ctx context.Context) (replayed int, err error) {
	window := s.cfg.Rules.LongestWindow()
	if window <= 0 {
		return 0, nil
	}
	head, err := s.log.Head(ctx)
	if err != nil {
		return 0, err
	}
	first, found, err := s.log.FirstAppendedSince(ctx, s.now().Add(-window))
	if err != nil || !found {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// From empty windows: this replica may have led before, and the records another leader
	// appended since are in the log, not in this detector.
	s.detector = domain.NewDetector(*s.cfg.Rules)
	err = s.log.Range(ctx, first, head.Size, func(e domain.Entry) error {
		rec, err := e.Record()
		if err != nil {
			return nil // VerifyRange reports undecodable records; the detector skips them
		}
		s.detector.Observe(e.Sequence, rec)
		replayed++
		return nil
	})
	if err != nil {
		return replayed, fmt.Errorf("restore anomaly windows: %w", err)
	}
	s.logger.Info("anomaly windows restored", "entries", replayed, "from_sequence", first, "to_sequence", head.Size)
	return replayed, nil
}

// SetClock replaces time.Now (tests).
func (s *Service) SetClock(now func() time.Time) { s.now = now }

// Ingest appends a batch of received records (duplicates by event id are skipped) and, in the
// same commit, runs the anomaly rules over the new entries and writes their alerts and alert
// audit records to the outbox. It returns the entries appended.
func (s *Service) Ingest(ctx context.Context, recs []domain.Incoming) ([]domain.Entry, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	now := s.now()
	if err := s.log.EnsurePartitions(ctx, now, 0); err != nil {
		return nil, err
	}
	byID := make(map[string]*eventsv1.AuditRecord, len(recs))
	for _, r := range recs {
		byID[r.EventID] = r.Record
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.Append(ctx, recs, now, func(appended []domain.Entry) (domain.AppendEffects, error) {
		var eff domain.AppendEffects
		for _, e := range appended {
			for _, a := range s.detector.Observe(e.Sequence, byID[e.Projection.EventID]) {
				evs, err := s.alertEvents(ctx, a)
				if err != nil {
					return domain.AppendEffects{}, err
				}
				eff.Events = append(eff.Events, evs...)
				// evs[0] is the AnomalyAlert event: its id is the alert's.
				eff.Alerts = append(eff.Alerts, domain.RaisedAlert{ID: evs[0].ID, Alert: a, Severity: eventsv1.Severity_SEVERITY_HIGH, RaisedAt: now})
			}
		}
		return eff, nil
	})
}

// alertEvents builds the AnomalyAlert event and the audit record that says it was raised (the
// record names the alert by its event id).
func (s *Service) alertEvents(ctx context.Context, a domain.Alert) ([]outbox.Event, error) {
	alert, err := s.emitter.NewEvent(ctx, s.cfg.AnomalySubject, &eventsv1.AnomalyAlert{
		RuleId:        a.RuleID,
		Actor:         a.Actor,
		WindowStart:   timestamppb.New(a.WindowStart),
		WindowEnd:     timestamppb.New(a.WindowEnd),
		Count:         a.Count,
		Threshold:     a.Threshold,
		Severity:      eventsv1.Severity_SEVERITY_HIGH,
		FirstSequence: a.FirstSeq,
		LastSequence:  a.LastSeq,
	})
	if err != nil {
		return nil, err
	}
	rec, err := s.emitter.Event(ctx, s.emitter.NewRecord(ctx, eventsv1.Action_ACTION_ALERT_SENT,
		auditlog.Target{Type: eventsv1.RecordType_RECORD_TYPE_AUDIT_LOG, ID: alert.ID},
		auditlog.Reason("anomaly:"+a.RuleID), auditlog.WithSeverity(eventsv1.Severity_SEVERITY_HIGH),
		auditlog.Operation("anomaly-detector")))
	if err != nil {
		return nil, err
	}
	s.logger.Warn("anomaly rule fired", "rule", a.RuleID, "actor", a.Actor.GetSubject(), "count", a.Count,
		"first_sequence", a.FirstSeq, "last_sequence", a.LastSeq, "alert_id", alert.ID)
	return []outbox.Event{alert, rec}, nil
}

// Checkpoint signs the log's current head if it grew since the last checkpoint (or force) and
// returns the newest checkpoint (ErrNoCheckpoint while the log is empty and none exists).
func (s *Service) Checkpoint(ctx context.Context, force bool) (domain.Checkpoint, error) {
	head, err := s.log.Head(ctx)
	if err != nil {
		return domain.Checkpoint{}, err
	}
	last, err := s.checkpoints.LatestCheckpoint(ctx)
	if err != nil && !errors.Is(err, domain.ErrNoCheckpoint) {
		return domain.Checkpoint{}, err
	}
	if head.Size == 0 || (err == nil && last.TreeSize >= head.Size && !force) {
		return last, err
	}
	if err == nil && last.TreeSize == head.Size {
		return last, nil
	}
	cp := checkpointOf(s.signer.Sign(head.Size, head.Tree.Root(), s.now()))
	if err := s.checkpoints.SaveCheckpoint(ctx, cp); err != nil {
		return domain.Checkpoint{}, err
	}
	return cp, nil
}

// RunCheckpointer signs a checkpoint every CheckpointEvery records or CheckpointInterval,
// whichever comes first, until ctx ends.
func (s *Service) RunCheckpointer(ctx context.Context) {
	tick := time.NewTicker(min(s.cfg.CheckpointInterval, time.Second))
	defer tick.Stop()
	lastAt := time.Now()
	var lastSize uint64
	if cp, err := s.checkpoints.LatestCheckpoint(ctx); err == nil {
		lastSize = cp.TreeSize
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		head, err := s.log.Head(ctx)
		if err != nil {
			continue
		}
		if head.Size == lastSize || (head.Size-lastSize < s.cfg.CheckpointEvery && time.Since(lastAt) < s.cfg.CheckpointInterval) {
			continue
		}
		cp, err := s.Checkpoint(ctx, false)
		if err != nil {
			if ctx.Err() == nil {
				s.logger.Warn("checkpoint failed", "error", err)
			}
			continue
		}
		lastSize, lastAt = cp.TreeSize, time.Now()
	}
}

// RunMaintenance creates partitions ahead and drops expired ones, now and then daily.
func (s *Service) RunMaintenance(ctx context.Context) {
	for {
		if err := s.Maintain(ctx); err != nil && ctx.Err() == nil {
			s.logger.Warn("audit maintenance failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(24 * time.Hour):
		}
	}
}

// Maintain creates the partitions ahead and drops those past retention.
func (s *Service) Maintain(ctx context.Context) error {
	now := s.now()
	if err := s.log.EnsurePartitions(ctx, now, s.cfg.PartitionsAhead); err != nil {
		return err
	}
	dropped, err := s.log.DropExpired(ctx, now.Add(-s.cfg.Retention))
	if len(dropped) > 0 {
		s.logger.Info("audit retention dropped partitions", "partitions", dropped)
	}
	return err
}

// Refusals more than one use case returns.
var (
	errNoPrincipal      = usererr.New(usererr.PermissionDenied, "NO_PRINCIPAL", "permission denied: the request carries no principal")
	errNegativePageSize = usererr.New(usererr.InvalidArgument, "INVALID_PAGE_SIZE", "page_size is negative")
)

// requireAny checks the caller holds one of roles (services count when allowService).
func requireAny(ctx context.Context, allowService bool, roles ...auth.Role) error {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return errNoPrincipal
	}
	if allowService && p.Kind == auth.KindService {
		return nil
	}
	for _, r := range roles {
		if p.HasRole(r) {
			return nil
		}
	}
	return usererr.New(usererr.PermissionDenied, "ROLE_REQUIRED", "permission denied: the caller's role may not use this rpc")
}

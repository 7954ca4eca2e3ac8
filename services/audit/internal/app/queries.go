package app

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/audit/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog/tlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// VerifyRange re-checks sequences from..to (to 0 = the end) against the stored hashes, the
// chain, the projection columns and every checkpoint inside the range. The tree before from is
// rebuilt from stored nodes, so any range gets the Merkle check.
func (s *Service) VerifyRange(ctx context.Context, from, to uint64) (*auditv1.VerifyRangeResponse, error) {
	if err := requireAny(ctx, false, auth.RoleAuditor, auth.RoleAdmin); err != nil {
		return nil, err
	}
	return s.Verify(ctx, from, to)
}

// Verify is VerifyRange without the caller check (for the service's own jobs and tests).
func (s *Service) Verify(ctx context.Context, from, to uint64) (*auditv1.VerifyRangeResponse, error) {
	head, err := s.store.Head(ctx)
	if err != nil {
		return nil, err
	}
	if to == 0 {
		to = head.Size
	}
	if from == 0 || from > to {
		return nil, usererr.New(usererr.InvalidArgument, "INVALID_SEQUENCE_RANGE", "from_sequence must be at least 1 and not after to_sequence")
	}
	if to > head.Size {
		return nil, usererr.Newf(usererr.OutOfRange, "BEYOND_LOG_END", "to_sequence %d is beyond the log's end %d", to, head.Size)
	}
	if from < head.FirstSequence {
		return nil, usererr.Newf(usererr.OutOfRange, "REMOVED_BY_RETENTION", "sequences before %d were removed by retention", head.FirstSequence)
	}
	stored, err := s.store.Checkpoints(ctx, from, to)
	if err != nil {
		return nil, err
	}
	var cps []*auditv1.Checkpoint
	for _, c := range stored {
		cp := CheckpointProto(c)
		if err := s.trusted.Verify(cp); err != nil {
			return &auditv1.VerifyRangeResponse{Failure: auditv1.VerifyFailure_VERIFY_FAILURE_CHECKPOINT_SIGNATURE_INVALID,
				FirstFailingSequence: c.TreeSize, Checkpoint: cp, Detail: err.Error(), ToSequence: to}, nil
		}
		cps = append(cps, cp)
	}
	prev := tlog.ZeroHash()
	if from > 1 {
		// The previous entry's chain hash is taken from the stored entry; the chain check of
		// from itself catches an edit there.
		var got []byte
		if err := s.store.Range(ctx, from-1, from-1, func(e domain.Entry) error { got = e.Chain; return nil }); err != nil {
			return nil, err
		}
		if got == nil && from == head.FirstSequence {
			// The entry before was dropped by retention: start from the chain hash the first
			// kept entry states (its own leaf and every later link are still checked).
			err = s.store.Range(ctx, from, from, func(e domain.Entry) error { got = e.PrevChain; return nil })
			if err != nil {
				return nil, err
			}
		}
		if got == nil {
			return nil, usererr.Newf(usererr.OutOfRange, "SEQUENCE_NOT_STORED", "sequence %d is not stored", from-1)
		}
		prev = got
	}
	tree, err := s.store.TreeAt(ctx, from-1)
	if err != nil {
		if !domain.IsPruned(err) {
			return nil, err
		}
		tree = nil // retention removed leaves the tree needs: check leaves and chain only
	}
	v := tlog.NewVerifier(from, prev, tree, cps...)
	var badProjection uint64
	stop := errors.New("stop")
	err = s.store.Range(ctx, from, to, func(e domain.Entry) error {
		rec, ok := v.Add(e.Sequence, e.Bytes, e.Leaf, e.PrevChain, e.Chain)
		if !ok {
			return stop
		}
		if !domain.Project(rec).Equal(e.Projection) {
			badProjection = e.Sequence
			return stop
		}
		return nil
	})
	if err != nil && !errors.Is(err, stop) {
		return nil, err
	}
	if badProjection != 0 {
		r := v.Finish(0)
		return &auditv1.VerifyRangeResponse{Failure: auditv1.VerifyFailure_VERIFY_FAILURE_LEAF_HASH_MISMATCH,
			FirstFailingSequence: badProjection, VerifiedCount: r.VerifiedCount - 1, ToSequence: to, Checkpoint: r.Checkpoint,
			Detail: fmt.Sprintf("sequence %d: the indexed columns differ from the record bytes", badProjection)}, nil
	}
	r := v.Finish(0)
	if r.Ok && v.Next() != to+1 {
		r = &auditv1.VerifyRangeResponse{Failure: auditv1.VerifyFailure_VERIFY_FAILURE_SEQUENCE_GAP, FirstFailingSequence: v.Next(),
			VerifiedCount: r.VerifiedCount, Detail: fmt.Sprintf("sequence %d is missing", v.Next())}
	}
	r.ToSequence = to
	return r, nil
}

// LatestCheckpoint returns the newest checkpoint.
func (s *Service) LatestCheckpoint(ctx context.Context) (*auditv1.Checkpoint, error) {
	if err := requireAny(ctx, true, auth.RoleAuditor, auth.RoleAdmin); err != nil {
		return nil, err
	}
	cp, err := s.store.LatestCheckpoint(ctx)
	if err != nil {
		return nil, err
	}
	return CheckpointProto(cp), nil
}

// resolveSize turns 0 into the latest checkpoint's size and checks size against the log.
func (s *Service) resolveSize(ctx context.Context, size uint64) (uint64, *auditv1.Checkpoint, error) {
	var cp *auditv1.Checkpoint
	if size == 0 {
		c, err := s.store.LatestCheckpoint(ctx)
		if err != nil {
			return 0, nil, err
		}
		return c.TreeSize, CheckpointProto(c), nil
	}
	head, err := s.store.Head(ctx)
	if err != nil {
		return 0, nil, err
	}
	if size > head.Size {
		return 0, nil, usererr.Newf(usererr.OutOfRange, "BEYOND_LOG_END", "tree size %d is beyond the log's size %d", size, head.Size)
	}
	if cs, err := s.store.Checkpoints(ctx, size, size); err == nil && len(cs) == 1 {
		cp = CheckpointProto(cs[0])
	}
	return size, cp, nil
}

// InclusionProof proves the record at seq is in the tree of treeSize (0 = latest checkpoint).
func (s *Service) InclusionProof(ctx context.Context, seq, treeSize uint64) (*auditv1.GetInclusionProofResponse, error) {
	if err := requireAny(ctx, true, auth.RoleAuditor, auth.RoleAdmin); err != nil {
		return nil, err
	}
	if seq == 0 || (treeSize != 0 && seq > treeSize) {
		return nil, usererr.New(usererr.InvalidArgument, "INVALID_SEQUENCE", "sequence must be in 1..tree_size")
	}
	size, cp, err := s.resolveSize(ctx, treeSize)
	if err != nil {
		return nil, err
	}
	if seq > size {
		return nil, usererr.Newf(usererr.InvalidArgument, "INVALID_SEQUENCE", "sequence %d is beyond tree size %d", seq, size)
	}
	leaf, err := s.store.LeafHash(ctx, seq)
	if err != nil {
		return nil, err
	}
	hashes, err := s.store.InclusionProof(ctx, seq-1, size)
	if err != nil {
		return nil, err
	}
	return &auditv1.GetInclusionProofResponse{LeafIndex: seq - 1, TreeSize: size, LeafHash: leaf, Hashes: hashes, Checkpoint: cp}, nil
}

// ConsistencyProof proves the tree of first is a prefix of the tree of second (0 = latest).
func (s *Service) ConsistencyProof(ctx context.Context, first, second uint64) (*auditv1.GetConsistencyProofResponse, error) {
	if err := requireAny(ctx, true, auth.RoleAuditor, auth.RoleAdmin); err != nil {
		return nil, err
	}
	if first == 0 || (second != 0 && first > second) {
		return nil, usererr.New(usererr.InvalidArgument, "INVALID_TREE_SIZE", "first_size must be in 1..second_size")
	}
	size, _, err := s.resolveSize(ctx, second)
	if err != nil {
		return nil, err
	}
	if first > size {
		return nil, usererr.Newf(usererr.InvalidArgument, "INVALID_TREE_SIZE", "first_size %d is beyond %d", first, size)
	}
	hashes, err := s.store.ConsistencyProof(ctx, first, size)
	if err != nil {
		return nil, err
	}
	return &auditv1.GetConsistencyProofResponse{FirstSize: first, SecondSize: size, Hashes: hashes}, nil
}

// FilterFromProto converts and validates an API filter.
func FilterFromProto(f *auditv1.AuditEventFilter) (domain.Filter, error) {
	df := domain.Filter{
		ActorSubject: f.GetActorSubject(), PatientID: f.GetPatientId(), RecordType: f.GetRecordType(), RecordID: f.GetRecordId(),
		Actions: f.GetActions(), Outcomes: f.GetOutcomes(), FromSeq: f.GetFromSequence(), ToSeq: f.GetToSequence(),
		MinSeverity: f.GetMinSeverity(),
	}
	if f.GetStartTime() != nil {
		df.Start = f.GetStartTime().AsTime()
	}
	if f.GetEndTime() != nil {
		df.End = f.GetEndTime().AsTime()
	}
	return df, df.Validate()
}

// recordAccess writes the audit record of an auditor's (or patient's) use of the log before
// the data is read: if it cannot be written, the request is refused (fail closed).
func (s *Service) recordAccess(ctx context.Context, action eventsv1.Action, reason, patient string) error {
	rec := s.emitter.NewRecord(ctx, action, auditlog.Target{Type: eventsv1.RecordType_RECORD_TYPE_AUDIT_LOG, PatientID: patient},
		auditlog.Reason(reason), legalPurpose)
	err := pg.WithTx(ctx, s.store, func(tx pgx.Tx) error {
		_, err := s.emitter.Record(ctx, tx, rec)
		return err
	})
	if err != nil {
		return fmt.Errorf("record audit log access: %w", err)
	}
	return nil
}

// legalPurpose records reading the audit log as done for legal purposes, except a patient's
// or proxy's own access report, which stays a patient request.
func legalPurpose(r *eventsv1.AuditRecord) {
	if role := r.GetActor().GetRole(); role != commonv1.Role_ROLE_PATIENT && role != commonv1.Role_ROLE_PROXY {
		r.PurposeOfUse = commonv1.PurposeOfUse_PURPOSE_OF_USE_LEGAL
	}
}

// Query returns one page of entries for an auditor; the query is audited first.
func (s *Service) Query(ctx context.Context, req *auditv1.QueryAuditEventsRequest) (*auditv1.QueryAuditEventsResponse, error) {
	if err := requireAny(ctx, false, auth.RoleAuditor); err != nil {
		return nil, err
	}
	if req.GetPageSize() < 0 {
		return nil, errNegativePageSize
	}
	f, err := FilterFromProto(req.GetFilter())
	if err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	if size == 0 {
		size = 100
	}
	size = min(size, 1000)
	bind := bindKey(req.GetFilter(), req.GetNewestFirst())
	after, err := parsePageToken(req.GetPageToken(), bind)
	if err != nil {
		return nil, err
	}
	if err := s.recordAccess(ctx, eventsv1.Action_ACTION_QUERY, "audit_query", f.PatientID); err != nil {
		return nil, err
	}
	entries, err := s.store.Query(ctx, f, domain.Page{After: after, Desc: req.GetNewestFirst(), Limit: size + 1})
	if err != nil {
		return nil, err
	}
	resp := &auditv1.QueryAuditEventsResponse{}
	more := len(entries) > size
	if more {
		entries = entries[:size]
	}
	for _, e := range entries {
		pe, err := EntryProto(e)
		if err != nil {
			return nil, err
		}
		resp.Entries = append(resp.Entries, pe)
	}
	if more {
		resp.NextPageToken = pageToken(bind, entries[len(entries)-1].Sequence)
	}
	return resp, nil
}

func bindKey(m proto.Message, flags ...bool) []byte {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	for _, f := range flags {
		if f {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	}
	return b
}

// ExportWriter receives export chunks in order.
type ExportWriter func(chunk []byte) error

// Export streams the entries matching req's filter in the requested format to w in chunks of
// at most chunkSize bytes, and returns the summary (with the latest checkpoint). The export is
// audited (HIGH) before any data is read.
func (s *Service) Export(ctx context.Context, req *auditv1.ExportAuditEventsRequest, chunkSize int, w ExportWriter) (*auditv1.ExportSummary, error) {
	if err := requireAny(ctx, false, auth.RoleAuditor); err != nil {
		return nil, err
	}
	format := req.GetFormat()
	if format != auditv1.ExportFormat_EXPORT_FORMAT_JSONL && format != auditv1.ExportFormat_EXPORT_FORMAT_FHIR_AUDIT_EVENT {
		return nil, usererr.New(usererr.InvalidArgument, "EXPORT_FORMAT_REQUIRED", "format is required")
	}
	f, err := FilterFromProto(req.GetFilter())
	if err != nil {
		return nil, err
	}
	// The checkpoint is read before the entries so the summary's checkpoint never covers
	// records the export left out.
	var cp *auditv1.Checkpoint
	if c, err := s.store.LatestCheckpoint(ctx); err == nil {
		cp = CheckpointProto(c)
	} else if !errors.Is(err, domain.ErrNoCheckpoint) {
		return nil, err
	}
	if err := s.recordAccess(ctx, eventsv1.Action_ACTION_EXPORT, "audit_export", f.PatientID); err != nil {
		return nil, err
	}
	sum := &auditv1.ExportSummary{Checkpoint: cp}
	h := sha256.New()
	var buf bytes.Buffer
	flush := func(force bool) error {
		for buf.Len() > 0 && (force || buf.Len() >= chunkSize) {
			n := min(buf.Len(), chunkSize)
			chunk := slices.Clone(buf.Next(n))
			h.Write(chunk)
			if err := w(chunk); err != nil {
				return err
			}
		}
		if buf.Len() == 0 {
			buf.Reset()
		}
		return nil
	}
	var after uint64
	for {
		page, err := s.store.Query(ctx, f, domain.Page{After: after, Limit: 1000})
		if err != nil {
			return nil, err
		}
		for _, e := range page {
			if sum.RecordCount >= s.cfg.ExportLimit {
				return nil, usererr.Newf(usererr.ResourceExhausted, "EXPORT_TOO_LARGE", "export too large (more than %d records); narrow the range", s.cfg.ExportLimit)
			}
			pe, err := EntryProto(e)
			if err != nil {
				return nil, err
			}
			var line []byte
			if format == auditv1.ExportFormat_EXPORT_FORMAT_JSONL {
				line, err = tlog.AppendEntryJSON(nil, pe)
			} else {
				line, err = FHIRAuditEventJSON(pe)
			}
			if err != nil {
				return nil, err
			}
			buf.Write(line)
			if sum.FirstSequence == 0 {
				sum.FirstSequence = e.Sequence
			}
			sum.LastSequence = e.Sequence
			sum.RecordCount++
			if err := flush(false); err != nil {
				return nil, err
			}
		}
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].Sequence
	}
	if err := flush(true); err != nil {
		return nil, err
	}
	sum.Sha256 = h.Sum(nil)
	return sum, nil
}

// reportActions are the accesses a patient's report lists.
var reportActions = []eventsv1.Action{eventsv1.Action_ACTION_READ, eventsv1.Action_ACTION_DOWNLOAD, eventsv1.Action_ACTION_CREATE,
	eventsv1.Action_ACTION_UPDATE, eventsv1.Action_ACTION_DELETE, eventsv1.Action_ACTION_BREAK_GLASS}

// AccessReport answers "who accessed my records" for the patient, a proxy with an active grant
// for the patient (never seeing adolescent-confidential entries), or an auditor. The patient's
// own accesses are left out; staff are named only when configuration allows.
func (s *Service) AccessReport(ctx context.Context, req *auditv1.GetAccessReportRequest) (*auditv1.GetAccessReportResponse, error) {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return nil, errNoPrincipal
	}
	patient := req.GetPatientId()
	if patient == "" {
		return nil, usererr.New(usererr.InvalidArgument, "PATIENT_ID_REQUIRED", "patient_id is required")
	}
	if req.GetPageSize() < 0 {
		return nil, errNegativePageSize
	}
	f := domain.Filter{PatientID: patient, Actions: reportActions, Outcomes: []eventsv1.Outcome{eventsv1.Outcome_OUTCOME_SUCCESS},
		ExcludeRoles: []commonv1.Role{commonv1.Role_ROLE_PATIENT, commonv1.Role_ROLE_SERVICE}}
	if req.GetStartTime() != nil {
		f.Start = req.GetStartTime().AsTime()
	}
	if req.GetEndTime() != nil {
		f.End = req.GetEndTime().AsTime()
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	switch {
	case p.HasRole(auth.RolePatient) && p.PatientID == patient:
	case p.HasRole(auth.RoleProxy) && hasGrant(p, patient, s.now()):
		f.ExcludeSensitivity = []commonv1.Sensitivity{commonv1.Sensitivity_SENSITIVITY_ADOLESCENT_CONFIDENTIAL}
	case p.HasRole(auth.RoleAuditor):
	default:
		return nil, usererr.New(usererr.PermissionDenied, "NOT_PATIENT_PROXY_OR_AUDITOR", "permission denied: only the patient, a proxy with an active grant or an auditor may see this report")
	}
	size := int(req.GetPageSize())
	if size == 0 {
		size = 50
	}
	size = min(size, 500)
	bindReq := proto.Clone(req).(*auditv1.GetAccessReportRequest)
	bindReq.PageToken, bindReq.PageSize = "", 0
	bind := append(bindKey(bindReq), []byte(p.Subject)...)
	after, err := parsePageToken(req.GetPageToken(), bind)
	if err != nil {
		return nil, err
	}
	if err := s.recordAccess(ctx, eventsv1.Action_ACTION_QUERY, "access_report", patient); err != nil {
		return nil, err
	}
	entries, err := s.store.Query(ctx, f, domain.Page{After: after, Desc: true, Limit: size + 1})
	if err != nil {
		return nil, err
	}
	resp := &auditv1.GetAccessReportResponse{}
	more := len(entries) > size
	if more {
		entries = entries[:size]
		resp.NextPageToken = pageToken(bind, entries[len(entries)-1].Sequence)
	}
	for _, e := range entries {
		pr := e.Projection
		re := &auditv1.AccessReportEntry{
			AccessTime:       timestamppb.New(pr.OccurredAt),
			ActorRole:        commonv1.Role(pr.ActorRole),
			OrganisationId:   pr.ActorOrg,
			OrganisationName: s.cfg.OrganisationNames[pr.ActorOrg],
			Action:           eventsv1.Action(pr.Action),
			RecordType:       eventsv1.RecordType(pr.RecordType),
			RecordId:         pr.RecordID,
			PurposeOfUse:     commonv1.PurposeOfUse(pr.Purpose),
		}
		if s.cfg.ShowStaffNames {
			re.ActorDisplayName = s.cfg.StaffNames[pr.ActorSubject]
		}
		resp.Entries = append(resp.Entries, re)
	}
	return resp, nil
}

func hasGrant(p *auth.Principal, patient string, now interface{ Unix() int64 }) bool {
	for _, g := range p.ProxyGrants {
		if g.PatientID == patient && g.ExpiresAt.Unix() > now.Unix() && len(g.Scopes) > 0 {
			return true
		}
	}
	return false
}

package app

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/audit/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog/tlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// recordAccess writes the audit record of an auditor's (or patient's) use of the log before
// the data is read: if it cannot be written, the request is refused (fail closed).
func (s *Service) recordAccess(ctx context.Context, action eventsv1.Action, reason, patient string) error {
	ev, err := s.emitter.Event(ctx, s.emitter.NewRecord(ctx, action,
		auditlog.Target{Type: eventsv1.RecordType_RECORD_TYPE_AUDIT_LOG, PatientID: patient}, auditlog.Reason(reason), legalPurpose))
	if err == nil {
		err = s.outbox.WriteEvents(ctx, ev)
	}
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
func (s *Service) Query(ctx context.Context, req domain.QueryRequest) (domain.QueryPage, error) {
	if err := requireAny(ctx, false, auth.RoleAuditor); err != nil {
		return domain.QueryPage{}, err
	}
	if req.PageSize < 0 {
		return domain.QueryPage{}, errNegativePageSize
	}
	f := req.Filter
	if err := f.Validate(); err != nil {
		return domain.QueryPage{}, err
	}
	size := pageSize(req.PageSize, 100, 1000)
	bind := bindKey(struct {
		Filter      domain.Filter
		NewestFirst bool
	}{f, req.NewestFirst})
	after, err := parsePageToken(req.PageToken, bind)
	if err != nil {
		return domain.QueryPage{}, err
	}
	if err := s.recordAccess(ctx, eventsv1.Action_ACTION_QUERY, "audit_query", f.PatientID); err != nil {
		return domain.QueryPage{}, err
	}
	entries, err := s.log.Query(ctx, f, domain.Page{After: after, Desc: req.NewestFirst, Limit: size + 1})
	if err != nil {
		return domain.QueryPage{}, err
	}
	var page domain.QueryPage
	entries, page.NextPageToken = cutPage(entries, size, bind)
	for _, e := range entries {
		rec, err := e.Record()
		if err != nil {
			return domain.QueryPage{}, err
		}
		page.Entries = append(page.Entries, domain.LoggedRecord{Entry: e, Record: rec})
	}
	return page, nil
}

// ExportWriter receives export chunks in order.
type ExportWriter func(chunk []byte) error

// exportPage is how many entries an export reads at a time.
const exportPage = 1000

// Export streams the entries matching req's filter in the requested format to w in chunks of
// at most chunkSize bytes, and returns the summary (with the latest checkpoint). The export is
// audited (HIGH) before any data is read.
func (s *Service) Export(ctx context.Context, req domain.ExportRequest, chunkSize int, w ExportWriter) (domain.ExportSummary, error) {
	if err := requireAny(ctx, false, auth.RoleAuditor); err != nil {
		return domain.ExportSummary{}, err
	}
	if req.Format != domain.ExportJSONL && req.Format != domain.ExportFHIRAuditEvent {
		return domain.ExportSummary{}, usererr.New(usererr.InvalidArgument, "EXPORT_FORMAT_REQUIRED", "format is required")
	}
	f := req.Filter
	if err := f.Validate(); err != nil {
		return domain.ExportSummary{}, err
	}
	// The checkpoint is read before the entries so the summary's checkpoint never covers
	// records the export left out.
	var sum domain.ExportSummary
	if c, err := s.checkpoints.LatestCheckpoint(ctx); err == nil {
		sum.Checkpoint = &c
	} else if !errors.Is(err, domain.ErrNoCheckpoint) {
		return domain.ExportSummary{}, err
	}
	if err := s.recordAccess(ctx, eventsv1.Action_ACTION_EXPORT, "audit_export", f.PatientID); err != nil {
		return domain.ExportSummary{}, err
	}
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
		page, err := s.log.Query(ctx, f, domain.Page{After: after, Limit: exportPage})
		if err != nil {
			return domain.ExportSummary{}, err
		}
		for _, e := range page {
			if sum.RecordCount >= s.cfg.ExportLimit {
				return domain.ExportSummary{}, usererr.Newf(usererr.ResourceExhausted, "EXPORT_TOO_LARGE",
					"export too large (more than %d records); narrow the range", s.cfg.ExportLimit)
			}
			line, err := exportLine(e, req.Format)
			if err != nil {
				return domain.ExportSummary{}, err
			}
			buf.Write(line)
			if sum.FirstSequence == 0 {
				sum.FirstSequence = e.Sequence
			}
			sum.LastSequence = e.Sequence
			sum.RecordCount++
			if err := flush(false); err != nil {
				return domain.ExportSummary{}, err
			}
		}
		if len(page) < exportPage {
			break
		}
		after = page[len(page)-1].Sequence
	}
	if err := flush(true); err != nil {
		return domain.ExportSummary{}, err
	}
	sum.SHA256 = h.Sum(nil)
	return sum, nil
}

// exportLine renders one entry in an export format: JSONL is tlog's entry line (what
// securemsgctl audit verify reads), FHIR one AuditEvent resource.
func exportLine(e domain.Entry, format domain.ExportFormat) ([]byte, error) {
	rec, err := e.Record()
	if err != nil {
		return nil, err
	}
	if format == domain.ExportFHIRAuditEvent {
		return domain.FHIRAuditEventJSON(rec)
	}
	return tlog.AppendEntryJSON(nil, &auditv1.AuditEntry{Sequence: e.Sequence, Record: rec, RecordBytes: e.Bytes, LeafHash: e.Leaf,
		PrevChainHash: e.PrevChain, ChainHash: e.Chain, AppendTime: timestamppb.New(e.AppendedAt)})
}

// reportActions are the accesses a patient's report lists.
var reportActions = []eventsv1.Action{eventsv1.Action_ACTION_READ, eventsv1.Action_ACTION_DOWNLOAD, eventsv1.Action_ACTION_CREATE,
	eventsv1.Action_ACTION_UPDATE, eventsv1.Action_ACTION_DELETE, eventsv1.Action_ACTION_BREAK_GLASS}

// AccessReport answers "who accessed my records" for the patient, a proxy with an active grant
// for the patient (never seeing adolescent-confidential entries), or an auditor. The patient's
// own accesses are left out; staff are named only when configuration allows.
func (s *Service) AccessReport(ctx context.Context, req domain.AccessReportRequest) (domain.AccessReportPage, error) {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return domain.AccessReportPage{}, errNoPrincipal
	}
	if req.PatientID == "" {
		return domain.AccessReportPage{}, usererr.New(usererr.InvalidArgument, "PATIENT_ID_REQUIRED", "patient_id is required")
	}
	if req.PageSize < 0 {
		return domain.AccessReportPage{}, errNegativePageSize
	}
	f := domain.Filter{PatientID: req.PatientID, Actions: reportActions, Outcomes: []eventsv1.Outcome{eventsv1.Outcome_OUTCOME_SUCCESS},
		ExcludeRoles: []commonv1.Role{commonv1.Role_ROLE_PATIENT, commonv1.Role_ROLE_SERVICE}, Start: req.Start, End: req.End}
	if err := f.Validate(); err != nil {
		return domain.AccessReportPage{}, err
	}
	switch {
	case p.HasRole(auth.RolePatient) && p.PatientID == req.PatientID:
	case p.HasRole(auth.RoleProxy) && hasGrant(p, req.PatientID, s.now()):
		f.ExcludeSensitivity = []commonv1.Sensitivity{commonv1.Sensitivity_SENSITIVITY_ADOLESCENT_CONFIDENTIAL}
	case p.HasRole(auth.RoleAuditor):
	default:
		return domain.AccessReportPage{}, usererr.New(usererr.PermissionDenied, "NOT_PATIENT_PROXY_OR_AUDITOR",
			"permission denied: only the patient, a proxy with an active grant or an auditor may see this report")
	}
	size := pageSize(req.PageSize, 50, 500)
	// The token is bound to the report asked for and to the caller, so it cannot page through
	// another patient's report or be replayed by someone else.
	bind := bindKey(struct {
		PatientID  string
		Start, End time.Time
		Caller     string
	}{req.PatientID, req.Start, req.End, p.Subject})
	after, err := parsePageToken(req.PageToken, bind)
	if err != nil {
		return domain.AccessReportPage{}, err
	}
	if err := s.recordAccess(ctx, eventsv1.Action_ACTION_QUERY, "access_report", req.PatientID); err != nil {
		return domain.AccessReportPage{}, err
	}
	entries, err := s.log.Query(ctx, f, domain.Page{After: after, Desc: true, Limit: size + 1})
	if err != nil {
		return domain.AccessReportPage{}, err
	}
	var page domain.AccessReportPage
	entries, page.NextPageToken = cutPage(entries, size, bind)
	for _, e := range entries {
		pr := e.Projection
		re := domain.AccessReportEntry{
			AccessTime:       pr.OccurredAt,
			ActorRole:        commonv1.Role(pr.ActorRole),
			OrganisationID:   pr.ActorOrg,
			OrganisationName: s.cfg.OrganisationNames[pr.ActorOrg],
			Action:           eventsv1.Action(pr.Action),
			RecordType:       eventsv1.RecordType(pr.RecordType),
			RecordID:         pr.RecordID,
			PurposeOfUse:     commonv1.PurposeOfUse(pr.Purpose),
		}
		if s.cfg.ShowStaffNames && s.cfg.StaffNames != nil {
			re.ActorDisplayName = s.cfg.StaffNames.StaffName(pr.ActorSubject)
		}
		page.Entries = append(page.Entries, re)
	}
	return page, nil
}

func hasGrant(p *auth.Principal, patient string, now time.Time) bool {
	for _, g := range p.ProxyGrants {
		if g.PatientID == patient && g.ExpiresAt.Unix() > now.Unix() && len(g.Scopes) > 0 {
			return true
		}
	}
	return false
}

// pageSize is the page size asked for, def when 0, at most limit.
func pageSize(asked int32, def, limit int) int {
	if asked == 0 {
		return def
	}
	return min(int(asked), limit)
}

// cutPage cuts entries, read with a limit of one more than size, to one page and returns the
// token of the next page (empty when this is the last).
func cutPage(entries []domain.Entry, size int, bind []byte) ([]domain.Entry, string) {
	if len(entries) <= size {
		return entries, ""
	}
	entries = entries[:size]
	return entries, pageToken(bind, entries[len(entries)-1].Sequence)
}

// bindKey is the request a page token belongs to, encoded deterministically.
func bindKey(request any) []byte {
	b, err := json.Marshal(request)
	if err != nil {
		panic("audit: encode page-token binding: " + err.Error()) // plain structs of strings, times and enums always encode
	}
	return b
}

// pageToken encodes the last sequence of a page bound to the request it belongs to.
func pageToken(bind []byte, last uint64) string {
	sum := sha256.Sum256(bind)
	b := make([]byte, 8+8)
	copy(b, sum[:8])
	binary.BigEndian.PutUint64(b[8:], last)
	return base64.RawURLEncoding.EncodeToString(b)
}

func parsePageToken(tok string, bind []byte) (uint64, error) {
	if tok == "" {
		return 0, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) != 16 {
		return 0, usererr.New(usererr.InvalidArgument, "INVALID_PAGE_TOKEN", "malformed page_token")
	}
	sum := sha256.Sum256(bind)
	if string(b[:8]) != string(sum[:8]) {
		return 0, usererr.New(usererr.InvalidArgument, "INVALID_PAGE_TOKEN", "page_token was issued for another request")
	}
	return binary.BigEndian.Uint64(b[8:]), nil
}

package app_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/audit/internal/adapters/memstore"
	"github.com/securemsg/securemsg/services/audit/internal/adapters/repotest"
	"github.com/securemsg/securemsg/services/audit/internal/app"
	"github.com/securemsg/securemsg/services/audit/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog/tlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// These tests run the use cases over the in-memory store (adapters/memstore, held to the same
// contract as the Postgres store by adapters/repotest): no stack needed. The same use cases over
// Postgres, through the gRPC handler, are tested in internal/wire.

// env is one service under test over its own in-memory store.
type env struct {
	svc    *app.Service
	store  *memstore.Store
	signer *tlog.Signer
}

func newEnv(t *testing.T, cfg app.Config) *env {
	t.Helper()
	e := &env{store: memstore.New(), signer: newSigner(t)}
	e.svc = e.restart(t, e.signer, cfg)
	if err := e.svc.Maintain(t.Context()); err != nil {
		t.Fatalf("Maintain() error = %v", err)
	}
	return e
}

// restart builds a new Service over the env's store, as a restarted process would.
func (e *env) restart(t *testing.T, signer *tlog.Signer, cfg app.Config) *app.Service {
	t.Helper()
	return newService(t, cfg, e.store, e.store, signer)
}

func newService(t *testing.T, cfg app.Config, store *memstore.Store, out domain.Outbox, signer *tlog.Signer) *app.Service {
	t.Helper()
	em, err := auditlog.NewEmitter(commonv1.Component_COMPONENT_AUDIT)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := app.New(cfg, app.Deps{Log: store, Checkpoints: store, Marks: store, Alerts: store, Outbox: out, Signer: signer, Audit: em})
	if err != nil {
		t.Fatalf("app.New() error = %v", err)
	}
	return svc
}

func newSigner(t *testing.T) *tlog.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return tlog.NewSigner(priv)
}

func (e *env) ingest(t *testing.T, recs ...domain.Incoming) []domain.Entry {
	t.Helper()
	got, err := e.svc.Ingest(t.Context(), recs)
	if err != nil {
		t.Fatalf("Ingest() error = %v", err)
	}
	return got
}

// auditRecords decodes the audit records the service wrote about itself.
func (e *env) auditRecords(t *testing.T) []*eventsv1.AuditRecord {
	t.Helper()
	var out []*eventsv1.AuditRecord
	for _, ev := range e.store.Events() {
		if ev.Subject == auditlog.DefaultSubjectPrefix+".audit" {
			rec := &eventsv1.AuditRecord{}
			if err := proto.Unmarshal(ev.Payload, rec); err != nil {
				t.Fatal(err)
			}
			out = append(out, rec)
		}
	}
	return out
}

func as(ctx context.Context, p *auth.Principal) context.Context { return auth.WithPrincipal(ctx, p) }

var (
	auditor   = &auth.Principal{Kind: auth.KindUser, Subject: "auditor-1", Roles: []auth.Role{auth.RoleAuditor}, ClientID: "audit-console"}
	admin     = &auth.Principal{Kind: auth.KindUser, Subject: "admin-1", Roles: []auth.Role{auth.RoleAdmin}}
	clinician = &auth.Principal{Kind: auth.KindUser, Subject: "clin-1", Roles: []auth.Role{auth.RoleClinician}}
	patient   = &auth.Principal{Kind: auth.KindUser, Subject: "pat-7", Roles: []auth.Role{auth.RolePatient}, PatientID: "patient-2"}
	service   = &auth.Principal{Kind: auth.KindService, Subject: "svc:messaging"}
)

func proxyFor(patientID string, expires time.Time) *auth.Principal {
	return &auth.Principal{Kind: auth.KindUser, Subject: "parent-1", Roles: []auth.Role{auth.RoleProxy},
		ProxyGrants: []auth.ProxyGrant{{PatientID: patientID, Scopes: []string{"read"}, ExpiresAt: expires}}}
}

// TestRefusals: every refusal is a usererr value with the code and stable reason the edge
// sends, and a message free of the request's ids.
func TestRefusals(t *testing.T) {
	t.Parallel()
	empty := newEnv(t, app.Config{})
	e := newEnv(t, app.Config{Retention: 90 * 24 * time.Hour, ExportLimit: 5})
	e.svc.SetClock(func() time.Time { return time.Now().AddDate(0, -6, 0) })
	e.ingest(t, repotest.Records(t, 0, 20)...)
	e.svc.SetClock(time.Now)
	e.ingest(t, repotest.Records(t, 20, 10)...)
	if err := e.svc.Maintain(t.Context()); err != nil { // drops sequences 1..20
		t.Fatal(err)
	}
	if _, err := e.svc.Checkpoint(t.Context(), false); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	a := as(ctx, auditor)
	tests := []struct {
		name   string
		call   func() error
		kind   usererr.Kind
		reason string
	}{
		{"verify as a patient", func() error { _, err := e.svc.VerifyRange(as(ctx, patient), 21, 0); return err }, usererr.PermissionDenied, "ROLE_REQUIRED"},
		{"verify without a principal", func() error { _, err := e.svc.VerifyRange(ctx, 21, 0); return err }, usererr.PermissionDenied, "NO_PRINCIPAL"},
		{"verify from 0", func() error { _, err := e.svc.VerifyRange(a, 0, 0); return err }, usererr.InvalidArgument, "INVALID_SEQUENCE_RANGE"},
		{"verify inverted", func() error { _, err := e.svc.VerifyRange(a, 25, 22); return err }, usererr.InvalidArgument, "INVALID_SEQUENCE_RANGE"},
		{"verify beyond the end", func() error { _, err := e.svc.VerifyRange(a, 21, 31); return err }, usererr.OutOfRange, "BEYOND_LOG_END"},
		{"verify what retention dropped", func() error { _, err := e.svc.VerifyRange(a, 1, 0); return err }, usererr.OutOfRange, "REMOVED_BY_RETENTION"},
		{"latest checkpoint as a clinician", func() error { _, err := e.svc.LatestCheckpoint(as(ctx, clinician)); return err }, usererr.PermissionDenied, "ROLE_REQUIRED"},
		{"latest checkpoint before any", func() error { _, err := empty.svc.LatestCheckpoint(a); return err }, usererr.NotFound, "NO_CHECKPOINT"},
		{"inclusion of sequence 0", func() error { _, err := e.svc.InclusionProof(a, 0, 0); return err }, usererr.InvalidArgument, "INVALID_SEQUENCE"},
		{"inclusion beyond the tree", func() error { _, err := e.svc.InclusionProof(a, 31, 30); return err }, usererr.InvalidArgument, "INVALID_SEQUENCE"},
		{"inclusion in a tree beyond the log", func() error { _, err := e.svc.InclusionProof(a, 1, 31); return err }, usererr.OutOfRange, "BEYOND_LOG_END"},
		{"inclusion of a dropped record", func() error { _, err := e.svc.InclusionProof(a, 5, 30); return err }, usererr.FailedPrecondition, domain.ReasonRecordsPruned},
		{"inclusion before any checkpoint", func() error { _, err := empty.svc.InclusionProof(a, 1, 0); return err }, usererr.NotFound, "NO_CHECKPOINT"},
		{"consistency from 0", func() error { _, err := e.svc.ConsistencyProof(a, 0, 30); return err }, usererr.InvalidArgument, "INVALID_TREE_SIZE"},
		{"consistency inverted", func() error { _, err := e.svc.ConsistencyProof(a, 9, 5); return err }, usererr.InvalidArgument, "INVALID_TREE_SIZE"},
		{"consistency beyond the log", func() error { _, err := e.svc.ConsistencyProof(a, 1, 31); return err }, usererr.OutOfRange, "BEYOND_LOG_END"},
		{"consistency over dropped records", func() error { _, err := e.svc.ConsistencyProof(a, 5, 30); return err }, usererr.FailedPrecondition, domain.ReasonRecordsPruned},
		{"query as a service", func() error { _, err := e.svc.Query(as(ctx, service), domain.QueryRequest{}); return err }, usererr.PermissionDenied, "ROLE_REQUIRED"},
		{"query as an admin", func() error { _, err := e.svc.Query(as(ctx, admin), domain.QueryRequest{}); return err }, usererr.PermissionDenied, "ROLE_REQUIRED"},
		{"query with a negative page size", func() error { _, err := e.svc.Query(a, domain.QueryRequest{PageSize: -1}); return err }, usererr.InvalidArgument, "INVALID_PAGE_SIZE"},
		{"query with a malformed token", func() error { _, err := e.svc.Query(a, domain.QueryRequest{PageToken: "!!"}); return err }, usererr.InvalidArgument, "INVALID_PAGE_TOKEN"},
		{"query with an inverted time range", func() error {
			_, err := e.svc.Query(a, domain.QueryRequest{Filter: domain.Filter{Start: time.Now(), End: time.Now().Add(-time.Hour)}})
			return err
		}, usererr.InvalidArgument, "INVALID_TIME_RANGE"},
		{"query with an inverted sequence range", func() error {
			_, err := e.svc.Query(a, domain.QueryRequest{Filter: domain.Filter{FromSeq: 9, ToSeq: 2}})
			return err
		}, usererr.InvalidArgument, "INVALID_SEQUENCE_RANGE"},
		{"export without a format", func() error { _, err := e.svc.Export(a, domain.ExportRequest{}, 1024, discard); return err }, usererr.InvalidArgument, "EXPORT_FORMAT_REQUIRED"},
		{"export beyond the limit", func() error {
			_, err := e.svc.Export(a, domain.ExportRequest{Format: domain.ExportJSONL}, 1024, discard)
			return err
		}, usererr.ResourceExhausted, "EXPORT_TOO_LARGE"},
		{"export as a clinician", func() error {
			_, err := e.svc.Export(as(ctx, clinician), domain.ExportRequest{Format: domain.ExportJSONL}, 1024, discard)
			return err
		}, usererr.PermissionDenied, "ROLE_REQUIRED"},
		{"access report without a patient", func() error { _, err := e.svc.AccessReport(as(ctx, patient), domain.AccessReportRequest{}); return err }, usererr.InvalidArgument, "PATIENT_ID_REQUIRED"},
		{"access report with a negative page size", func() error {
			_, err := e.svc.AccessReport(as(ctx, patient), domain.AccessReportRequest{PatientID: "patient-2", PageSize: -1})
			return err
		}, usererr.InvalidArgument, "INVALID_PAGE_SIZE"},
		{"access report of another patient", func() error {
			_, err := e.svc.AccessReport(as(ctx, patient), domain.AccessReportRequest{PatientID: "patient-3"})
			return err
		}, usererr.PermissionDenied, "NOT_PATIENT_PROXY_OR_AUDITOR"},
		{"access report by an expired proxy", func() error {
			_, err := e.svc.AccessReport(as(ctx, proxyFor("patient-2", time.Now().Add(-time.Hour))), domain.AccessReportRequest{PatientID: "patient-2"})
			return err
		}, usererr.PermissionDenied, "NOT_PATIENT_PROXY_OR_AUDITOR"},
		{"access report by a clinician", func() error {
			_, err := e.svc.AccessReport(as(ctx, clinician), domain.AccessReportRequest{PatientID: "patient-2"})
			return err
		}, usererr.PermissionDenied, "NOT_PATIENT_PROXY_OR_AUDITOR"},
		{"access report without a principal", func() error {
			_, err := e.svc.AccessReport(ctx, domain.AccessReportRequest{PatientID: "patient-2"})
			return err
		}, usererr.PermissionDenied, "NO_PRINCIPAL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var ue *usererr.Error
			if !errors.As(err, &ue) {
				t.Fatalf("%s error = %v, want a usererr.Error", tt.name, err)
			}
			if ue.Kind != tt.kind || ue.ReasonOf() != tt.reason {
				t.Errorf("%s = kind %v reason %s (%q), want kind %v reason %s", tt.name, ue.Kind, ue.ReasonOf(), ue.Msg, tt.kind, tt.reason)
			}
			for _, id := range []string{"patient-2", "patient-3", "pat-7", "parent-1", "clin-1", "auditor-1"} {
				if strings.Contains(ue.Msg, id) {
					t.Errorf("%s message %q names %s", tt.name, ue.Msg, id)
				}
			}
		})
	}
}

func discard([]byte) error { return nil }

// TestIngestAndAlerts: ingest appends each event id once and raises each fired rule's alert,
// with the audit record of raising it, in the append's commit.
func TestIngestAndAlerts(t *testing.T) {
	t.Parallel()
	reads := func(actor string, n int) []domain.Incoming {
		var out []domain.Incoming
		for i := range n {
			out = append(out, repotest.Record(t, i, actor, fmt.Sprintf("patient-%d", i)))
		}
		return out
	}
	glass := func() domain.Incoming {
		in := repotest.Record(t, 100, "er-doc", "patient-1")
		in.Record.Action, in.Record.Severity = eventsv1.Action_ACTION_BREAK_GLASS, eventsv1.Severity_SEVERITY_HIGH
		b, _ := proto.Marshal(in.Record)
		out, err := domain.ParseIncoming(b)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}()
	// glasses is n break-the-glass reads by actor, a second apart.
	glasses := func(actor string, n int) []domain.Incoming {
		var out []domain.Incoming
		for i := range n {
			rec := repotest.RecordProto(200+i, actor, "patient-1")
			rec.Action, rec.Severity = eventsv1.Action_ACTION_BREAK_GLASS, eventsv1.Severity_SEVERITY_HIGH
			b, _ := proto.Marshal(rec)
			in, err := domain.ParseIncoming(b)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, in)
		}
		return out
	}
	// nightReads is n reads of one patient from 23:53 London time (repotest.Base is 10:00).
	nightReads := func(actor string, n int) []domain.Incoming {
		var out []domain.Incoming
		for i := range n {
			out = append(out, repotest.Record(t, 50000+i, actor, "patient-1"))
		}
		return out
	}
	tests := []struct {
		name         string
		batches      [][]domain.Incoming
		wantAppended int
		wantRules    []string // in the order raised
	}{
		{"few reads raise nothing", [][]domain.Incoming{reads("a", 5)}, 5, nil},
		{"a redelivered batch is appended once", [][]domain.Incoming{reads("a", 5), reads("a", 5)}, 5, nil},
		{"a bulk read fires once", [][]domain.Incoming{reads("snoop", 8)}, 8, []string{domain.RuleBulkRead}},
		{"a bulk read across batches", [][]domain.Incoming{reads("snoop", 4), reads("snoop", 8)}, 8, []string{domain.RuleBulkRead}},
		{"break-the-glass always fires", [][]domain.Incoming{{glass}}, 1, []string{domain.RuleBreakGlass}},
		{"frequent break-the-glass fires once more", [][]domain.Incoming{glasses("er-doc", 5)}, 5, []string{domain.RuleBreakGlass,
			domain.RuleBreakGlass, domain.RuleBreakGlass, domain.RuleBreakGlass, domain.RuleBreakGlassFrequency, domain.RuleBreakGlass}},
		{"night reads fire off_hours once", [][]domain.Incoming{nightReads("night-owl", 15), nightReads("night-owl", 25)}, 25,
			[]string{domain.RuleOffHours}},
		{"a record of interest fires once per actor", [][]domain.Incoming{
			{repotest.Record(t, 300, "nosy", "patient-vip"), repotest.Record(t, 301, "nosy", "patient-vip"), repotest.Record(t, 302, "other", "patient-vip")}},
			3, []string{domain.RuleRecordOfInterest, domain.RuleRecordOfInterest}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rules := domain.DefaultAnomalyRules()
			rules.BulkRead.MaxPatients = 5
			rules.OffHours.Enabled, rules.OffHours.TimeZone = true, "Europe/London"
			rules.RecordOfInterest.PatientIDs = []string{"patient-vip"}
			e := newEnv(t, app.Config{Rules: &rules})
			appended := 0
			for _, b := range tt.batches {
				appended += len(e.ingest(t, b...))
			}
			if appended != tt.wantAppended {
				t.Errorf("Ingest() appended %d entries, want %d", appended, tt.wantAppended)
			}
			var rulesFired []string
			records := map[string]*eventsv1.AuditRecord{}
			for _, r := range e.auditRecords(t) {
				records[r.GetRecordId()] = r
			}
			for _, ev := range e.store.Events() {
				if ev.Subject != "securemsg.events.anomaly.raised" {
					continue
				}
				alert := &eventsv1.AnomalyAlert{}
				if err := proto.Unmarshal(ev.Payload, alert); err != nil {
					t.Fatal(err)
				}
				rulesFired = append(rulesFired, alert.GetRuleId())
				if alert.GetMeta().GetEventId() != ev.ID || alert.GetMeta().GetProducer() != commonv1.Component_COMPONENT_AUDIT {
					t.Errorf("alert meta = %v, want event id %s from the audit service", alert.GetMeta(), ev.ID)
				}
				rec := records[ev.ID]
				if rec.GetAction() != eventsv1.Action_ACTION_ALERT_SENT || rec.GetReasonCode() != "anomaly:"+alert.GetRuleId() ||
					rec.GetSeverity() != eventsv1.Severity_SEVERITY_HIGH || rec.GetActor().GetRole() != commonv1.Role_ROLE_SERVICE ||
					rec.GetOperation() != "anomaly-detector" || rec.GetRecordType() != eventsv1.RecordType_RECORD_TYPE_AUDIT_LOG {
					t.Errorf("audit record of alert %s = %v, want ALERT_SENT by the service, reason anomaly:%s, HIGH", ev.ID, rec, alert.GetRuleId())
				}
			}
			if fmt.Sprint(rulesFired) != fmt.Sprint(tt.wantRules) {
				t.Errorf("rules fired = %v, want %v", rulesFired, tt.wantRules)
			}
		})
	}
}

// TestReadsOfTheLogAreRecordedFirst: every query, export and access report writes its audit
// record before it reads, with the purpose of use of who asked; when the record cannot be
// written the request is refused and nothing is read (fail closed).
func TestReadsOfTheLogAreRecordedFirst(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		who         *auth.Principal
		call        func(ctx context.Context, svc *app.Service) (int, error) // entries returned
		wantAction  eventsv1.Action
		wantReason  string
		wantPatient string
		wantPurpose commonv1.PurposeOfUse
		wantRole    commonv1.Role
	}{
		{"auditor query", auditor, func(ctx context.Context, svc *app.Service) (int, error) {
			p, err := svc.Query(ctx, domain.QueryRequest{Filter: domain.Filter{PatientID: "patient-2"}})
			return len(p.Entries), err
		}, eventsv1.Action_ACTION_QUERY, "audit_query", "patient-2", commonv1.PurposeOfUse_PURPOSE_OF_USE_LEGAL, commonv1.Role_ROLE_AUDITOR},
		{"auditor export", auditor, func(ctx context.Context, svc *app.Service) (int, error) {
			n := 0
			_, err := svc.Export(ctx, domain.ExportRequest{Format: domain.ExportFHIRAuditEvent}, 64, func([]byte) error { n++; return nil })
			return n, err
		}, eventsv1.Action_ACTION_EXPORT, "audit_export", "", commonv1.PurposeOfUse_PURPOSE_OF_USE_LEGAL, commonv1.Role_ROLE_AUDITOR},
		{"patient's own report", patient, func(ctx context.Context, svc *app.Service) (int, error) {
			p, err := svc.AccessReport(ctx, domain.AccessReportRequest{PatientID: "patient-2"})
			return len(p.Entries), err
		}, eventsv1.Action_ACTION_QUERY, "access_report", "patient-2", commonv1.PurposeOfUse_PURPOSE_OF_USE_PATIENT_REQUEST, commonv1.Role_ROLE_PATIENT},
		{"proxy's report", proxyFor("patient-2", time.Now().Add(time.Hour)), func(ctx context.Context, svc *app.Service) (int, error) {
			p, err := svc.AccessReport(ctx, domain.AccessReportRequest{PatientID: "patient-2"})
			return len(p.Entries), err
		}, eventsv1.Action_ACTION_QUERY, "access_report", "patient-2", commonv1.PurposeOfUse_PURPOSE_OF_USE_PATIENT_REQUEST, commonv1.Role_ROLE_PROXY},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, app.Config{})
			e.ingest(t, repotest.Records(t, 0, 10)...)
			n, err := tt.call(as(t.Context(), tt.who), e.svc)
			if err != nil || n == 0 {
				t.Fatalf("%s = %d entries, %v; want some", tt.name, n, err)
			}
			recs := e.auditRecords(t)
			if len(recs) != 1 {
				t.Fatalf("%s wrote %d audit records, want 1", tt.name, len(recs))
			}
			r := recs[0]
			if r.GetAction() != tt.wantAction || r.GetReasonCode() != tt.wantReason || r.GetPatientId() != tt.wantPatient ||
				r.GetPurposeOfUse() != tt.wantPurpose || r.GetActor().GetRole() != tt.wantRole || r.GetActor().GetSubject() != tt.who.Subject ||
				r.GetRecordType() != eventsv1.RecordType_RECORD_TYPE_AUDIT_LOG || r.GetOutcome() != eventsv1.Outcome_OUTCOME_SUCCESS {
				t.Errorf("%s recorded %v, want %v %s of %q by %s (%v) for %v", tt.name, r, tt.wantAction, tt.wantReason, tt.wantPatient,
					tt.who.Subject, tt.wantRole, tt.wantPurpose)
			}

			// The same request when the audit record cannot be written: refused, nothing read.
			closed := newService(t, app.Config{}, e.store, failingOutbox{}, e.signer)
			if n, err := tt.call(as(t.Context(), tt.who), closed); err == nil || n != 0 {
				t.Errorf("%s with the outbox down = %d entries, %v; want a refusal and nothing read", tt.name, n, err)
			}
		})
	}
}

type failingOutbox struct{}

func (failingOutbox) WriteEvents(context.Context, ...outbox.Event) error {
	return errors.New("outbox unavailable")
}

// TestPageTokens: pages cover a query exactly once in either order, and a token only works for
// the request (and, for access reports, the caller) it was issued to.
func TestPageTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, app.Config{})
	e.ingest(t, repotest.Records(t, 0, 25)...)
	ctx := as(t.Context(), auditor)
	for _, newest := range []bool{false, true} {
		var got []uint64
		token := ""
		for range 10 {
			page, err := e.svc.Query(ctx, domain.QueryRequest{PageSize: 7, PageToken: token, NewestFirst: newest})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range page.Entries {
				got = append(got, r.Sequence)
			}
			if token = page.NextPageToken; token == "" {
				break
			}
		}
		if len(got) != 25 || (got[0] == 1) == newest {
			t.Errorf("Query(newest first %v) pages = %v, want all 25 once in order", newest, got)
		}
	}
	first, err := e.svc.Query(ctx, domain.QueryRequest{PageSize: 2, Filter: domain.Filter{ActorSubject: "clin-1"}})
	if err != nil || first.NextPageToken == "" {
		t.Fatalf("Query() = %v, %v; want a next page", first, err)
	}
	refused := []domain.QueryRequest{
		{PageToken: first.NextPageToken, Filter: domain.Filter{ActorSubject: "clin-2"}},
		{PageToken: first.NextPageToken, Filter: domain.Filter{ActorSubject: "clin-1"}, NewestFirst: true},
	}
	for _, req := range refused {
		if _, err := e.svc.Query(ctx, req); !errors.Is(err, usererr.ErrInvalidArgument) {
			t.Errorf("Query(%+v with another request's token) error = %v, want InvalidArgument", req.Filter, err)
		}
	}
	report, err := e.svc.AccessReport(as(t.Context(), patient), domain.AccessReportRequest{PatientID: "patient-2", PageSize: 1})
	if err != nil || report.NextPageToken == "" {
		t.Fatalf("AccessReport() = %v, %v; want a next page", report, err)
	}
	if _, err := e.svc.AccessReport(ctx, domain.AccessReportRequest{PatientID: "patient-2", PageSize: 1, PageToken: report.NextPageToken}); !errors.Is(err, usererr.ErrInvalidArgument) {
		t.Errorf("AccessReport(the patient's token, as an auditor) error = %v, want InvalidArgument", err)
	}
}

// TestCheckpointsAndVerification: checkpoints are signed when the log grew, verification
// reaches them, and a checkpoint whose key is not trusted fails verification at its size.
func TestCheckpointsAndVerification(t *testing.T) {
	t.Parallel()
	e := newEnv(t, app.Config{})
	ctx := as(t.Context(), auditor)
	if _, err := e.svc.Checkpoint(ctx, false); !errors.Is(err, domain.ErrNoCheckpoint) {
		t.Errorf("Checkpoint() of an empty log error = %v, want ErrNoCheckpoint", err)
	}
	e.ingest(t, repotest.Records(t, 0, 10)...)
	cp, err := e.svc.Checkpoint(ctx, false)
	if err != nil || cp.TreeSize != 10 || cp.KeyID != e.signer.KeyID() {
		t.Fatalf("Checkpoint() = %+v, %v; want size 10 signed by the service's key", cp, err)
	}
	if again, err := e.svc.Checkpoint(ctx, true); err != nil || again.TreeSize != 10 || string(again.Signature) != string(cp.Signature) {
		t.Errorf("Checkpoint(force) without growth = %+v, %v; want the same checkpoint", again, err)
	}
	e.ingest(t, repotest.Records(t, 10, 5)...)
	tests := []struct {
		name        string
		svc         *app.Service
		wantOK      bool
		wantFailure domain.VerifyFailure
		wantCount   uint64
	}{
		{"the signer's own key", e.svc, true, domain.VerifyOK, 15},
		{"a new key that trusts the old one", e.restart(t, newSigner(t), app.Config{TrustedKeys: []ed25519.PublicKey{e.signer.Public()}}), true, domain.VerifyOK, 15},
		{"a new key alone", e.restart(t, newSigner(t), app.Config{}), false, domain.VerifyCheckpointSignatureInvalid, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := tt.svc.VerifyRange(ctx, 1, 0)
			if err != nil || v.Ok != tt.wantOK || v.Failure != tt.wantFailure || v.VerifiedCount != tt.wantCount || v.ToSequence != 15 {
				t.Fatalf("VerifyRange(1, end) = %+v, %v; want ok %v failure %v over %d to 15", v, err, tt.wantOK, tt.wantFailure, tt.wantCount)
			}
			if !tt.wantOK && v.FirstFailingSequence != 10 {
				t.Errorf("VerifyRange(1, end) fails at %d, want at the checkpoint of 10", v.FirstFailingSequence)
			}
			if tt.wantOK && (v.Checkpoint == nil || v.Checkpoint.TreeSize != 10) {
				t.Errorf("VerifyRange(1, end) reached checkpoint %+v, want size 10", v.Checkpoint)
			}
		})
	}
}

// TestReconcile: the mark moves up to the first record the log lacks; a busy consumer means
// nothing is called missing yet.
func TestReconcile(t *testing.T) {
	t.Parallel()
	held := repotest.Records(t, 0, 3) // evt-clin-0-0, evt-clin-1-1, evt-clin-2-2
	entries := func(ids ...string) []auditlog.ReconcileEntry {
		var out []auditlog.ReconcileEntry
		for i, id := range ids {
			out = append(out, auditlog.ReconcileEntry{Seq: int64(i + 1), ID: id})
		}
		return out
	}
	tests := []struct {
		name        string
		mark        int64
		entries     []auditlog.ReconcileEntry
		idle        bool
		wantMark    int64
		wantMissing []string
		wantBusy    bool
	}{
		{"nothing to check", 2, nil, true, 2, nil, false},
		{"all held", 0, entries(held[0].EventID, held[1].EventID, held[2].EventID), true, 3, nil, false},
		{"a gap stops the mark", 0, entries(held[0].EventID, "lost-1", held[2].EventID), true, 1, []string{"lost-1"}, false},
		{"the mark never falls", 5, entries(held[0].EventID), true, 5, nil, false},
		{"busy consumer", 0, entries("lost-1"), false, 0, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, app.Config{})
			e.ingest(t, held...)
			if err := e.store.SetReconcileMark(t.Context(), "messaging", tt.mark); err != nil {
				t.Fatal(err)
			}
			rep := e.svc.Reconcile(t.Context(), auditlog.ReconcileRequest{Producer: "messaging", Entries: tt.entries}, tt.idle)
			if rep.Mark != tt.wantMark || !slices.Equal(rep.Missing, tt.wantMissing) || rep.Busy != tt.wantBusy || rep.Error != "" {
				t.Errorf("Reconcile() = %+v, want mark %d missing %v busy %v", rep, tt.wantMark, tt.wantMissing, tt.wantBusy)
			}
			if mark, _ := e.store.ReconcileMark(t.Context(), "messaging"); mark != tt.wantMark {
				t.Errorf("mark after Reconcile() = %d, want %d", mark, tt.wantMark)
			}
		})
	}
}

// TestAlertAboutYourselfIsForAnotherAuditor: an auditor's own break-the-glass read raises an
// alert that they may list but not acknowledge; another auditor may.
func TestAlertAboutYourselfIsForAnotherAuditor(t *testing.T) {
	t.Parallel()
	e := newEnv(t, app.Config{})
	in := repotest.Record(t, 1, auditor.Subject, "patient-1")
	in.Record.Action, in.Record.Severity = eventsv1.Action_ACTION_BREAK_GLASS, eventsv1.Severity_SEVERITY_HIGH
	b, _ := proto.Marshal(in.Record)
	glass, err := domain.ParseIncoming(b)
	if err != nil {
		t.Fatal(err)
	}
	e.ingest(t, glass)
	own := auth.WithPrincipal(t.Context(), auditor)
	page, err := e.svc.ListAlerts(own, domain.AlertFilter{OpenOnly: true}, 0, "")
	if err != nil || len(page.Alerts) != 1 {
		t.Fatalf("ListAlerts() = %v, %v; want the one break_glass alert", page.Alerts, err)
	}
	id := page.Alerts[0].ID
	if _, err := e.svc.AcknowledgeAlert(own, id, "it was me"); !hasReason(err, "OWN_ALERT") {
		t.Errorf("AcknowledgeAlert(own alert) = %v, want OWN_ALERT", err)
	}
	other := auth.WithPrincipal(t.Context(), &auth.Principal{Kind: auth.KindUser, Subject: "auditor-2", Roles: []auth.Role{auth.RoleAuditor}})
	if a, err := e.svc.AcknowledgeAlert(other, id, "confirmed with auditor-1's manager"); err != nil || a.AcknowledgedBy != "auditor-2" {
		t.Errorf("AcknowledgeAlert by another auditor = %+v, %v; want acknowledged by auditor-2", a, err)
	}
}

func hasReason(err error, reason string) bool {
	var e *usererr.Error
	return errors.As(err, &e) && e.Reason == reason
}

package wire_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"google.golang.org/protobuf/proto"

	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/audit/internal/app"
	"github.com/securemsg/securemsg/services/audit/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog/tlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

func TestIngestIsIdempotentAndChained(t *testing.T) {
	t.Parallel()
	f := newFixture(t, app.Config{})
	ctx := t.Context()
	f.fill(t, 0, 300)
	// Redelivery: the same 50 records again, plus a duplicate inside one batch.
	var again []*eventsv1.AuditRecord
	for i := 100; i < 150; i++ {
		again = append(again, rec(i, fmt.Sprintf("clin-%d", i%3), fmt.Sprintf("patient-%d", i%5)))
	}
	again = append(again, again[0])
	appended, err := f.svc.Ingest(ctx, f.incoming(t, again...))
	if err != nil || len(appended) != 0 {
		t.Fatalf("Ingest(duplicates) = %d appended, %v; want 0, nil", len(appended), err)
	}
	head, err := f.store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var rows int
	_ = f.pool.QueryRow(ctx, "SELECT count(*) FROM entries").Scan(&rows)
	if head.Size != 300 || rows != 300 {
		t.Fatalf("head size %d, %d rows; want 300, 300", head.Size, rows)
	}
	// The persisted tree state, the tree rebuilt from stored nodes and a fresh tree over the
	// leaves all agree.
	fresh := tlog.NewTree()
	var seqs []uint64
	if err := f.store.Range(ctx, 1, 300, func(e domain.Entry) error {
		fresh.Append(e.Leaf, nil)
		seqs = append(seqs, e.Sequence)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	stored, err := f.store.NodeHashes(ctx, tlog.CompactNodes(300))
	if err != nil {
		t.Fatal(err)
	}
	rebuilt, err := tlog.TreeFromState(300, stored)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(head.Tree.Root(), fresh.Root()) || !bytes.Equal(rebuilt.Root(), fresh.Root()) {
		t.Errorf("roots differ: head %x, rebuilt %x, fresh %x", head.Tree.Root(), rebuilt.Root(), fresh.Root())
	}
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("sequence at %d = %d, want %d", i, s, i+1)
		}
	}
	res, err := f.svc.Verify(ctx, 1, 0)
	if err != nil || !res.Ok || res.VerifiedCount != 300 {
		t.Fatalf("Verify(1, 0) = %v, %v; want ok over 300", res, err)
	}
	// Append-only: the trigger refuses updates and deletes.
	if _, err := f.pool.Exec(ctx, "UPDATE entries SET patient_id = 'x' WHERE sequence = 1"); err == nil {
		t.Error("UPDATE entries succeeded, want the append-only trigger to refuse it")
	}
	if _, err := f.pool.Exec(ctx, "DELETE FROM entries WHERE sequence = 1"); err == nil {
		t.Error("DELETE FROM entries succeeded, want refusal")
	}
}

func TestProofsVerify(t *testing.T) {
	t.Parallel()
	f := newFixture(t, app.Config{})
	ctx := auditorCtx(t.Context())
	f.fill(t, 0, 300)
	cp1, err := f.checkpoint(t, ctx)
	if err != nil || cp1.TreeSize != 300 {
		t.Fatalf("Checkpoint() = %v, %v", cp1, err)
	}
	f.fill(t, 300, 333) // crosses stored-node boundaries (levels 8 and up)
	cp2, err := f.checkpoint(t, ctx)
	if err != nil || cp2.TreeSize != 633 {
		t.Fatalf("Checkpoint() = %v, %v", cp2, err)
	}
	for _, cp := range []*auditv1.Checkpoint{cp1, cp2} {
		if err := tlog.VerifyCheckpoint(cp, f.pub); err != nil {
			t.Fatalf("VerifyCheckpoint(%d) error = %v", cp.TreeSize, err)
		}
	}
	for _, seq := range []uint64{1, 2, 255, 256, 257, 300, 512, 600, 633} {
		p, err := f.api.GetInclusionProof(ctx, &auditv1.GetInclusionProofRequest{Sequence: seq})
		if err != nil {
			t.Fatalf("InclusionProof(%d) error = %v", seq, err)
		}
		if err := proof.VerifyInclusion(tlog.Hasher, p.LeafIndex, p.TreeSize, p.LeafHash, p.Hashes, cp2.RootHash); err != nil {
			t.Errorf("VerifyInclusion(seq %d, size %d) error = %v", seq, p.TreeSize, err)
		}
	}
	p, err := f.api.GetInclusionProof(ctx, &auditv1.GetInclusionProofRequest{Sequence: 17, TreeSize: 300})
	if err != nil || proof.VerifyInclusion(tlog.Hasher, 16, 300, p.LeafHash, p.Hashes, cp1.RootHash) != nil {
		t.Errorf("InclusionProof(17, 300) does not verify against checkpoint 300: %v", err)
	}
	c, err := f.api.GetConsistencyProof(ctx, &auditv1.GetConsistencyProofRequest{FirstSize: 300})
	if err != nil {
		t.Fatalf("ConsistencyProof() error = %v", err)
	}
	if err := proof.VerifyConsistency(tlog.Hasher, 300, 633, c.Hashes, cp1.RootHash, cp2.RootHash); err != nil {
		t.Errorf("VerifyConsistency(300, 633) error = %v", err)
	}
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"sequence 0", func() error {
			_, err := f.api.GetInclusionProof(ctx, &auditv1.GetInclusionProofRequest{Sequence: 0})
			return err
		}, usererr.ErrInvalidArgument},
		{"beyond log", func() error {
			_, err := f.api.GetInclusionProof(ctx, &auditv1.GetInclusionProofRequest{Sequence: 1, TreeSize: 10000})
			return err
		}, usererr.ErrOutOfRange},
		{"first 0", func() error {
			_, err := f.api.GetConsistencyProof(ctx, &auditv1.GetConsistencyProofRequest{FirstSize: 0, SecondSize: 5})
			return err
		}, usererr.ErrInvalidArgument},
		{"first > second", func() error {
			_, err := f.api.GetConsistencyProof(ctx, &auditv1.GetConsistencyProofRequest{FirstSize: 9, SecondSize: 5})
			return err
		}, usererr.ErrInvalidArgument},
		{"second beyond log", func() error {
			_, err := f.api.GetConsistencyProof(ctx, &auditv1.GetConsistencyProofRequest{FirstSize: 1, SecondSize: 9999})
			return err
		}, usererr.ErrOutOfRange},
		{"patient may not", func() error {
			patient := auth.WithPrincipal(t.Context(), &auth.Principal{Subject: "p", Roles: []auth.Role{auth.RolePatient}})
			_, err := f.api.GetInclusionProof(patient, &auditv1.GetInclusionProofRequest{Sequence: 1})
			return err
		}, usererr.ErrPermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, tt.want) {
				t.Errorf("%s error = %v, want %v", tt.name, err, tt.want)
			}
		})
	}
}

func TestVerifyRangeDetectsDatabaseTampering(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		tamper  func(t *testing.T, f *fixture)
		failure auditv1.VerifyFailure
		seq     uint64
	}{
		{"record edited", func(t *testing.T, f *fixture) {
			f.superuserExec(t, "UPDATE entries SET record_bytes = record_bytes || '\\x00'::bytea WHERE sequence = 40")
		}, auditv1.VerifyFailure_VERIFY_FAILURE_RECORD_UNDECODABLE, 40},
		{"record replaced with valid bytes", func(t *testing.T, f *fixture) {
			other := f.incoming(t, rec(9999, "clin-evil", "patient-x"))[0]
			f.superuserExec(t, "UPDATE entries SET record_bytes = $1 WHERE sequence = 41", other.Bytes)
		}, auditv1.VerifyFailure_VERIFY_FAILURE_LEAF_HASH_MISMATCH, 41},
		{"indexed column edited", func(t *testing.T, f *fixture) {
			f.superuserExec(t, "UPDATE entries SET patient_id = 'patient-hidden' WHERE sequence = 42")
		}, auditv1.VerifyFailure_VERIFY_FAILURE_LEAF_HASH_MISMATCH, 42},
		{"record removed", func(t *testing.T, f *fixture) {
			f.superuserExec(t, "DELETE FROM entries WHERE sequence = 50")
		}, auditv1.VerifyFailure_VERIFY_FAILURE_SEQUENCE_GAP, 50},
		{"removed and renumbered", func(t *testing.T, f *fixture) {
			f.superuserExec(t, "DELETE FROM entries WHERE sequence = 50")
			f.superuserExec(t, "UPDATE entries SET sequence = sequence - 1 WHERE sequence > 50")
		}, auditv1.VerifyFailure_VERIFY_FAILURE_CHAIN_BROKEN, 50},
		{"reordered", func(t *testing.T, f *fixture) {
			f.superuserExec(t, "UPDATE entries SET sequence = CASE sequence WHEN 60 THEN 61 ELSE 60 END WHERE sequence IN (60, 61)")
		}, auditv1.VerifyFailure_VERIFY_FAILURE_CHAIN_BROKEN, 60},
		{"edited and rehashed to the end", func(t *testing.T, f *fixture) {
			// A careful forger recomputes the leaf and every chain hash after it.
			other := f.incoming(t, rec(8888, "clin-evil", "patient-x"))[0]
			ctx := t.Context()
			var prev []byte
			_ = f.pool.QueryRow(ctx, "SELECT chain_hash FROM entries WHERE sequence = 69").Scan(&prev)
			f.superuserExec(t, "UPDATE entries SET record_bytes = $1, event_id = $2, actor_subject = 'clin-evil', patient_id = 'patient-x', record_id = 'thread-8888', occurred_at = $3 WHERE sequence = 70",
				other.Bytes, other.EventID, other.Record.Meta.OccurredAt.AsTime())
			for seq := 70; seq <= 120; seq++ {
				var b []byte
				_ = f.pool.QueryRow(ctx, "SELECT record_bytes FROM entries WHERE sequence = $1", seq).Scan(&b)
				leaf := tlog.LeafHash(b)
				chain := tlog.ChainHash(prev, leaf)
				f.superuserExec(t, "UPDATE entries SET leaf_hash = $1, prev_chain_hash = $2, chain_hash = $3 WHERE sequence = $4", leaf, prev, chain, seq)
				prev = chain
			}
		}, auditv1.VerifyFailure_VERIFY_FAILURE_CHECKPOINT_ROOT_MISMATCH, 61},
		{"checkpoint forged", func(t *testing.T, f *fixture) {
			f.superuserExec(t, "UPDATE checkpoints SET root_hash = $1 WHERE tree_size = 120", tlog.LeafHash([]byte("forged")))
		}, auditv1.VerifyFailure_VERIFY_FAILURE_CHECKPOINT_SIGNATURE_INVALID, 120},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, app.Config{})
			ctx := auditorCtx(t.Context())
			f.fill(t, 0, 60)
			if _, err := f.checkpoint(t, ctx); err != nil {
				t.Fatal(err)
			}
			f.fill(t, 60, 60)
			if _, err := f.checkpoint(t, ctx); err != nil {
				t.Fatal(err)
			}
			tt.tamper(t, f)
			res, err := f.api.VerifyRange(ctx, &auditv1.VerifyRangeRequest{FromSequence: 1})
			if err != nil {
				t.Fatalf("VerifyRange() error = %v", err)
			}
			if res.Ok || res.Failure != tt.failure || res.FirstFailingSequence != tt.seq {
				t.Errorf("VerifyRange() = ok %v %v at %d (%s), want %v at %d", res.Ok, res.Failure, res.FirstFailingSequence, res.Detail, tt.failure, tt.seq)
			}
			// A range after the damage still verifies (from a tree rebuilt from stored nodes).
			if tt.seq < 100 && tt.failure != auditv1.VerifyFailure_VERIFY_FAILURE_CHECKPOINT_ROOT_MISMATCH &&
				tt.failure != auditv1.VerifyFailure_VERIFY_FAILURE_CHECKPOINT_SIGNATURE_INVALID && tt.name != "removed and renumbered" {
				if r2, err := f.svc.Verify(ctx, 100, 110); err != nil || !r2.Ok {
					t.Errorf("Verify(100, 110) after damage at %d = %v, %v; want ok", tt.seq, r2, err)
				}
			}
		})
	}
}

func TestQueryFiltersPaginationAndAuditing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, app.Config{})
	ctx := auditorCtx(t.Context())
	f.fill(t, 0, 150) // actors clin-0..2 (i%3), patients patient-0..4 (i%5)
	denied := rec(1000, "proxy-9", "patient-1")
	denied.Action, denied.Outcome, denied.ReasonCode = eventsv1.Action_ACTION_DENY, eventsv1.Outcome_OUTCOME_DENIED, "no_grant"
	if _, err := f.svc.Ingest(ctx, f.incoming(t, denied)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		filter *auditv1.AuditEventFilter
		want   int
	}{
		{"all", &auditv1.AuditEventFilter{}, 151},
		{"actor", &auditv1.AuditEventFilter{ActorSubject: "clin-1"}, 50},
		{"patient", &auditv1.AuditEventFilter{PatientId: "patient-2"}, 30},
		{"actor and patient", &auditv1.AuditEventFilter{ActorSubject: "clin-0", PatientId: "patient-0"}, 10},
		{"record", &auditv1.AuditEventFilter{RecordType: eventsv1.RecordType_RECORD_TYPE_THREAD, RecordId: "thread-7"}, 1},
		{"action deny", &auditv1.AuditEventFilter{Actions: []eventsv1.Action{eventsv1.Action_ACTION_DENY}}, 1},
		{"outcome success", &auditv1.AuditEventFilter{Outcomes: []eventsv1.Outcome{eventsv1.Outcome_OUTCOME_SUCCESS}}, 150},
		{"time range", &auditv1.AuditEventFilter{StartTime: tsAt(10), EndTime: tsAt(20)}, 10},
		{"sequence range", &auditv1.AuditEventFilter{FromSequence: 5, ToSequence: 14}, 10},
		{"severity", &auditv1.AuditEventFilter{MinSeverity: eventsv1.Severity_SEVERITY_MEDIUM}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, newest := range []bool{false, true} {
				var got []uint64
				token := ""
				for pages := 0; pages < 100; pages++ {
					resp, err := f.api.QueryAuditEvents(ctx, &auditv1.QueryAuditEventsRequest{Filter: tt.filter, PageSize: 7, PageToken: token, NewestFirst: newest})
					if err != nil {
						t.Fatalf("Query() error = %v", err)
					}
					for _, e := range resp.Entries {
						got = append(got, e.Sequence)
					}
					if token = resp.NextPageToken; token == "" {
						break
					}
				}
				if len(got) != tt.want {
					t.Errorf("Query(%s, newest %v) = %d entries, want %d", tt.name, newest, len(got), tt.want)
				}
				for i := 1; i < len(got); i++ {
					if (got[i] <= got[i-1]) != newest {
						t.Fatalf("Query(%s, newest %v) out of order at %d: %v", tt.name, newest, i, got[i-1:i+1])
					}
				}
			}
		})
	}
	bad := []struct {
		name string
		req  *auditv1.QueryAuditEventsRequest
	}{
		{"negative size", &auditv1.QueryAuditEventsRequest{PageSize: -1}},
		{"malformed token", &auditv1.QueryAuditEventsRequest{PageToken: "!!"}},
		{"inverted time", &auditv1.QueryAuditEventsRequest{Filter: &auditv1.AuditEventFilter{StartTime: tsAt(20), EndTime: tsAt(10)}}},
		{"inverted sequence", &auditv1.QueryAuditEventsRequest{Filter: &auditv1.AuditEventFilter{FromSequence: 9, ToSequence: 2}}},
	}
	for _, tt := range bad {
		if _, err := f.api.QueryAuditEvents(ctx, tt.req); !errors.Is(err, usererr.ErrInvalidArgument) {
			t.Errorf("Query(%s) error = %v, want ErrInvalidArgument", tt.name, err)
		}
	}
	// A token from one filter is refused for another.
	resp, _ := f.api.QueryAuditEvents(ctx, &auditv1.QueryAuditEventsRequest{Filter: &auditv1.AuditEventFilter{ActorSubject: "clin-1"}, PageSize: 2})
	if _, err := f.api.QueryAuditEvents(ctx, &auditv1.QueryAuditEventsRequest{Filter: &auditv1.AuditEventFilter{ActorSubject: "clin-2"}, PageToken: resp.NextPageToken}); !errors.Is(err, usererr.ErrInvalidArgument) {
		t.Errorf("Query(token of another filter) error = %v, want ErrInvalidArgument", err)
	}
	// Non-auditors are refused; every query was itself audited through the outbox.
	if _, err := f.api.QueryAuditEvents(auth.WithPrincipal(t.Context(), &auth.Principal{Subject: "c", Roles: []auth.Role{auth.RoleClinician}}), &auditv1.QueryAuditEventsRequest{}); !errors.Is(err, usererr.ErrPermissionDenied) {
		t.Errorf("Query(clinician) error = %v, want ErrPermissionDenied", err)
	}
	var audited int
	if err := f.pool.QueryRow(t.Context(), "SELECT count(*) FROM outbox WHERE subject = 'securemsg.audit.audit'").Scan(&audited); err != nil || audited < len(tests) {
		t.Errorf("audit records of queries in the outbox = %d (%v), want at least %d", audited, err, len(tests))
	}
}

func TestExportFormats(t *testing.T) {
	t.Parallel()
	f := newFixture(t, app.Config{})
	ctx := auditorCtx(t.Context())
	f.fill(t, 0, 120)
	if _, err := f.checkpoint(t, ctx); err != nil {
		t.Fatal(err)
	}
	jsonl, sum, err := export(ctx, f.api, &auditv1.ExportAuditEventsRequest{Format: auditv1.ExportFormat_EXPORT_FORMAT_JSONL})
	if err != nil {
		t.Fatalf("Export(JSONL) error = %v", err)
	}
	if sum.RecordCount != 120 || sum.FirstSequence != 1 || sum.LastSequence != 120 || sum.Checkpoint.GetTreeSize() != 120 {
		t.Errorf("summary = %v, want 120 records 1..120 with checkpoint 120", sum)
	}
	res, err := tlog.VerifyExport(bytes.NewReader(jsonl), f.pub, sum.Checkpoint)
	if err != nil || !res.Ok {
		t.Fatalf("VerifyExport(export) = %v, %v; want ok", res, err)
	}
	// The same export, edited in the file, fails offline at the edited sequence.
	lines := strings.Split(strings.TrimSuffix(string(jsonl), "\n"), "\n")
	lines[33] = strings.Replace(lines[33], "patient-", "patient-9", 1)
	res, _ = tlog.VerifyExport(strings.NewReader(strings.Join(lines, "\n")), f.pub, sum.Checkpoint)
	if res.Ok || res.FirstFailingSequence != 34 {
		t.Errorf("VerifyExport(edited line 34) = ok %v at %d, want failure at 34", res.Ok, res.FirstFailingSequence)
	}

	fhir, _, err := export(ctx, f.api, &auditv1.ExportAuditEventsRequest{Format: auditv1.ExportFormat_EXPORT_FORMAT_FHIR_AUDIT_EVENT,
		Filter: &auditv1.AuditEventFilter{FromSequence: 1, ToSequence: 3}})
	if err != nil {
		t.Fatalf("Export(FHIR) error = %v", err)
	}
	fl := strings.Split(strings.TrimSpace(string(fhir)), "\n")
	if len(fl) != 3 {
		t.Fatalf("FHIR export has %d lines, want 3", len(fl))
	}
	var ev map[string]any
	if err := json.Unmarshal([]byte(fl[0]), &ev); err != nil {
		t.Fatal(err)
	}
	agent := ev["agent"].([]any)[0].(map[string]any)
	checks := map[string]bool{
		"resourceType": ev["resourceType"] == "AuditEvent",
		"action R":     ev["action"] == "R",
		"outcome 0":    ev["outcome"] == "0",
		"recorded":     ev["recorded"] == base.Format(time.RFC3339Nano),
		"requestor":    agent["requestor"] == true,
		"network":      agent["network"].(map[string]any)["address"] == "10.1.2.3",
		"who":          agent["who"].(map[string]any)["identifier"].(map[string]any)["value"] == "clin-0",
		"entities":     len(ev["entity"].([]any)) == 2,
		"purpose":      strings.Contains(fl[0], `"TREAT"`),
	}
	for name, ok := range checks {
		if !ok {
			t.Errorf("FHIR AuditEvent check %q failed: %s", name, fl[0])
		}
	}
	if _, _, err := export(ctx, f.api, &auditv1.ExportAuditEventsRequest{}); !errors.Is(err, usererr.ErrInvalidArgument) {
		t.Errorf("Export(no format) error = %v, want ErrInvalidArgument", err)
	}
}

func TestAccessReportRules(t *testing.T) {
	t.Parallel()
	f := newFixture(t, app.Config{ShowStaffNames: false, OrganisationNames: map[string]string{"org-1": "Riverside Clinic"}})
	ctx := t.Context()
	own := rec(1, "pat-sub", "patient-7")
	own.Actor.Role = commonv1.Role_ROLE_PATIENT
	clin := rec(2, "clin-1", "patient-7")
	conf := rec(3, "clin-2", "patient-7")
	conf.Sensitivity = commonv1.Sensitivity_SENSITIVITY_ADOLESCENT_CONFIDENTIAL
	glass := rec(4, "clin-3", "patient-7")
	glass.Action, glass.Severity, glass.PurposeOfUse = eventsv1.Action_ACTION_BREAK_GLASS, eventsv1.Severity_SEVERITY_HIGH, commonv1.PurposeOfUse_PURPOSE_OF_USE_EMERGENCY
	deniedRec := rec(5, "clin-4", "patient-7")
	deniedRec.Action, deniedRec.Outcome = eventsv1.Action_ACTION_DENY, eventsv1.Outcome_OUTCOME_DENIED
	other := rec(6, "clin-1", "patient-8")
	if _, err := f.svc.Ingest(ctx, f.incoming(t, own, clin, conf, glass, deniedRec, other)); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Hour)
	patient := &auth.Principal{Subject: "pat-sub", Roles: []auth.Role{auth.RolePatient}, PatientID: "patient-7"}
	proxy := &auth.Principal{Subject: "parent", Roles: []auth.Role{auth.RoleProxy},
		ProxyGrants: []auth.ProxyGrant{{PatientID: "patient-7", Scopes: []string{"messages:read"}, ExpiresAt: future}}}
	expired := &auth.Principal{Subject: "ex", Roles: []auth.Role{auth.RoleProxy},
		ProxyGrants: []auth.ProxyGrant{{PatientID: "patient-7", Scopes: []string{"messages:read"}, ExpiresAt: time.Now().Add(-time.Hour)}}}
	stranger := &auth.Principal{Subject: "pat-8", Roles: []auth.Role{auth.RolePatient}, PatientID: "patient-8"}
	tests := []struct {
		name    string
		p       *auth.Principal
		want    []uint64 // record ids' indexes as thread-N, newest first
		wantErr error
	}{
		{"patient", patient, []uint64{4, 3, 2}, nil},
		{"proxy hides adolescent-confidential", proxy, []uint64{4, 2}, nil},
		{"auditor", &auth.Principal{Subject: "a", Roles: []auth.Role{auth.RoleAuditor}}, []uint64{4, 3, 2}, nil},
		{"expired proxy", expired, nil, usererr.ErrPermissionDenied},
		{"other patient", stranger, nil, usererr.ErrPermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := f.api.GetAccessReport(auth.WithPrincipal(ctx, tt.p), &auditv1.GetAccessReportRequest{PatientId: "patient-7"})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("AccessReport() error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("AccessReport() error = %v", err)
			}
			var got []uint64
			for _, e := range resp.Entries {
				var n uint64
				_, _ = fmt.Sscanf(e.RecordId, "thread-%d", &n)
				got = append(got, n)
				if e.ActorDisplayName != "" || e.OrganisationName != "Riverside Clinic" || e.ActorRole == commonv1.Role_ROLE_PATIENT {
					t.Errorf("entry %v: names staff, misses the organisation or lists the patient's own access", e)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("AccessReport(%s) = threads %v, want %v", tt.name, got, tt.want)
			}
		})
	}
	// Names appear only when configuration allows.
	g := newFixture(t, app.Config{ShowStaffNames: true, StaffNames: app.StaticNames{"clin-1": "Dr. Example"}})
	if _, err := g.svc.Ingest(ctx, g.incoming(t, clin)); err != nil {
		t.Fatal(err)
	}
	resp, err := g.api.GetAccessReport(auth.WithPrincipal(ctx, patient), &auditv1.GetAccessReportRequest{PatientId: "patient-7"})
	if err != nil || len(resp.Entries) != 1 || resp.Entries[0].ActorDisplayName != "Dr. Example" {
		t.Errorf("AccessReport(names allowed) = %v, %v; want the configured name", resp, err)
	}
}

func TestAnomalyAlertsGoToOutbox(t *testing.T) {
	t.Parallel()
	rules := domain.DefaultAnomalyRules()
	rules.BulkRead.MaxPatients = 5
	f := newFixture(t, app.Config{Rules: &rules})
	ctx := t.Context()
	var recs []*eventsv1.AuditRecord
	for i := range 8 {
		recs = append(recs, rec(i, "snoop", fmt.Sprintf("patient-%d", i)))
	}
	glass := rec(100, "er-doc", "patient-1")
	glass.Action, glass.Severity = eventsv1.Action_ACTION_BREAK_GLASS, eventsv1.Severity_SEVERITY_HIGH
	recs = append(recs, glass)
	if _, err := f.svc.Ingest(ctx, f.incoming(t, recs...)); err != nil {
		t.Fatal(err)
	}
	rows, err := f.pool.Query(ctx, "SELECT subject, payload FROM outbox ORDER BY seq")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	rulesFired := map[string]string{}
	var alertRecords int
	for rows.Next() {
		var subject string
		var payload []byte
		if err := rows.Scan(&subject, &payload); err != nil {
			t.Fatal(err)
		}
		switch subject {
		case "securemsg.events.anomaly.raised":
			a := &eventsv1.AnomalyAlert{}
			if err := proto.Unmarshal(payload, a); err != nil {
				t.Fatal(err)
			}
			rulesFired[a.RuleId] = a.Actor.GetSubject()
			if a.RuleId == domain.RuleBulkRead && (a.Count != 6 || a.Threshold != 5 || a.FirstSequence != 1 || a.LastSequence != 6) {
				t.Errorf("bulk_read alert = %v, want count 6 threshold 5 sequences 1..6", a)
			}
		case "securemsg.audit.audit":
			r := &eventsv1.AuditRecord{}
			_ = proto.Unmarshal(payload, r)
			if r.Action == eventsv1.Action_ACTION_ALERT_SENT && r.Severity == eventsv1.Severity_SEVERITY_HIGH {
				alertRecords++
			}
		}
	}
	want := map[string]string{domain.RuleBulkRead: "snoop", domain.RuleBreakGlass: "er-doc"}
	if fmt.Sprint(rulesFired) != fmt.Sprint(want) || alertRecords != 2 {
		t.Errorf("alerts = %v with %d audit records, want %v with 2 (one per alert, bulk read fired once)", rulesFired, alertRecords, want)
	}
}

func TestRetentionDropsWholeMonths(t *testing.T) {
	t.Parallel()
	f := newFixture(t, app.Config{Retention: 90 * 24 * time.Hour})
	ctx := t.Context()
	old := time.Now().AddDate(0, -6, 0)
	f.svc.SetClock(func() time.Time { return old })
	f.fill(t, 0, 20)
	f.svc.SetClock(time.Now)
	f.fill(t, 20, 10)
	if err := f.svc.Maintain(ctx); err != nil {
		t.Fatalf("Maintain() error = %v", err)
	}
	head, _ := f.store.Head(ctx)
	var rows, ids int
	_ = f.pool.QueryRow(ctx, "SELECT count(*) FROM entries").Scan(&rows)
	_ = f.pool.QueryRow(ctx, "SELECT count(*) FROM event_ids").Scan(&ids)
	if head.FirstSequence != 21 || head.Size != 30 || rows != 10 || ids != 10 {
		t.Errorf("after retention: first %d size %d rows %d ids %d, want 21, 30, 10, 10", head.FirstSequence, head.Size, rows, ids)
	}
	if res, err := f.svc.Verify(ctx, 21, 0); err != nil || !res.Ok {
		t.Errorf("Verify(21, end) after retention = %v, %v; want ok", res, err)
	}
	if _, err := f.svc.Verify(ctx, 1, 0); !errors.Is(err, usererr.ErrOutOfRange) {
		t.Errorf("Verify(1, end) after retention error = %v, want ErrOutOfRange", err)
	}
}

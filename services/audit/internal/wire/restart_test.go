package wire_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/audit/internal/app"
	"github.com/securemsg/securemsg/services/audit/internal/domain"
	"github.com/securemsg/securemsg/services/audit/internal/ports"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog/tlog"
)

// restart builds a new Service over the fixture's store, as a restarted process would.
func (f *fixture) restart(t *testing.T, signer *tlog.Signer, cfg app.Config) *app.Service {
	t.Helper()
	return newService(t, f.store, signer, cfg)
}

// TestSigningKeyRotation: checkpoints signed with key A, then (after a restart with key B, A's
// public key kept in the trusted-keys folder) more records and checkpoints with B. VerifyRange
// over the whole log passes; without A trusted it fails at A's checkpoint; an export verifies
// offline with both public keys and fails with only B.
func TestSigningKeyRotation(t *testing.T) {
	t.Parallel()
	f := newFixture(t, app.Config{})
	ctx := auditorCtx(t.Context())
	keysDir := t.TempDir()
	if err := tlog.RememberPublicKey(keysDir, f.pub); err != nil { // what wire does at start
		t.Fatal(err)
	}
	f.fill(t, 0, 60)
	cpA, err := f.checkpoint(t, ctx)
	if err != nil || cpA.GetKeyId() != f.signer.KeyID() {
		t.Fatalf("Checkpoint() = %v, %v; want one signed with key A", cpA, err)
	}

	// Restart with a new signing key B.
	pubB, privB, _ := ed25519.GenerateKey(rand.Reader)
	signerB := tlog.NewSigner(privB)
	if err := tlog.RememberPublicKey(keysDir, pubB); err != nil {
		t.Fatal(err)
	}
	trusted, err := tlog.LoadPublicKeys(keysDir)
	if err != nil || len(trusted) != 2 {
		t.Fatalf("LoadPublicKeys(folder) = %d keys, %v; want 2", len(trusted), err)
	}
	f.svc = f.restart(t, signerB, app.Config{TrustedKeys: trusted})
	f.api = ports.NewGRPC(f.svc)
	f.fill(t, 60, 70)
	cpB, err := f.checkpoint(t, ctx)
	if err != nil || cpB.GetKeyId() != signerB.KeyID() || cpB.GetTreeSize() != 130 {
		t.Fatalf("Checkpoint() after rotation = %v, %v; want size 130 signed with key B", cpB, err)
	}

	res, err := f.api.VerifyRange(ctx, &auditv1.VerifyRangeRequest{FromSequence: 1})
	if err != nil || !res.Ok || res.VerifiedCount != 130 || res.Checkpoint.GetTreeSize() != 130 {
		t.Fatalf("VerifyRange(1, end) with keys A and B = %v, %v; want ok over 130 reaching checkpoint 130", res, err)
	}
	onlyB := f.restart(t, signerB, app.Config{})
	res, err = ports.NewGRPC(onlyB).VerifyRange(ctx, &auditv1.VerifyRangeRequest{FromSequence: 1})
	if err != nil || res.Ok || res.Failure != auditv1.VerifyFailure_VERIFY_FAILURE_CHECKPOINT_SIGNATURE_INVALID || res.FirstFailingSequence != 60 {
		t.Errorf("VerifyRange(1, end) with key B only = %v, %v; want CHECKPOINT_SIGNATURE_INVALID at 60", res, err)
	}

	jsonl, _, err := export(ctx, f.api, &auditv1.ExportAuditEventsRequest{Format: auditv1.ExportFormat_EXPORT_FORMAT_JSONL})
	if err != nil {
		t.Fatalf("Export() error = %v", err)
	}
	// The export starts at sequence 1; the export itself appended audit records of the
	// export, so verify against the two checkpoints only.
	tests := []struct {
		name   string
		ring   *tlog.KeyRing
		wantOK bool
	}{
		{"keys A and B", tlog.NewKeyRing(f.pub, pubB), true},
		{"key B only", tlog.NewKeyRing(pubB), false},
		{"key A only", tlog.NewKeyRing(f.pub), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := tlog.VerifyExportKeys(bytes.NewReader(jsonl), tt.ring, cpA, cpB)
			if err != nil || res.Ok != tt.wantOK {
				t.Fatalf("VerifyExportKeys(%v) = %v, %v; want ok %v", tt.ring.IDs(), res, err, tt.wantOK)
			}
			if !tt.wantOK && res.Failure != auditv1.VerifyFailure_VERIFY_FAILURE_CHECKPOINT_SIGNATURE_INVALID {
				t.Errorf("VerifyExportKeys(%v).Failure = %v, want CHECKPOINT_SIGNATURE_INVALID", tt.ring.IDs(), res.Failure)
			}
		})
	}
}

// TestAnomalyStateSurvivesRestart: a bulk read that starts before a restart and finishes after
// it is detected, because the restarted service rebuilds the rule windows from the log.
func TestAnomalyStateSurvivesRestart(t *testing.T) {
	t.Parallel()
	rules := domain.DefaultAnomalyRules()
	rules.BulkRead.MaxPatients = 5
	f := newFixture(t, app.Config{Rules: &rules})
	ctx := t.Context()
	var before, after []*eventsv1.AuditRecord
	for i := range 4 {
		before = append(before, rec(i, "snoop", fmt.Sprintf("patient-%d", i)))
	}
	for i := 4; i < 7; i++ {
		after = append(after, rec(i, "snoop", fmt.Sprintf("patient-%d", i)))
	}
	if _, err := f.svc.Ingest(ctx, f.incoming(t, before...)); err != nil {
		t.Fatal(err)
	}

	restarted := f.restart(t, f.signer, app.Config{Rules: &rules})
	replayed, err := restarted.RestoreDetector(ctx)
	if err != nil || replayed != 4 {
		t.Fatalf("RestoreDetector() = %d, %v; want 4 entries replayed", replayed, err)
	}
	if _, err := restarted.Ingest(ctx, f.incoming(t, after...)); err != nil {
		t.Fatal(err)
	}
	alerts := f.alerts(t)
	if len(alerts) != 1 || alerts[0].RuleId != domain.RuleBulkRead || alerts[0].Count != 6 || alerts[0].FirstSequence != 1 || alerts[0].LastSequence != 6 {
		t.Fatalf("alerts after restart = %v, want one bulk_read over sequences 1..6 with count 6", alerts)
	}

	// A second restart replays the alert's records too, but raises nothing again: the replay
	// restores the rule's cool-down.
	again := f.restart(t, f.signer, app.Config{Rules: &rules})
	if _, err := again.RestoreDetector(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := again.Ingest(ctx, f.incoming(t, rec(7, "snoop", "patient-7"))); err != nil {
		t.Fatal(err)
	}
	if got := f.alerts(t); len(got) != 1 {
		t.Errorf("alerts after a second restart = %d, want still 1 (cool-down restored)", len(got))
	}
}

// alerts reads the AnomalyAlert events in the fixture's outbox.
func (f *fixture) alerts(t *testing.T) []*eventsv1.AnomalyAlert {
	t.Helper()
	rows, err := f.pool.Query(t.Context(), "SELECT payload FROM outbox WHERE subject = 'securemsg.events.anomaly.raised' ORDER BY seq")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []*eventsv1.AnomalyAlert
	for rows.Next() {
		var payload []byte
		if err := rows.Scan(&payload); err != nil {
			t.Fatal(err)
		}
		a := &eventsv1.AnomalyAlert{}
		if err := proto.Unmarshal(payload, a); err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

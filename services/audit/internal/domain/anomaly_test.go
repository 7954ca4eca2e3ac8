package domain_test

import (
	"os"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/audit/internal/domain"
)

var t0 = time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)

func access(sec int, actor, patient string, action eventsv1.Action, outcome eventsv1.Outcome) *eventsv1.AuditRecord {
	return &eventsv1.AuditRecord{
		Meta:   &eventsv1.EventMeta{OccurredAt: timestamppb.New(t0.Add(time.Duration(sec) * time.Second))},
		Actor:  &eventsv1.AuditActor{Subject: actor, Role: commonv1.Role_ROLE_CLINICIAN},
		Action: action, Outcome: outcome, PatientId: patient, PoolId: "pool-a", ReasonCode: "pool_member",
	}
}

func TestDetectorRules(t *testing.T) {
	t.Parallel()
	rules := domain.DefaultAnomalyRules()
	rules.BulkRead.MaxPatients, rules.BulkRead.Window = 3, domain.Duration(time.Minute)
	rules.Denials.MaxDenials, rules.Denials.Window = 2, domain.Duration(time.Minute)
	rules.OutsidePool.ActorPools = map[string][]string{"listed": {"pool-b"}}
	read, deny := eventsv1.Action_ACTION_READ, eventsv1.Action_ACTION_DENY
	ok, denied := eventsv1.Outcome_OUTCOME_SUCCESS, eventsv1.Outcome_OUTCOME_DENIED
	tests := []struct {
		name string
		recs []*eventsv1.AuditRecord
		want []string // rule fired per record, "" for none
	}{
		{"bulk read fires once over threshold", []*eventsv1.AuditRecord{
			access(0, "a", "p1", read, ok), access(1, "a", "p2", read, ok), access(2, "a", "p3", read, ok),
			access(3, "a", "p4", read, ok), access(4, "a", "p5", read, ok)},
			[]string{"", "", "", domain.RuleBulkRead, ""}},
		{"same patients do not count", []*eventsv1.AuditRecord{
			access(0, "a", "p1", read, ok), access(1, "a", "p1", read, ok), access(2, "a", "p2", read, ok), access(3, "a", "p2", read, ok)},
			[]string{"", "", "", ""}},
		{"window slides", []*eventsv1.AuditRecord{
			access(0, "a", "p1", read, ok), access(30, "a", "p2", read, ok), access(61, "a", "p3", read, ok), access(100, "a", "p4", read, ok)},
			[]string{"", "", "", ""}},
		{"denials burst", []*eventsv1.AuditRecord{
			access(0, "d", "p1", deny, denied), access(1, "d", "p1", deny, denied), access(2, "d", "p1", deny, denied)},
			[]string{"", "", domain.RuleDenials}},
		{"break glass", []*eventsv1.AuditRecord{func() *eventsv1.AuditRecord {
			r := access(0, "g", "p1", eventsv1.Action_ACTION_BREAK_GLASS, ok)
			r.ReasonCode = "break_glass"
			return r
		}()}, []string{domain.RuleBreakGlass}}, // break-the-glass has its own rule, not also "outside pool"
		{"outside listed pools", []*eventsv1.AuditRecord{access(0, "listed", "p1", read, ok)}, []string{domain.RuleOutsidePool}},
		{"outside by reason code", []*eventsv1.AuditRecord{func() *eventsv1.AuditRecord {
			r := access(0, "x", "p1", read, ok)
			r.ReasonCode = "admin_override"
			return r
		}()}, []string{domain.RuleOutsidePool}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := domain.NewDetector(rules)
			for i, r := range tt.recs {
				got := ""
				for j, a := range d.Observe(uint64(i+1), r) {
					if j > 0 {
						got += ","
					}
					got += a.RuleID
				}
				if got != tt.want[i] {
					t.Errorf("Observe(record %d) = %q, want %q", i+1, got, tt.want[i])
				}
			}
			// A retried batch (same sequences) fires nothing new.
			for i, r := range tt.recs {
				if a := d.Observe(uint64(i+1), r); len(a) != 0 {
					t.Errorf("Observe(record %d again) = %v, want nothing", i+1, a)
				}
			}
		})
	}
	if err := (domain.AnomalyRules{BulkRead: struct {
		Enabled     bool            `json:"enabled"`
		MaxPatients int             `json:"max_patients"`
		Window      domain.Duration `json:"window"`
	}{Enabled: true}}).Validate(); err == nil {
		t.Error("Validate(bulk_read without threshold) = nil, want error")
	}
	shipped, err := os.ReadFile("../../anomaly-rules.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := domain.ParseAnomalyRules(shipped); err != nil {
		t.Errorf("ParseAnomalyRules(shipped file) error = %v", err)
	}
}

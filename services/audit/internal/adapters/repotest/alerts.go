package repotest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/audit/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
)

// AlertsUnderTest is a fresh, empty store's alerts, the log whose appends raise them, and a
// reader of its outbox.
type AlertsUnderTest struct {
	Alerts  domain.Alerts
	Log     domain.Log
	Written Written
}

// RunAlerts is the contract of domain.Alerts.
func RunAlerts(t *testing.T, newAlerts func(t *testing.T) AlertsUnderTest) {
	tests := []struct {
		name string
		run  func(t *testing.T, u AlertsUnderTest)
	}{
		{"alerts commit with their append and list newest first", testAlertsListed},
		{"acknowledging is once, audited and final", testAlertAcknowledged},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newAlerts(t))
		})
	}
}

// raise appends n records whose effects raise one alert of rule, raised at at.
func raise(t *testing.T, u AlertsUnderTest, from int, rule string, at time.Time) domain.RaisedAlert {
	t.Helper()
	a := domain.RaisedAlert{ID: outbox.NewID(), Alert: domain.Alert{RuleID: rule,
		Actor:       &eventsv1.AuditActor{Subject: "snoop", Role: commonv1.Role_ROLE_CLINICIAN},
		WindowStart: at.Add(-time.Minute), WindowEnd: at, Count: 6, Threshold: 5, FirstSeq: uint64(from + 1), LastSeq: uint64(from + 2)}, //nolint:gosec // G115: small test counts
		Severity: eventsv1.Severity_SEVERITY_HIGH, RaisedAt: at}
	if err := u.Log.EnsurePartitions(t.Context(), at, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Log.Append(t.Context(), Records(t, from, 2), at, func([]domain.Entry) (domain.AppendEffects, error) {
		return domain.AppendEffects{Alerts: []domain.RaisedAlert{a}}, nil
	}); err != nil {
		t.Fatalf("Append(raising %s) = %v", rule, err)
	}
	return a
}

func ids(alerts []domain.RaisedAlert) string {
	out := ""
	for _, a := range alerts {
		out += a.RuleID + " "
	}
	return out
}

func testAlertsListed(t *testing.T, u AlertsUnderTest) {
	ctx := t.Context()
	at := time.Now().UTC().Truncate(time.Second)
	first := raise(t, u, 0, "bulk_read", at)
	raise(t, u, 2, "break_glass", at.Add(time.Second))
	raise(t, u, 4, "repeated_denials", at.Add(2*time.Second))

	// An append rolled back by its effects stores no alert.
	rolled := domain.RaisedAlert{ID: outbox.NewID(), Alert: domain.Alert{RuleID: "rolled_back", Actor: &eventsv1.AuditActor{Subject: "x"}}, RaisedAt: at}
	failure := errors.New("effect failed")
	if _, err := u.Log.Append(ctx, Records(t, 6, 1), at, func([]domain.Entry) (domain.AppendEffects, error) {
		return domain.AppendEffects{Alerts: []domain.RaisedAlert{rolled}}, failure
	}); !errors.Is(err, failure) {
		t.Fatalf("Append(failing effect) = %v, want the failure", err)
	}

	all, err := u.Alerts.ListAlerts(ctx, domain.AlertFilter{}, nil, 10)
	if err != nil || ids(all) != "repeated_denials break_glass bulk_read " {
		t.Fatalf("ListAlerts() = %q, %v; want the three, newest first", ids(all), err)
	}
	got := all[2]
	if got.ID != first.ID || got.Actor.GetSubject() != "snoop" || got.Count != 6 || got.Threshold != 5 || got.FirstSeq != 1 ||
		got.LastSeq != 2 || got.Severity != eventsv1.Severity_SEVERITY_HIGH || !got.RaisedAt.Equal(at) || !got.WindowStart.Equal(at.Add(-time.Minute)) || !got.Open() {
		t.Errorf("stored alert = %+v, want %+v, open", got, first)
	}
	page, err := u.Alerts.ListAlerts(ctx, domain.AlertFilter{}, nil, 2)
	if err != nil || len(page) != 2 {
		t.Fatalf("ListAlerts(limit 2) = %v, %v", page, err)
	}
	last := page[1]
	rest, err := u.Alerts.ListAlerts(ctx, domain.AlertFilter{}, &domain.AlertCursor{RaisedAt: last.RaisedAt, ID: last.ID}, 2)
	if err != nil || ids(rest) != "bulk_read " {
		t.Errorf("ListAlerts(after %s) = %q, %v; want bulk_read", last.RuleID, ids(rest), err)
	}
	// Two alerts of one append share their raise time (to the nanosecond, which the store keeps
	// to the microsecond): paging one at a time still yields every alert once, the id breaking
	// the tie.
	twinAt := at.Add(3*time.Second + 1234*time.Nanosecond)
	twins := []domain.RaisedAlert{
		{ID: outbox.NewID(), Alert: domain.Alert{RuleID: "twin", Actor: &eventsv1.AuditActor{Subject: "a"}, WindowStart: twinAt, WindowEnd: twinAt}, RaisedAt: twinAt},
		{ID: outbox.NewID(), Alert: domain.Alert{RuleID: "twin", Actor: &eventsv1.AuditActor{Subject: "b"}, WindowStart: twinAt, WindowEnd: twinAt}, RaisedAt: twinAt},
	}
	if err := u.Log.EnsurePartitions(ctx, twinAt, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Log.Append(ctx, Records(t, 7, 1), twinAt, func([]domain.Entry) (domain.AppendEffects, error) {
		return domain.AppendEffects{Alerts: twins}, nil
	}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	var cursor *domain.AlertCursor
	for range 10 {
		page, err := u.Alerts.ListAlerts(ctx, domain.AlertFilter{}, cursor, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		seen[page[0].ID]++
		if !page[0].WindowStart.Equal(page[0].WindowStart.Round(time.Microsecond)) {
			t.Errorf("alert %s window start %v is finer than microseconds; both stores keep microseconds", page[0].ID, page[0].WindowStart)
		}
		cursor = &domain.AlertCursor{RaisedAt: page[0].RaisedAt, ID: page[0].ID}
	}
	if len(seen) != 5 || seen[twins[0].ID] != 1 || seen[twins[1].ID] != 1 {
		t.Errorf("paging one at a time saw %v; want each of the 5 alerts once", seen)
	}

	byRule, err := u.Alerts.ListAlerts(ctx, domain.AlertFilter{RuleID: "break_glass"}, nil, 10)
	if err != nil || ids(byRule) != "break_glass " {
		t.Errorf("ListAlerts(rule break_glass) = %q, %v", ids(byRule), err)
	}
}

func testAlertAcknowledged(t *testing.T, u AlertsUnderTest) {
	ctx := t.Context()
	at := time.Now().UTC().Truncate(time.Second)
	a := raise(t, u, 0, "bulk_read", at)
	other := raise(t, u, 2, "break_glass", at.Add(time.Second))
	before := len(u.Written(t))

	if _, _, err := u.Alerts.AcknowledgeAlert(ctx, "no-such-alert", "auditor-1", "n", at, nil); !errors.Is(err, domain.ErrAlertNotFound) {
		t.Errorf("AcknowledgeAlert(unknown) = %v, want ErrAlertNotFound", err)
	}
	// An audit record the outbox refuses rolls the acknowledgement back.
	if _, _, err := u.Alerts.AcknowledgeAlert(ctx, a.ID, "auditor-1", "checked", at, func(domain.RaisedAlert) ([]outbox.Event, error) {
		return []outbox.Event{event("bad subject", "x")}, nil
	}); err == nil {
		t.Error("AcknowledgeAlert(refused audit event) = nil error")
	}
	if open, _ := u.Alerts.ListAlerts(ctx, domain.AlertFilter{OpenOnly: true}, nil, 10); len(open) != 2 {
		t.Fatalf("open alerts after a rolled-back acknowledgement = %d, want 2", len(open))
	}

	ackAt := at.Add(time.Hour)
	rec := event("securemsg.audit.audit", "ack-record")
	var sawOpen bool
	got, changed, err := u.Alerts.AcknowledgeAlert(ctx, a.ID, "auditor-1", "looked into it: ticket SEC-12", ackAt, func(in domain.RaisedAlert) ([]outbox.Event, error) {
		sawOpen = in.AcknowledgedBy == "auditor-1"
		return []outbox.Event{rec}, nil
	})
	if err != nil || !changed || got.Open() || got.AcknowledgedBy != "auditor-1" || !got.AcknowledgedAt.Equal(ackAt) || got.Note != "looked into it: ticket SEC-12" || !sawOpen {
		t.Fatalf("AcknowledgeAlert() = %+v, %t, %v; want acknowledged by auditor-1 at %v", got, changed, err, ackAt)
	}
	if w := u.Written(t); len(w) != before+1 || w[len(w)-1].ID != rec.ID {
		t.Errorf("outbox after the acknowledgement holds %d new events, want the audit record", len(w)-before)
	}
	// Once: a second acknowledgement, by anyone, changes nothing and writes no record.
	again, changed, err := u.Alerts.AcknowledgeAlert(ctx, a.ID, "auditor-2", "again", ackAt.Add(time.Hour), func(domain.RaisedAlert) ([]outbox.Event, error) {
		t.Error("audit called for an alert already acknowledged")
		return nil, nil
	})
	if err != nil || changed || again.AcknowledgedBy != "auditor-1" || again.Note != got.Note {
		t.Errorf("second AcknowledgeAlert() = %+v, %t, %v; want the first acknowledgement unchanged", again, changed, err)
	}
	open, err := u.Alerts.ListAlerts(ctx, domain.AlertFilter{OpenOnly: true}, nil, 10)
	if err != nil || len(open) != 1 || open[0].ID != other.ID {
		t.Errorf("open alerts = %s, %v; want only %s", fmt.Sprint(ids(open)), err, other.RuleID)
	}
}

package wire_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/audit/internal/app"
	"github.com/securemsg/securemsg/services/audit/internal/domain"
	"github.com/securemsg/securemsg/services/audit/internal/wire"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog/tlog"
	"github.com/securemsg/securemsg/services/internal/platform/daemon"
	"github.com/securemsg/securemsg/services/internal/testkit"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
)

// TestAlertsEndToEnd: a scripted bulk read, published as a producer's relay publishes it, fires
// the bulk_read rule; the alert reaches an auditor through ListAlerts (and nobody else), names
// the actor and the sequences but no patient, and is acknowledged once, audited, after which it
// is no longer open.
func TestAlertsEndToEnd(t *testing.T) {
	t.Parallel()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	rules := domain.DefaultAnomalyRules()
	rules.BulkRead.MaxPatients = 5
	settings := wire.Settings{CheckpointEvery: 10, CheckpointInterval: time.Second, Retention: app.DefaultRetention, IngestBatch: 64}
	h := servicetest.Start(t, wire.Spec(), servicetest.Options{}, func(proc *daemon.Process) error {
		_, err := wire.Register(proc, settings, wire.Deps{Signer: tlog.NewSigner(priv), Rules: rules})
		return err
	})
	ctx := t.Context()
	api := auditv1.NewAuditServiceClient(h.Portal)
	producer, err := auditlog.NewEmitter(commonv1.Component_COMPONENT_MESSAGING, auditlog.WithSubjectPrefix(h.Topology.AuditSubject))
	if err != nil {
		t.Fatal(err)
	}
	// One clinician reads eight patients' threads within the window: six distinct patients
	// cross the threshold of five.
	for i := range 8 {
		ev, err := producer.Event(ctx, rec(i, "snoop-e2e", fmt.Sprintf("p-bulk-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.JS.Publish(ctx, ev.Subject, ev.Payload, jetstream.WithMsgID(ev.ID)); err != nil {
			t.Fatalf("publish record %d: %v", i, err)
		}
	}
	auditor := h.As(t, ctx, servicetest.Auditor)
	var alert *auditv1.Alert
	testkit.WaitFor(t, 30*time.Second, "the bulk_read alert in ListAlerts", func() bool {
		resp, err := api.ListAlerts(auditor, &auditv1.ListAlertsRequest{OpenOnly: true, RuleId: domain.RuleBulkRead})
		if err != nil {
			t.Fatalf("ListAlerts() = %v", err)
		}
		if len(resp.GetAlerts()) > 0 {
			alert = resp.GetAlerts()[0]
		}
		return alert != nil
	})
	if alert.GetActor().GetSubject() != "snoop-e2e" || alert.GetCount() != 6 || alert.GetThreshold() != 5 || alert.GetSeverity() != eventsv1.Severity_SEVERITY_HIGH ||
		alert.GetLastSequence() < alert.GetFirstSequence() || alert.GetRaiseTime() == nil || alert.GetAcknowledgeTime() != nil {
		t.Errorf("alert = %v; want snoop-e2e's open bulk_read, count 6 of threshold 5", alert)
	}

	// Nobody but an auditor sees or acknowledges alerts; bad requests are refused clearly.
	for _, who := range []servicetest.Persona{servicetest.Clinician, servicetest.Patient} {
		if _, err := api.ListAlerts(h.As(t, ctx, who), &auditv1.ListAlertsRequest{}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("ListAlerts as %s = %v, want PermissionDenied", who.Subject, err)
		}
		if _, err := api.AcknowledgeAlert(h.As(t, ctx, who), &auditv1.AcknowledgeAlertRequest{AlertId: alert.GetAlertId(), Note: "x"}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("AcknowledgeAlert as %s = %v, want PermissionDenied", who.Subject, err)
		}
	}
	for name, call := range map[string]func() error{
		"a malformed page token": func() error {
			_, err := api.ListAlerts(auditor, &auditv1.ListAlertsRequest{PageToken: "not-a-token"})
			return err
		},
		"an empty note": func() error {
			_, err := api.AcknowledgeAlert(auditor, &auditv1.AcknowledgeAlertRequest{AlertId: alert.GetAlertId()})
			return err
		},
	} {
		if err := call(); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s = %v, want InvalidArgument", name, err)
		}
	}
	if _, err := api.AcknowledgeAlert(auditor, &auditv1.AcknowledgeAlertRequest{AlertId: "no-such-alert", Note: "x"}); status.Code(err) != codes.NotFound {
		t.Errorf("AcknowledgeAlert(unknown) = %v, want NotFound", err)
	}

	acked, err := api.AcknowledgeAlert(auditor, &auditv1.AcknowledgeAlertRequest{AlertId: alert.GetAlertId(), Note: "reviewed with the ward manager, ticket SEC-12"})
	if err != nil || acked.GetAlert().GetAcknowledgedBy() != servicetest.Auditor.Subject || acked.GetAlert().GetAcknowledgeTime() == nil {
		t.Fatalf("AcknowledgeAlert() = %v, %v; want acknowledged by the auditor", acked, err)
	}
	again, err := api.AcknowledgeAlert(auditor, &auditv1.AcknowledgeAlertRequest{AlertId: alert.GetAlertId(), Note: "again"})
	if err != nil || again.GetAlert().GetNote() != acked.GetAlert().GetNote() || !again.GetAlert().GetAcknowledgeTime().AsTime().Equal(acked.GetAlert().GetAcknowledgeTime().AsTime()) {
		t.Errorf("second AcknowledgeAlert() = %v, %v; want the first acknowledgement unchanged", again, err)
	}
	open, err := api.ListAlerts(auditor, &auditv1.ListAlertsRequest{OpenOnly: true, RuleId: domain.RuleBulkRead})
	if err != nil || len(open.GetAlerts()) != 0 {
		t.Errorf("open bulk_read alerts after the acknowledgement = %v, %v; want none", open.GetAlerts(), err)
	}
	// The acknowledgement is in the log, once, as the auditor's UPDATE of the alert.
	testkit.WaitFor(t, 30*time.Second, "the acknowledgement's audit record in the log", func() bool {
		resp, err := api.QueryAuditEvents(auditor, &auditv1.QueryAuditEventsRequest{Filter: &auditv1.AuditEventFilter{
			ActorSubject: servicetest.Auditor.Subject, Actions: []eventsv1.Action{eventsv1.Action_ACTION_UPDATE}, RecordId: alert.GetAlertId()}})
		if err != nil {
			t.Fatalf("QueryAuditEvents() = %v", err)
		}
		if n := len(resp.GetEntries()); n > 1 {
			t.Fatalf("%d audit records of the acknowledgement, want 1", n)
		}
		return len(resp.GetEntries()) == 1 && resp.GetEntries()[0].GetRecord().GetReasonCode() == "alert_acknowledged"
	})
}

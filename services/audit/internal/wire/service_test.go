package wire_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
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

// TestServiceEndToEnd runs the service as wire.Register composes it, on a real daemon (TLS, the
// token, rate-limit and policy guards, the outbox relay) over the dev stack's Postgres and NATS:
// records a producer publishes are appended and reach an auditor and the patient's access
// report, the checkpointer signs, the log verifies, the service's own audit records of those
// reads come back into the log, and refusals reach the client with their code and reason.
func TestServiceEndToEnd(t *testing.T) {
	t.Parallel()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	settings := wire.Settings{CheckpointEvery: 10, CheckpointInterval: time.Second, Retention: app.DefaultRetention, IngestBatch: 64}
	h := servicetest.Start(t, wire.Spec(), servicetest.Options{}, func(proc *daemon.Process) error {
		_, err := wire.Register(proc, settings, wire.Deps{Signer: tlog.NewSigner(priv), Rules: domain.DefaultAnomalyRules()})
		return err
	})
	ctx := t.Context()
	api := auditv1.NewAuditServiceClient(h.Portal)

	// A producer's records, published as its outbox relay publishes them.
	producer, err := auditlog.NewEmitter(commonv1.Component_COMPONENT_MESSAGING, auditlog.WithSubjectPrefix(h.Topology.AuditSubject))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		r := rec(i, "clin-e2e", fmt.Sprintf("p-%d", 1001+i%2)) // half of them about servicetest.Patient's records
		ev, err := producer.Event(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.JS.Publish(ctx, ev.Subject, ev.Payload, jetstream.WithMsgID(ev.ID)); err != nil {
			t.Fatalf("publish record %d: %v", i, err)
		}
	}
	auditor := h.As(t, ctx, servicetest.Auditor)
	count := func(f *auditv1.AuditEventFilter) int {
		n, token := 0, ""
		for {
			resp, err := api.QueryAuditEvents(auditor, &auditv1.QueryAuditEventsRequest{Filter: f, PageSize: 100, PageToken: token})
			if err != nil {
				t.Fatalf("QueryAuditEvents() error = %v", err)
			}
			n += len(resp.GetEntries())
			if token = resp.GetNextPageToken(); token == "" {
				return n
			}
		}
	}
	testkit.WaitFor(t, 30*time.Second, "the 20 published records in the log", func() bool {
		return count(&auditv1.AuditEventFilter{ActorSubject: "clin-e2e"}) == 20
	})
	var cp *auditv1.Checkpoint
	testkit.WaitFor(t, 30*time.Second, "a checkpoint over the published records", func() bool {
		resp, err := api.GetLatestCheckpoint(auditor, &auditv1.GetLatestCheckpointRequest{})
		cp = resp.GetCheckpoint()
		return err == nil && cp.GetTreeSize() >= 20
	})
	if err := tlog.VerifyCheckpoint(cp, priv.Public().(ed25519.PublicKey)); err != nil {
		t.Errorf("the checkpoint does not verify with the signing key: %v", err)
	}
	v, err := api.VerifyRange(auditor, &auditv1.VerifyRangeRequest{FromSequence: 1})
	if err != nil || !v.GetOk() || v.GetVerifiedCount() < 20 {
		t.Errorf("VerifyRange(1, end) = %v, %v; want ok over at least 20", v, err)
	}

	report, err := api.GetAccessReport(h.As(t, ctx, servicetest.Patient), &auditv1.GetAccessReportRequest{PatientId: servicetest.Patient.PatientID})
	if err != nil || len(report.GetEntries()) != 10 {
		t.Errorf("GetAccessReport(own records) = %d entries, %v; want the 10 reads of the patient's records", len(report.GetEntries()), err)
	}
	// The service's own audit records of the auditor's queries come back into the log.
	testkit.WaitFor(t, 30*time.Second, "the audit records of the auditor's queries in the log", func() bool {
		return count(&auditv1.AuditEventFilter{ActorSubject: servicetest.Auditor.Subject, Actions: []eventsv1.Action{eventsv1.Action_ACTION_QUERY}}) > 0
	})

	refusals := []struct {
		name   string
		call   func() error
		code   codes.Code
		reason string // the use case's reason; empty for a refusal of the rpc-level guard
	}{
		{"verify beyond the log's end", func() error {
			_, err := api.VerifyRange(auditor, &auditv1.VerifyRangeRequest{FromSequence: 1, ToSequence: 1 << 40})
			return err
		}, codes.OutOfRange, "BEYOND_LOG_END"},
		{"another patient's report", func() error {
			_, err := api.GetAccessReport(h.As(t, ctx, servicetest.Patient), &auditv1.GetAccessReportRequest{PatientId: servicetest.OtherPatient.PatientID})
			return err
		}, codes.PermissionDenied, "NOT_PATIENT_PROXY_OR_AUDITOR"},
		{"a patient querying the log", func() error {
			_, err := api.QueryAuditEvents(h.As(t, ctx, servicetest.Patient), &auditv1.QueryAuditEventsRequest{})
			return err
		}, codes.PermissionDenied, ""},
	}
	for _, tt := range refusals {
		st := status.Convert(tt.call())
		if st.Code() != tt.code {
			t.Errorf("%s = %v %q, want %v", tt.name, st.Code(), st.Message(), tt.code)
			continue
		}
		if tt.reason == "" {
			continue
		}
		var reason string
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok {
				reason = info.GetReason()
			}
		}
		if reason != tt.reason {
			t.Errorf("%s ErrorInfo reason = %q, want %q", tt.name, reason, tt.reason)
		}
	}
}

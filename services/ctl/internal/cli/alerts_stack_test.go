package cli_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/ctl/internal/cli"
	"github.com/securemsg/securemsg/services/ctl/internal/config"
	"github.com/securemsg/securemsg/services/ctl/internal/exitcode"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/testkit"
	"github.com/securemsg/securemsg/services/internal/testkit/privstack"
)

// TestAuditAlertsCommands drives `securemsgctl audit alerts` and `audit ack` against a private
// audit service: a break-the-glass record, published as a producer's relay publishes it,
// raises an alert; an auditor lists it, acknowledges it with a note (once: again changes
// nothing), and the open list is then empty; a clinician is refused, an unknown alert is not
// found, a missing note is a usage error — each with the exit status a script acts on.
func TestAuditAlertsCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a private stack")
	}
	// messaging seeds the directory (the dev client applications) every caller is admitted by.
	s := privstack.Start(t, privstack.Options{Services: []string{"messaging", "audit"}, Without: []string{"minio", "clamd", "mailpit"}})
	tokenFile := func(user string) string {
		f := filepath.Join(t.TempDir(), user+".token")
		if err := os.WriteFile(f, []byte(s.Token(t, user)), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	auditor, clinician := tokenFile("auditor"), tokenFile("clinician")
	run := func(token string, args ...string) ctlRun {
		t.Helper()
		root := cli.NewRootCommand(config.Env{})
		var out, errOut bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&errOut)
		root.SetArgs(append(args, "--addr", s.Service("audit").Addr(), "--ca", filepath.Join(s.CertsDir(), "ca.pem"),
			"--server-name", "audit", "--token-file", token))
		err := root.ExecuteContext(t.Context())
		return ctlRun{out: out.String(), errOut: errOut.String(), err: err, code: exitcode.Of(err)}
	}

	// A break-the-glass read: the break_glass rule alerts on every one.
	nc, err := nats.Connect(s.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	em, err := auditlog.NewEmitter(commonv1.Component_COMPONENT_MESSAGING)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := em.Event(t.Context(), &eventsv1.AuditRecord{
		Meta:   &eventsv1.EventMeta{EventId: uuid.NewString(), OccurredAt: timestamppb.Now(), Producer: commonv1.Component_COMPONENT_MESSAGING},
		Actor:  &eventsv1.AuditActor{Subject: "er-doc-ctl", Role: commonv1.Role_ROLE_CLINICIAN, OrganisationId: "org-1"},
		Action: eventsv1.Action_ACTION_BREAK_GLASS, Severity: eventsv1.Severity_SEVERITY_HIGH, Outcome: eventsv1.Outcome_OUTCOME_SUCCESS,
		RecordType: eventsv1.RecordType_RECORD_TYPE_THREAD, RecordId: "thread-ctl", PatientId: "p-ctl", ReasonCode: "break_glass",
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), ev.Subject, ev.Payload, jetstream.WithMsgID(ev.ID)); err != nil {
		t.Fatal(err)
	}

	var alert auditv1.Alert
	testkit.WaitFor(t, 30*time.Second, "the break_glass alert in `audit alerts --open --json`", func() bool {
		r := run(auditor, "audit", "alerts", "--open", "--rule", "break_glass", "--json")
		if r.err != nil {
			t.Fatalf("audit alerts: %v (exit %d)\n%s", r.err, r.code, r.errOut)
		}
		line, _, _ := strings.Cut(r.out, "\n")
		return line != "" && protojson.Unmarshal([]byte(line), &alert) == nil
	})
	if alert.GetActor().GetSubject() != "er-doc-ctl" || strings.Contains(protojson.Format(&alert), "p-ctl") {
		t.Errorf("alert = %v; want er-doc-ctl's, naming no patient", &alert)
	}
	table := run(auditor, "audit", "alerts")
	if table.err != nil || !strings.Contains(table.out, alert.GetAlertId()) || !strings.Contains(table.out, "break_glass") || !strings.Contains(table.out, "open") {
		t.Errorf("audit alerts = %q, %v; want a table row of the open break_glass alert", table.out, table.err)
	}

	for _, tt := range []struct {
		name  string
		token string
		args  []string
		code  int
	}{
		{"a clinician listing alerts", clinician, []string{"audit", "alerts"}, exitcode.Refused},
		{"an unknown alert", auditor, []string{"audit", "ack", "no-such-alert", "--note", "x"}, exitcode.NotFound},
		{"an acknowledgement without a note", auditor, []string{"audit", "ack", alert.GetAlertId()}, exitcode.BadUsage},
	} {
		if r := run(tt.token, tt.args...); r.code != tt.code {
			t.Errorf("%s: securemsgctl %s = exit %d (%v), want %d", tt.name, strings.Join(tt.args, " "), r.code, r.err, tt.code)
		}
	}

	ack := run(auditor, "audit", "ack", alert.GetAlertId(), "--note", "called the ward: planned emergency access, ticket SEC-7")
	if ack.err != nil || !strings.Contains(ack.out, "acknowledged by") || !strings.Contains(ack.out, "SEC-7") {
		t.Fatalf("audit ack = %q, %v (exit %d); want the acknowledged alert", ack.out, ack.err, ack.code)
	}
	again := run(auditor, "audit", "ack", alert.GetAlertId(), "--note", "again")
	if again.err != nil || !strings.Contains(again.out, "SEC-7") || strings.Contains(again.out, "again") {
		t.Errorf("second audit ack = %q, %v; want the first acknowledgement unchanged", again.out, again.err)
	}
	if open := run(auditor, "audit", "alerts", "--open", "--rule", "break_glass"); open.err != nil || strings.TrimSpace(open.out) != "no alert" {
		t.Errorf("audit alerts --open after the acknowledgement = %q, %v; want no alert", open.out, open.err)
	}
}

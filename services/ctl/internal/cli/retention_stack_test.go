package cli_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/ctl/internal/cli"
	"github.com/securemsg/securemsg/services/ctl/internal/config"
	"github.com/securemsg/securemsg/services/ctl/internal/exitcode"
	"github.com/securemsg/securemsg/services/internal/testkit/privstack"
)

// ctlRun is one securemsgctl run: what it wrote on stdout and stderr, its error and its exit
// status.
type ctlRun struct {
	out, errOut string
	err         error
	code        int
}

// TestRetentionAndLegalHoldCommandsAgainstMessaging drives `securemsgctl retention purge` and
// `legal-hold` against the messaging and attachment services of a private stack, with threads
// a patient wrote and the test aged past retention in the database: a dry run counts them and
// the held one, a purge asks for confirmation and refuses to run without one, a confirmed purge
// runs call by call and purges all but the held thread, lifting the hold lets the next purge
// take it, and every refusal ends with the exit status a script acts on.
func TestRetentionAndLegalHoldCommandsAgainstMessaging(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a private stack")
	}
	s := privstack.Start(t, privstack.Options{Services: []string{"messaging", "attachment"}, Without: []string{"clamd", "mailpit"},
		// No purge but the test's own.
		ServiceEnv: map[string]map[string]string{"messaging": {"SECUREMSG_MESSAGING_PURGE_INTERVAL": "0"}}})
	tokenFile := func(user string) string {
		f := filepath.Join(t.TempDir(), user+".token")
		if err := os.WriteFile(f, []byte(s.Token(t, user)), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	admin, clinician := tokenFile("admin"), tokenFile("clinician")
	run := func(token, stdin string, args ...string) ctlRun {
		t.Helper()
		root := cli.NewRootCommand(config.Env{})
		var out, errOut bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&errOut)
		root.SetIn(strings.NewReader(stdin))
		root.SetArgs(append(args, "--addr", s.Service("messaging").Addr(), "--ca", filepath.Join(s.CertsDir(), "ca.pem"),
			"--server-name", "messaging", "--token-file", token))
		err := root.ExecuteContext(t.Context())
		return ctlRun{out: out.String(), errOut: errOut.String(), err: err, code: exitcode.Of(err)}
	}
	must := func(stdin string, args ...string) ctlRun {
		t.Helper()
		r := run(admin, stdin, args...)
		if r.err != nil {
			t.Fatalf("securemsgctl %s: %v (exit %d)\n%s%s", strings.Join(args, " "), r.err, r.code, r.out, r.errOut)
		}
		t.Logf("securemsgctl %s\n%s%s", strings.Join(args, " "), r.errOut, r.out)
		return r
	}
	wantExit := func(code int, token, stdin string, args ...string) ctlRun {
		t.Helper()
		r := run(token, stdin, args...)
		if r.code != code {
			t.Errorf("securemsgctl %s = exit %d (%v), want exit %d", strings.Join(args, " "), r.code, r.err, code)
		}
		return r
	}
	contains := func(what, got string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("%s = %q, want it to contain %q", what, got, w)
			}
		}
	}
	purgeJSON := func(r ctlRun) *messagingv1.RunRetentionPurgeResponse {
		t.Helper()
		lines := strings.Split(strings.TrimSuffix(r.out, "\n"), "\n")
		var resp messagingv1.RunRetentionPurgeResponse
		if len(lines) != 1 || !json.Valid([]byte(lines[0])) || protojson.Unmarshal([]byte(lines[0]), &resp) != nil {
			t.Fatalf("--json output = %q, want one line of a RunRetentionPurgeResponse", r.out)
		}
		return &resp
	}
	counts := func(what string, c *messagingv1.RetentionCounts, eligible, purged, held int64) {
		t.Helper()
		if c.GetThreadsEligible() != eligible || c.GetThreadsPurged() != purged || c.GetThreadsSkippedLegalHold() != held {
			t.Errorf("%s = %v, want %d eligible, %d purged, %d held", what, c, eligible, purged, held)
		}
	}

	// Three threads of the patient's (two general, one billing), aged past every category's
	// default retention period, and one fresh thread that no purge may touch.
	api := messagingv1.NewMessagingServiceClient(s.Conn(t, "messaging"))
	patient := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+s.Token(t, "patient"))
	var patientID string
	create := func(cat commonv1.ThreadCategory) string {
		t.Helper()
		resp, err := api.CreateThread(patient, &messagingv1.CreateThreadRequest{PoolId: "pool-cardiology", Category: cat,
			Sensitivity: commonv1.Sensitivity_SENSITIVITY_NORMAL, Subject: "retention ctl test", Body: "to be purged", ClientRequestId: newUUID(t)})
		if err != nil {
			t.Fatalf("CreateThread = %v", err)
		}
		patientID = resp.GetThread().GetPatientId()
		return resp.GetThread().GetThreadId()
	}
	held, general, billing := create(commonv1.ThreadCategory_THREAD_CATEGORY_GENERAL), create(commonv1.ThreadCategory_THREAD_CATEGORY_GENERAL),
		create(commonv1.ThreadCategory_THREAD_CATEGORY_BILLING)
	fresh := create(commonv1.ThreadCategory_THREAD_CATEGORY_GENERAL)
	db, err := pgxpool.New(t.Context(), s.PostgresURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := db.Exec(t.Context(), `UPDATE messaging.threads SET last_message_at = now() - interval '4000 days' WHERE id = ANY($1)`,
		[]string{held, general, billing}); err != nil {
		t.Fatal(err)
	}
	threadsLeft := func() map[string]bool {
		t.Helper()
		left := map[string]bool{}
		rows, err := db.Query(t.Context(), `SELECT id::text FROM messaging.threads`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			left[id] = true
		}
		return left
	}

	// The policy in force: the default periods, no purge job, no hold yet; nothing to list.
	r := must("", "retention", "show")
	contains("retention show", r.out, "CATEGORY", "general", "2555d", "clinical-question", "3650d", "appointment", "730d",
		"purge job is off", "legal holds keep 0 threads (0 patient holds, 0 thread holds)")
	contains("legal-hold list with no hold", must("", "legal-hold", "list").out, "no legal hold in force")
	if r := must("", "legal-hold", "list", "--json"); r.out != "" {
		t.Errorf("legal-hold list --json with no hold = %q, want nothing", r.out)
	}

	// Legal hold: placed, refused without a case, for a bad or unknown thread, and to a clinician.
	r = must("", "legal-hold", "set", held, "--case", "LIT-2026-0042")
	contains("legal-hold set", r.out, "legal hold in force on thread "+held, "case LIT-2026-0042", "1 thread changed")
	r = must("", "legal-hold", "set", held, "--case", "LIT-2026-0042", "--json")
	var hold messagingv1.SetLegalHoldResponse
	if err := protojson.Unmarshal([]byte(r.out), &hold); err != nil || !hold.GetOn() || hold.GetThreadsAffected() != 0 || hold.GetCaseReference() != "LIT-2026-0042" {
		t.Errorf("legal-hold set again --json = %q (%v), want on, 0 threads affected, the case", r.out, err)
	}
	wantExit(exitcode.BadUsage, admin, "", "legal-hold", "set", held)
	wantExit(exitcode.BadUsage, admin, "", "legal-hold", "set", held, "--patient", "user-patient", "--case", "LIT-1")
	wantExit(exitcode.BadUsage, admin, "", "legal-hold", "set", "not-a-uuid", "--case", "LIT-1")
	wantExit(exitcode.NotFound, admin, "", "legal-hold", "set", newUUID(t), "--case", "LIT-1")
	wantExit(exitcode.Refused, clinician, "", "legal-hold", "clear", held)
	wantExit(exitcode.Refused, clinician, "", "legal-hold", "list")
	wantExit(exitcode.Refused, clinician, "", "retention", "show")
	wantExit(exitcode.BadUsage, admin, "", "legal-hold", "list", "--page-size", "0")
	wantExit(exitcode.BadUsage, admin, "", "retention", "show", "extra-argument")

	// The hold is listed with its case and who placed it, and counted by show.
	contains("legal-hold list", must("", "legal-hold", "list").out, "KIND", "thread", held, "LIT-2026-0042", "admin")
	var listed messagingv1.LegalHold
	if r := must("", "legal-hold", "list", "--json"); protojson.Unmarshal([]byte(r.out), &listed) != nil || listed.GetThreadId() != held ||
		listed.GetCaseReference() != "LIT-2026-0042" || listed.GetCreatedBySubject() != "admin" || listed.GetCreateTime() == nil {
		t.Errorf("legal-hold list --json = %q, want one line: the hold on %s, case LIT-2026-0042, placed by admin, with its time", r.out, held)
	}
	var pol messagingv1.GetRetentionPolicyResponse
	if r := must("", "retention", "show", "--json"); protojson.Unmarshal([]byte(r.out), &pol) != nil || len(pol.GetPeriods()) != 7 ||
		pol.GetThreadsOnLegalHold() != 1 || pol.GetThreadLegalHolds() != 1 || pol.GetPatientLegalHolds() != 0 || pol.GetPurgeInterval() != nil {
		t.Errorf("retention show --json = %q, want 7 periods, 1 thread held by its own hold, no purge job", r.out)
	}

	// Dry run: two threads past retention, the held one kept, nothing changed.
	r = must("", "retention", "purge", "--dry-run")
	contains("retention purge --dry-run", r.out, "general", "billing", "dry run as of", "nothing changed; 2 threads would be purged", "1 held thread kept")
	dry := purgeJSON(must("", "retention", "purge", "--dry-run", "--json"))
	counts("dry run total", dry.GetTotal(), 2, 0, 1)
	if !dry.GetDryRun() || len(dry.GetByCategory()) != 2 {
		t.Errorf("dry run = %v, want a dry run with two categories", dry)
	}
	counts("dry run, billing only", purgeJSON(must("", "retention", "purge", "--dry-run", "--json", "--category", "billing")).GetTotal(), 1, 0, 0)

	// Refusals: a clinician, bad flags, no confirmation, a declined one. Nothing is purged.
	wantExit(exitcode.Refused, clinician, "", "retention", "purge", "--dry-run")
	wantExit(exitcode.BadUsage, admin, "", "retention", "purge", "--category", "gossip", "--dry-run")
	wantExit(exitcode.BadUsage, admin, "", "retention", "purge", "--limit", "-1", "--dry-run")
	wantExit(exitcode.BadUsage, admin, "", "retention", "purge", "--as-of", "yesterday", "--dry-run")
	wantExit(exitcode.BadUsage, admin, "", "retention", "purge", "--no-such-flag")
	r = wantExit(exitcode.BadUsage, admin, "", "retention", "purge")
	contains("retention purge without --yes or an answer", r.errOut, "About to purge for good 2 threads", "1 held thread kept", "Type yes")
	r = wantExit(exitcode.Failed, admin, "no\n", "retention", "purge")
	contains("retention purge, declined", r.err.Error(), "not confirmed")
	if left := threadsLeft(); !left[held] || !left[general] || !left[billing] || !left[fresh] {
		t.Fatalf("threads after refused purges = %v, want all four kept", left)
	}

	// A confirmed purge, one thread per call: two threads purged in two calls, the service
	// saying after the first that its limit stopped it short; the held thread kept.
	r = must("yes\n", "retention", "purge", "--limit", "1")
	contains("retention purge --limit 1 (stderr)", r.errOut, "About to purge for good at least 1 thread",
		"purge call 1: 1 thread purged (2 messages, 0 attachments); the limit was reached, calling again",
		"purge call 2: 1 thread purged (2 messages, 0 attachments); done")
	contains("retention purge --limit 1", r.out, "purged 2 threads past retention in 2 calls", "1 held thread kept")
	if left := threadsLeft(); !left[held] || left[general] || left[billing] || !left[fresh] {
		t.Fatalf("threads after the purge = %v, want %s and %s gone, the held and fresh ones kept", left, general, billing)
	}
	r = must("", "retention", "purge", "--yes")
	contains("retention purge with nothing past retention", r.out, "nothing past retention as of", "nothing purged, 1 held thread kept")

	// Lifting the hold: the next purge (--yes, --json) takes the thread.
	contains("legal-hold clear", must("", "legal-hold", "clear", held).out, "legal hold lifted from thread "+held, "1 thread changed")
	done := purgeJSON(must("", "retention", "purge", "--yes", "--json"))
	counts("purge after lifting the hold", done.GetTotal(), 1, 1, 0)
	if done.GetDryRun() || done.GetTruncated() {
		t.Errorf("purge = %v, want a finished purge", done)
	}
	if left := threadsLeft(); left[held] || !left[fresh] {
		t.Fatalf("threads after the last purge = %v, want only the fresh one of the test's", left)
	}

	// A hold on the patient covers their last thread, once it too is past retention.
	if _, err := db.Exec(t.Context(), `UPDATE messaging.threads SET last_message_at = now() - interval '4000 days' WHERE id = $1`, fresh); err != nil {
		t.Fatal(err)
	}
	contains("legal-hold set --patient", must("", "legal-hold", "set", "--patient", patientID, "--case", "LIT-2026-0043").out,
		"legal hold in force on the threads of patient "+patientID, "case LIT-2026-0043")
	contains("legal-hold list with a patient hold", must("", "legal-hold", "list").out, "patient", patientID, "LIT-2026-0043")
	contains("retention show with a patient hold", must("", "retention", "show").out, "legal holds keep 1 thread (1 patient hold, 0 thread holds)")
	counts("dry run under a patient hold", purgeJSON(must("", "retention", "purge", "--dry-run", "--json")).GetTotal(), 0, 0, 1)
	contains("legal-hold clear --patient", must("", "legal-hold", "clear", "--patient", patientID).out, "legal hold lifted from the threads of patient "+patientID)

	// The service failing (the attachment service down): exit status 1, nothing purged.
	if err := s.Service("attachment").Stop(); err != nil {
		t.Fatal(err)
	}
	r = wantExit(exitcode.Failed, admin, "", "retention", "purge", "--yes")
	contains("retention purge, attachment service down", fmt.Sprint(r.err), "Unavailable")
	if !threadsLeft()[fresh] {
		t.Fatal("thread purged although its attachments could not be")
	}
}

func newUUID(t *testing.T) string {
	t.Helper()
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

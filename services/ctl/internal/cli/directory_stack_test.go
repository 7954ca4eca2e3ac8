package cli_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/securemsg/securemsg/services/ctl/internal/cli"
	"github.com/securemsg/securemsg/services/ctl/internal/config"
	"github.com/securemsg/securemsg/services/internal/testkit/privstack"
)

// TestDirectoryCommandsAgainstMessaging drives `securemsgctl pools`, `apps` and `people` against
// a messaging service of a private stack, as an operator would with an admin's token file: a
// pool created, given a member and deactivated; an app registered and withdrawn; a nurse
// provisioned and deactivated; and the refusals the service gives, passed on as errors.
func TestDirectoryCommandsAgainstMessaging(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a private stack")
	}
	s := privstack.Start(t, privstack.Options{Services: []string{"messaging"}, Without: []string{"minio", "clamd", "mailpit"}})
	tokenFile := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(tokenFile, []byte(s.Token(t, "admin")), 0o600); err != nil {
		t.Fatal(err)
	}
	clinicianFile := filepath.Join(t.TempDir(), "clinician.token")
	if err := os.WriteFile(clinicianFile, []byte(s.Token(t, "clinician")), 0o600); err != nil {
		t.Fatal(err)
	}
	conn := func(token string) []string {
		return []string{"--addr", s.Service("messaging").Addr(), "--ca", filepath.Join(s.CertsDir(), "ca.pem"),
			"--server-name", "messaging", "--token-file", token}
	}
	run := func(token string, args ...string) (string, error) {
		t.Helper()
		root := cli.NewRootCommand(config.Env{})
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append(args, conn(token)...))
		err := root.ExecuteContext(t.Context())
		return out.String(), err
	}
	must := func(want string, args ...string) string {
		t.Helper()
		out, err := run(tokenFile, args...)
		if err != nil {
			t.Fatalf("securemsgctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if !strings.Contains(out, want) {
			t.Fatalf("securemsgctl %s printed %q, want it to contain %q", strings.Join(args, " "), out, want)
		}
		return out
	}
	refused := func(want string, token string, args ...string) {
		t.Helper()
		out, err := run(token, args...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("securemsgctl %s = %v (%q), want an error with %q", strings.Join(args, " "), err, out, want)
		}
	}

	// Pools.
	must("pool-ctl-test", "pools", "create", "pool-ctl-test", "--name", "Ctl test clinic")
	must("pool-ctl-test", "pools", "list")
	must("clinician", "pools", "add-member", "pool-ctl-test", "clinician", "--role", "clinician")
	must("clinician", "pools", "members", "pool-ctl-test")
	must("false", "pools", "deactivate", "pool-ctl-test")
	refused("NotFound", tokenFile, "pools", "get", "pool-nowhere")
	refused("PermissionDenied", clinicianFile, "pools", "create", "pool-ctl-other", "--name", "Other")

	// Client apps.
	must("careteam-ctl", "apps", "register", "careteam-ctl", "--kind", "care-team", "--name", "Ctl care-team app",
		"--scope", "messages.read", "--pool", "pool-cardiology")
	must("careteam-ctl", "apps", "list")
	must("false", "apps", "withdraw", "careteam-ctl")
	refused("AlreadyExists", tokenFile, "apps", "register", "careteam-ctl", "--kind", "care-team", "--name", "Again", "--scope", "messages.read")

	// People.
	must("user-nurse-ctl", "people", "provision", "user-nurse-ctl", "--role", "staff", "--user-name", "nurse.ctl@example.org", "--name", "Nurse Ctl")
	must("nurse.ctl@example.org", "people", "list", "--source", "provisioned")
	must("deactivated", "people", "deactivate", "user-nurse-ctl")
	must("deactivated", "people", "get", "user-nurse-ctl")
	must("active", "people", "activate", "user-nurse-ctl")
	refused("FailedPrecondition", tokenFile, "people", "provision", "patient", "--role", "clinician")
	refused("PermissionDenied", tokenFile, "people", "deactivate", "admin")
	refused("PermissionDenied", clinicianFile, "people", "list")
	if _, err := run(tokenFile, "people", "provision", "user-x", "--role", "patient"); err == nil || !strings.Contains(err.Error(), "--role") {
		t.Errorf("people provision --role patient = %v, want the flag refused before any call", err)
	}
}

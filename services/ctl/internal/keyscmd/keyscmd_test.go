package keyscmd_test

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/securemsg/securemsg/services/ctl/internal/config"
	"github.com/securemsg/securemsg/services/ctl/internal/keyscmd"
	"github.com/securemsg/securemsg/services/internal/platform/keys"
	"github.com/securemsg/securemsg/services/internal/testkit"
)

// TestKeysCommands drives rotate, status, coverage, rewrap (dry run, then for real with a
// checkpoint) and retire against a Transit dev server and a real Postgres table.
func TestKeysCommands(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv := testkit.StartTransit(t)
	pool := testkit.Postgres(t)
	schema := testkit.NewSchema(t, pool)
	tr, err := keys.NewTransit(ctx, keys.Config{Addr: srv.Addr(), Token: srv.Token()})
	if err != nil {
		t.Fatal(err)
	}
	const key = "messaging"
	if err := tr.CreateKey(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, fmt.Sprintf(`CREATE TABLE %s.threads (id bigint PRIMARY KEY, dek text)`, schema)); err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		_, w, err := tr.GenerateDataKey(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pool.Exec(ctx, fmt.Sprintf(`INSERT INTO %s.threads VALUES ($1, $2)`, schema), i, w); err != nil {
			t.Fatal(err)
		}
	}
	env := config.Env{VaultAddr: srv.Addr(), VaultToken: srv.Token(), TransitMount: "transit", PostgresURL: testkit.LoadStack().PostgresURL}
	store := "--store=pg:" + schema + ".threads.id.dek"
	run := func(args ...string) (string, error) {
		t.Helper()
		cmd := keyscmd.NewCommand(env)
		var out, errOut bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&errOut)
		cmd.SetArgs(append(args, "--key", key))
		err := cmd.ExecuteContext(ctx)
		return out.String(), err
	}
	mustRun := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("keys %v: %v\n%s", args, err, out)
		}
		return out
	}

	if out := mustRun("rotate"); !strings.Contains(out, "latest version is now 2") {
		t.Fatalf("rotate output = %q", out)
	}
	if out := mustRun("status"); !strings.Contains(out, "latest_version:         2") || !strings.Contains(out, "versions:               1, 2") {
		t.Fatalf("status output = %q", out)
	}
	if out := mustRun("coverage", store); !strings.Contains(out, "v1:12") || !strings.Contains(out, "0.00%") {
		t.Fatalf("coverage output = %q", out)
	}
	if out, err := run("retire", store, "--min-version", "2"); err == nil || !strings.Contains(err.Error(), "not 100%") {
		t.Fatalf("retire before rewrap = %v (%q), want a refusal", err, out)
	}
	if out := mustRun("rewrap", store, "--dry-run", "--batch", "5"); !strings.Contains(out, "would rewrap 12") {
		t.Fatalf("rewrap --dry-run output = %q", out)
	}
	cp := filepath.Join(t.TempDir(), "cp.json")
	if out := mustRun("rewrap", store, "--batch", "5", "--resume", cp); !strings.Contains(out, "rewrapped 12") || !strings.Contains(out, "100.00%") {
		t.Fatalf("rewrap output = %q", out)
	}
	if out := mustRun("rewrap", store, "--resume", cp); !strings.Contains(out, "skipped") {
		t.Fatalf("rewrap rerun with a finished checkpoint = %q, want skipped", out)
	}
	if out := mustRun("retire", store, "--min-version", "2"); !strings.Contains(out, "is now 2") {
		t.Fatalf("retire output = %q", out)
	}
	if out := mustRun("status"); !strings.Contains(out, "min_decryption_version: 2") {
		t.Fatalf("status after retire = %q", out)
	}
	if _, err := run("coverage", "--store=pg:x.y;drop.id.dek"); err == nil {
		t.Fatal("coverage with an invalid store spec: error = nil")
	}
}

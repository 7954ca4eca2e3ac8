package keyscmd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.yaml.in/yaml/v3"

	"github.com/securemsg/securemsg/services/ctl/internal/config"
	"github.com/securemsg/securemsg/services/ctl/internal/exitcode"
	"github.com/securemsg/securemsg/services/ctl/internal/keyscmd"
	"github.com/securemsg/securemsg/services/internal/platform/keys"
	"github.com/securemsg/securemsg/services/internal/platform/migrate"
	"github.com/securemsg/securemsg/services/internal/testkit"
)

// migratedDatabase creates a database of the test's own on the dev stack's Postgres, migrates
// into it every schema of the registry's services with the services' own migrations (the .sql
// files under services/<service>/migrations, as the services apply them at start), and returns
// a pool on it and its URL. The schemas keep their real names, so a store spec means there what
// it means in production.
func migratedDatabase(t *testing.T) (*pgxpool.Pool, string) {
	t.Helper()
	admin := testkit.Postgres(t)
	name := testkit.UniqueName(t, "ctl_", 50)
	if _, err := admin.Exec(t.Context(), "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	cfg, err := pgxpool.ParseConfig(testkit.LoadStack().PostgresURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.Database = name
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	for _, sk := range keyscmd.Registry {
		if err := migrate.Up(t.Context(), pool, sk.Service, serviceMigrations(t, sk.Service), nil); err != nil {
			t.Fatalf("migrate %s: %v", sk.Service, err)
		}
	}
	u, err := url.Parse(testkit.LoadStack().PostgresURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return pool, u.String()
}

// serviceMigrations reads the .sql migrations of a service from the source tree.
func serviceMigrations(t *testing.T, service string) fs.FS {
	t.Helper()
	dir := filepath.Join(testkit.RepoRoot(), "services", service, "migrations")
	files, err := filepath.Glob(filepath.Join(dir, "*.sql"))
	if err != nil || len(files) == 0 {
		t.Fatalf("migrations of %s in %s: %v (found %d)", service, dir, err, len(files))
	}
	out := fstest.MapFS{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = &fstest.MapFile{Data: b}
	}
	return out
}

// rewrapJob is what a rewrap CronJob of deploy/k8s/components/keys-rewrap runs: the key and the
// stores, with the ConfigMap's $(VAR)s expanded.
type rewrapJob struct {
	name, key string
	stores    []string
}

var k8sVar = regexp.MustCompile(`^\$\(([A-Z0-9_]+)\)$`)

// deployedRewrapJobs reads the rewrap component: the ConfigMap's literals and every CronJob's
// --key and --store arguments.
func deployedRewrapJobs(t *testing.T) []rewrapJob {
	t.Helper()
	dir := filepath.Join(testkit.RepoRoot(), "deploy", "k8s", "components", "keys-rewrap")
	var kust struct {
		ConfigMapGenerator []struct {
			Name     string   `yaml:"name"`
			Literals []string `yaml:"literals"`
		} `yaml:"configMapGenerator"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &kust); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	vars := map[string]string{}
	for _, g := range kust.ConfigMapGenerator {
		for _, l := range g.Literals {
			k, v, _ := strings.Cut(l, "=")
			vars[k] = v
		}
	}
	f, err := os.Open(filepath.Join(dir, "cronjobs.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	dec := yaml.NewDecoder(f)
	var jobs []rewrapJob
	for {
		var cj struct {
			Kind     string `yaml:"kind"`
			Metadata struct {
				Name string `yaml:"name"`
			} `yaml:"metadata"`
			Spec struct {
				JobTemplate struct {
					Spec struct {
						Template struct {
							Spec struct {
								Containers []struct {
									Args []string `yaml:"args"`
								} `yaml:"containers"`
							} `yaml:"spec"`
						} `yaml:"template"`
					} `yaml:"spec"`
				} `yaml:"jobTemplate"`
			} `yaml:"spec"`
		}
		if err := dec.Decode(&cj); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("cronjobs.yaml: %v", err)
		}
		if cj.Kind != "CronJob" {
			continue
		}
		job := rewrapJob{name: cj.Metadata.Name}
		for _, c := range cj.Spec.JobTemplate.Spec.Template.Spec.Containers {
			for i := 0; i+1 < len(c.Args); i++ {
				v := c.Args[i+1]
				if m := k8sVar.FindStringSubmatch(v); m != nil {
					var ok bool
					if v, ok = vars[m[1]]; !ok {
						t.Errorf("CronJob %s: %s names %s, which keys-rewrap-config does not define", job.name, c.Args[i], m[1])
					}
				}
				switch c.Args[i] {
				case "--key":
					job.key = v
				case "--store":
					job.stores = append(job.stores, v)
				}
			}
		}
		jobs = append(jobs, job)
	}
	return jobs
}

// TestRegistryMatchesSchemasAndDeploy: every store of the registry and of the rewrap CronJobs
// names a real table with a pageable id column and a text wrapped-key column in the services'
// migrated schemas, and each service's CronJob rewraps exactly its registry key's stores.
func TestRegistryMatchesSchemasAndDeploy(t *testing.T) {
	t.Parallel()
	pool, _ := migratedDatabase(t)
	check := func(where, spec string) {
		t.Helper()
		s, err := keys.ParsePGStoreSpec(spec)
		if err == nil {
			_, err = keys.NewPGStore(t.Context(), pool, s)
		}
		if err != nil {
			t.Errorf("%s: store %s: %v", where, spec, err)
		}
	}
	for _, sk := range keyscmd.Registry {
		if len(sk.Stores) == 0 {
			t.Errorf("registry: service %s has no stores", sk.Service)
		}
		for _, st := range sk.StoreFlags() {
			check("registry "+sk.Service, st)
		}
	}
	jobs := deployedRewrapJobs(t)
	for _, sk := range keyscmd.Registry {
		i := slices.IndexFunc(jobs, func(j rewrapJob) bool { return j.key == sk.Key })
		if i < 0 {
			t.Errorf("deploy: no rewrap CronJob for %s's key %s", sk.Service, sk.Key)
			continue
		}
		got, want := slices.Sorted(slices.Values(jobs[i].stores)), slices.Sorted(slices.Values(sk.StoreFlags()))
		if !slices.Equal(got, want) {
			t.Errorf("deploy: CronJob %s rewraps stores %v, want the registry's %v", jobs[i].name, got, want)
		}
	}
	for _, j := range jobs {
		if _, ok := keyscmd.Lookup(strings.TrimPrefix(j.key, "securemsg-")); !ok {
			t.Errorf("deploy: CronJob %s rewraps key %q, which no service of the registry uses", j.name, j.key)
		}
		for _, st := range j.stores {
			check("deploy CronJob "+j.name, st)
		}
	}
}

// TestKeysStatusAndNotificationRewrap drives `keys status` over every service key and
// `keys rotate|rewrap|retire --service notification` over notification's real person_keys
// table (its migrated schema, in a database of the test's own) with a Transit dev server of the
// test's own: after a rotation the person keys are behind, a rewrap moves every one of them
// to the latest version, and the old version can then be retired.
func TestKeysStatusAndNotificationRewrap(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, pgURL := migratedDatabase(t)
	srv := testkit.StartTransit(t)
	tr, err := keys.NewTransit(ctx, keys.Config{Addr: srv.Addr(), Token: srv.Token()})
	if err != nil {
		t.Fatal(err)
	}
	for _, sk := range keyscmd.Registry {
		if err := tr.CreateKey(ctx, sk.Key); err != nil {
			t.Fatal(err)
		}
	}
	const people = 7
	for i := range people {
		_, w, err := tr.GenerateDataKey(ctx, "securemsg-notification")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pool.Exec(ctx, `INSERT INTO notification.person_keys (subject, wrapped_dek) VALUES ($1, $2)`, fmt.Sprintf("user-%02d", i), w); err != nil {
			t.Fatal(err)
		}
	}
	env := config.Env{VaultAddr: srv.Addr(), VaultToken: srv.Token(), TransitMount: "transit", PostgresURL: pgURL}
	run := func(args ...string) (string, error) {
		t.Helper()
		cmd := keyscmd.NewCommand(env)
		var out, errOut bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&errOut)
		cmd.SetArgs(args)
		err := cmd.ExecuteContext(ctx)
		return out.String(), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("keys %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("keys %s\n%s", strings.Join(args, " "), out)
		return out
	}
	contains := func(what, got string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("%s = %q, want it to contain %q", what, got, w)
			}
		}
	}
	status := func(args ...string) map[string]statusLine {
		t.Helper()
		out := map[string]statusLine{}
		for _, line := range strings.Split(strings.TrimSpace(must(append([]string{"status", "--json"}, args...)...)), "\n") {
			var s statusLine
			if err := json.Unmarshal([]byte(line), &s); err != nil {
				t.Fatalf("keys status --json line %q: %v", line, err)
			}
			out[s.Key] = s
		}
		return out
	}
	notification := func(s statusLine) (total, onLatest int) {
		for _, st := range s.Stores {
			if st.Store == "notification.person_keys.wrapped_dek" {
				return st.Total, st.OnLatest
			}
		}
		t.Fatalf("status of %s = %+v, want the person_keys store", s.Key, s)
		return 0, 0
	}

	// Every service key, with its stores.
	contains("keys status", must("status"), "SERVICE", "messaging", "securemsg-messaging", "messaging.threads.wrapped_dek", "messaging.people.wrapped_dek",
		"attachment", "attachment.attachments.wrapped_dek", "notification", "securemsg-notification", "notification.person_keys.wrapped_dek", "v1:7")
	all := status()
	if len(all) != len(keyscmd.Registry) {
		t.Fatalf("keys status --json = %d keys, want one per registry service (%d)", len(all), len(keyscmd.Registry))
	}
	if s := all["securemsg-notification"]; s.LatestVersion != 1 || !s.Complete {
		t.Errorf("notification key before rotation = %+v, want v1, complete", s)
	}

	// Rotate: the person keys fall behind, retiring v1 is refused.
	contains("keys rotate --service notification", must("rotate", "--service", "notification"), "latest version is now 2")
	s := status("--service", "notification")["securemsg-notification"]
	if total, on := notification(s); s.LatestVersion != 2 || s.Complete || total != people || on != 0 {
		t.Errorf("notification key after rotation = %+v, want v2 with 0 of %d person keys on it", s, people)
	}
	if out, err := run("retire", "--service", "notification", "--min-version", "2"); err == nil || !strings.Contains(err.Error(), "not 100%") {
		t.Errorf("retire before rewrap = %v (%q), want a refusal", err, out)
	}

	// Rewrap: every person key moves to v2, in the table itself.
	contains("keys rewrap --service notification", must("rewrap", "--service", "notification", "--batch", "3"),
		"notification.person_keys.wrapped_dek: scanned 7, rewrapped 7", "100.00%")
	var behind int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM notification.person_keys WHERE wrapped_dek NOT LIKE 'vault:v2:%'`).Scan(&behind); err != nil || behind != 0 {
		t.Errorf("person keys not on v2 after rewrap = %d, %v; want 0", behind, err)
	}
	s = status("--service", "notification")["securemsg-notification"]
	if total, on := notification(s); !s.Complete || total != people || on != people {
		t.Errorf("notification key after rewrap = %+v, want all %d person keys on v2", s, people)
	}
	contains("keys retire --service notification", must("retire", "--service", "notification", "--min-version", "2"), "is now 2")
	if s := status()["securemsg-notification"]; s.MinDecryptionVersion != 2 {
		t.Errorf("notification key after retire = %+v, want min_decryption_version 2", s)
	}
	// The other keys were not touched.
	if s := status()["securemsg-messaging"]; s.LatestVersion != 1 {
		t.Errorf("messaging key = %+v, want v1: only notification's was rotated", s)
	}

	// What a script acts on: usage errors exit 2, an unknown key 4.
	for _, args := range [][]string{
		{"rotate"},
		{"rewrap", "--key", "securemsg-notification"},
		{"status", "--service", "nobody"},
		{"status", "--store", "pg:notification.person_keys.subject.wrapped_dek"},
		{"coverage", "--key", "securemsg-notification", "--store", "pg:x.y;drop.id.dek"},
	} {
		if _, err := run(args...); exitcode.Of(err) != exitcode.BadUsage {
			t.Errorf("keys %s = exit %d (%v), want %d", strings.Join(args, " "), exitcode.Of(err), err, exitcode.BadUsage)
		}
	}
	if _, err := run("status", "--key", "securemsg-nobody"); exitcode.Of(err) != exitcode.NotFound {
		t.Errorf("keys status --key securemsg-nobody = exit %d (%v), want %d", exitcode.Of(err), err, exitcode.NotFound)
	}
}

// statusLine is a line of `keys status --json`, as a script reads it.
type statusLine struct {
	Service              string `json:"service"`
	Key                  string `json:"key"`
	LatestVersion        int    `json:"latest_version"`
	MinDecryptionVersion int    `json:"min_decryption_version"`
	Complete             bool   `json:"complete"`
	Stores               []struct {
		Store    string `json:"store"`
		Total    int    `json:"total"`
		OnLatest int    `json:"on_latest"`
	} `json:"stores"`
}

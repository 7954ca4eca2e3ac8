package validate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const natsDir = "../nats"

// sharedAPI is what every service's start-up does (daemon.Start): natsx.EnsureStreams updates
// the two streams and the directory bucket, or creates them when missing (reading the account's
// limits first); directory.Watch opens the bucket (stream info) and follows it through an ordered push consumer that it re-creates (and
// deletes the old one) when it resets, answering flow control.
var sharedAPI = []string{
	"$JS.API.INFO",
	"$JS.API.STREAM.CREATE.KV_SECUREMSG_DIRECTORY", "$JS.API.STREAM.CREATE.SECUREMSG_AUDIT", "$JS.API.STREAM.CREATE.SECUREMSG_EVENTS",
	"$JS.API.STREAM.INFO.KV_SECUREMSG_DIRECTORY",
	"$JS.API.STREAM.UPDATE.KV_SECUREMSG_DIRECTORY", "$JS.API.STREAM.UPDATE.SECUREMSG_AUDIT", "$JS.API.STREAM.UPDATE.SECUREMSG_EVENTS",
	"$JS.API.CONSUMER.CREATE.KV_SECUREMSG_DIRECTORY.>", "$JS.API.CONSUMER.DELETE.KV_SECUREMSG_DIRECTORY.*",
	"$JS.FC.KV_SECUREMSG_DIRECTORY.>",
}

// producerSubjects are what every service's outbox relay and audit reconciler publish.
func producerSubjects(svc string) []string {
	return []string{"securemsg.audit." + svc, "securemsg.reconcile.audit." + svc}
}

// natsUserPlan is one SECUREMSG service user's permissions.
type natsUserPlan struct {
	publish, publishDeny, subscribe []string
	responses                       bool
}

// natsPlan is each SECUREMSG service user's permissions, beyond sharedAPI and its
// producerSubjects; nats_services_test.go performs the operations behind every grant.
var natsPlan = map[string]natsUserPlan{
	"messaging": {
		publish: []string{
			"securemsg.events.thread.>", "securemsg.events.message.>", "$KV.SECUREMSG_DIRECTORY.>",
			"$JS.API.CONSUMER.CREATE.SECUREMSG_EVENTS.*", "$JS.API.CONSUMER.MSG.NEXT.SECUREMSG_EVENTS.*",
			"$JS.API.CONSUMER.DELETE.SECUREMSG_EVENTS.*",
		},
		publishDeny: []string{
			"$JS.API.CONSUMER.CREATE.SECUREMSG_EVENTS.notification", "$JS.API.CONSUMER.DELETE.SECUREMSG_EVENTS.notification",
			"$JS.API.CONSUMER.MSG.NEXT.SECUREMSG_EVENTS.notification",
		},
		subscribe: []string{"_INBOX.>"},
	},
	"attachment": {publish: []string{"securemsg.events.attachment.>"}, subscribe: []string{"_INBOX.>"}},
	"notification": {
		publish: []string{
			"$JS.ACK.SECUREMSG_EVENTS.notification.>", "$JS.API.CONSUMER.CREATE.SECUREMSG_EVENTS.notification.>",
			"$JS.API.CONSUMER.INFO.SECUREMSG_EVENTS.notification", "$JS.API.CONSUMER.MSG.NEXT.SECUREMSG_EVENTS.notification",
		},
		subscribe: []string{"_INBOX.>"},
	},
	"audit": {
		publish: []string{
			"securemsg.events.anomaly.raised",
			"$JS.ACK.SECUREMSG_AUDIT.audit-log.>", "$JS.API.CONSUMER.CREATE.SECUREMSG_AUDIT.audit-log",
			"$JS.API.CONSUMER.INFO.SECUREMSG_AUDIT.audit-log", "$JS.API.CONSUMER.MSG.NEXT.SECUREMSG_AUDIT.audit-log",
		},
		subscribe: []string{"_INBOX.>", "securemsg.reconcile.audit.* audit"},
		responses: true,
	},
}

// setNATSPasswords puts a test password in every variable the configuration references.
func setNATSPasswords(t *testing.T) map[string]string {
	t.Helper()
	pw := map[string]string{}
	for _, u := range []string{"MESSAGING", "ATTACHMENT", "NOTIFICATION", "AUDIT", "JETSTREAM_ADMIN", "SYS"} {
		pw[u] = "test-" + strings.ToLower(u)
		t.Setenv("SECUREMSG_NATS_"+u+"_PASSWORD", pw[u])
	}
	pw["CARETEAM_CARDIOLOGY"] = "test-careteam"
	t.Setenv("CARETEAM_CARDIOLOGY_NATS_PASSWORD", pw["CARETEAM_CARDIOLOGY"])
	t.Setenv("NATS_SERVER_NAME", "nats-0")
	return pw
}

func TestNATSPermissionsMatchSubjectPlan(t *testing.T) {
	setNATSPasswords(t)
	accounts, err := LoadNATSAccounts(filepath.Join(natsDir, "nats-server.conf"))
	if err != nil {
		t.Fatal(err)
	}
	sm := accounts["SECUREMSG"]
	if sm == nil || !sm.JetStream {
		t.Fatalf("account SECUREMSG missing or without JetStream")
	}
	if !slices.Equal(sm.StreamExports, []string{"securemsg.events.message.created.*"}) {
		t.Errorf("SECUREMSG exports = %v, want only the message.created pools", sm.StreamExports)
	}
	seen := map[string]bool{}
	for _, u := range sm.Users {
		seen[u.Name] = true
		if !u.HasPassword {
			t.Errorf("user %s has no password", u.Name)
		}
		if slices.Contains(u.SubscribeAllow, ">") || slices.Contains(u.PublishAllow, ">") {
			t.Errorf("user %s may use every subject", u.Name)
		}
		if u.Name == "jetstream-admin" {
			if !slices.Equal(u.PublishAllow, []string{"$JS.API.>"}) || !slices.Equal(u.SubscribeAllow, []string{"_INBOX.>"}) {
				t.Errorf("jetstream-admin: publish %v subscribe %v, want the JetStream API only", u.PublishAllow, u.SubscribeAllow)
			}
			continue
		}
		plan, ok := natsPlan[u.Name]
		if !ok {
			t.Errorf("user %s is not in the plan", u.Name)
			continue
		}
		sorted := func(parts ...[]string) []string { return slices.Sorted(slices.Values(slices.Concat(parts...))) }
		for _, c := range []struct {
			what      string
			got, want []string
		}{
			{"publish allow", u.PublishAllow, sorted(plan.publish, sharedAPI, producerSubjects(u.Name))},
			{"publish deny", u.PublishDeny, sorted(plan.publishDeny)},
			{"subscribe allow", u.SubscribeAllow, sorted(plan.subscribe)},
			{"subscribe deny", u.SubscribeDeny, nil},
		} {
			if !slices.Equal(c.got, c.want) {
				t.Errorf("user %s %s =\n%v\nwant\n%v", u.Name, c.what, c.got, c.want)
			}
		}
		if u.AllowResponses != plan.responses {
			t.Errorf("user %s allow_responses = %v, want %v", u.Name, u.AllowResponses, plan.responses)
		}
	}
	for name := range natsPlan {
		if !seen[name] {
			t.Errorf("no NATS user %s", name)
		}
	}
	for name, a := range accounts {
		if !strings.HasPrefix(name, "CARETEAM_") {
			if name != "SECUREMSG" && name != "SYS" {
				t.Errorf("account %s is not in the plan", name)
			}
			continue
		}
		checkCareTeamAccount(t, a)
	}
}

// checkCareTeamAccount wants imports of single pools' message.created subjects from SECUREMSG,
// and one user subscribing to exactly those (plus its own inboxes).
func checkCareTeamAccount(t *testing.T, a *NATSAccount) {
	t.Helper()
	if len(a.Imports) == 0 || len(a.Users) != 1 {
		t.Errorf("care-team account %s: %d imports, %d users; want pools and one user", a.Name, len(a.Imports), len(a.Users))
		return
	}
	var pools []string
	for _, im := range a.Imports {
		pool, ok := strings.CutPrefix(im.Subject, "securemsg.events.message.created.")
		if im.Account != "SECUREMSG" || !ok || pool == "" || strings.ContainsAny(pool, ".*>") {
			t.Errorf("care-team account %s imports %s from %s, want one pool's message.created", a.Name, im.Subject, im.Account)
		}
		pools = append(pools, im.Subject)
	}
	u := a.Users[0]
	want := slices.Sorted(slices.Values(append(pools, "_INBOX.>")))
	if !slices.Equal(u.SubscribeAllow, want) {
		t.Errorf("care-team user %s subscribe = %v, want %v", u.Name, u.SubscribeAllow, want)
	}
	for _, s := range u.PublishAllow {
		if !strings.HasPrefix(s, "$JS.") {
			t.Errorf("care-team user %s may publish %s", u.Name, s)
		}
	}
}

func TestCareTeamRenderer(t *testing.T) {
	t.Parallel()
	render := func(args ...string) ([]byte, error) {
		cmd := exec.CommandContext(t.Context(), "bash", append([]string{filepath.Join(natsDir, "careteam", "render.sh")}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return out, fmt.Errorf("%w: %s", err, stderr.String())
		}
		return out, nil
	}
	t.Run("example is current", func(t *testing.T) {
		t.Parallel()
		got, err := render("cardiology", "cardiology-north", "cardiology-south")
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(natsDir, "careteam", "example-cardiology.conf"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("careteam/example-cardiology.conf differs from render.sh output; re-render it")
		}
	})
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"wildcard pool", []string{"app", "*"}},
		{"subtree pool", []string{"app", ">"}},
		{"dotted pool", []string{"app", "a.b"}},
		{"no pool", []string{"app"}},
		{"upper case", []string{"App", "pool"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if out, err := render(tc.args...); err == nil {
				t.Errorf("render.sh %v succeeded with %q, want refusal", tc.args, out)
			}
		})
	}
}

func TestStreamDeclarations(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env      string
		replicas int
	}{{"dev", 1}, {"prod", 3}} {
		for _, s := range []struct{ name, subject string }{
			{"SECUREMSG_EVENTS", "securemsg.events.>"}, {"SECUREMSG_AUDIT", "securemsg.audit.>"},
		} {
			t.Run(tc.env+"/"+s.name, func(t *testing.T) {
				t.Parallel()
				raw, err := os.ReadFile(filepath.Join(natsDir, "streams", tc.env, s.name+".json"))
				if err != nil {
					t.Fatal(err)
				}
				dec := json.NewDecoder(bytes.NewReader(raw))
				dec.DisallowUnknownFields()
				var cfg jetstream.StreamConfig
				if err := dec.Decode(&cfg); err != nil {
					t.Fatalf("strict decode: %v", err)
				}
				// The same settings natsx.DefaultTopology gives the services' EnsureStreams.
				checks := []struct {
					what      string
					got, want any
				}{
					{"name", cfg.Name, s.name},
					{"subjects", strings.Join(cfg.Subjects, ","), s.subject},
					{"replicas", cfg.Replicas, tc.replicas},
					{"storage", cfg.Storage, jetstream.FileStorage},
					{"retention", cfg.Retention, jetstream.LimitsPolicy},
					{"discard", cfg.Discard, jetstream.DiscardOld},
					{"max_age", cfg.MaxAge, 7 * 24 * time.Hour},
					{"duplicate_window", cfg.Duplicates, 10 * time.Minute},
					{"deny_delete", cfg.DenyDelete, true},
				}
				for _, c := range checks {
					if c.got != c.want {
						t.Errorf("%s %s = %v, want %v", s.name, c.what, c.got, c.want)
					}
				}
			})
		}
	}
}

// TestNATSPermissionsLive starts a real nats-server (in-process, random loopback port) with the
// repository's accounts and care-team example and checks what each user can and cannot do.
func TestNATSPermissionsLive(t *testing.T) {
	pw := setNATSPasswords(t)
	srv := startSecuremsgNATS(t)

	type client struct {
		nc     *nats.Conn
		denied chan string // permission violations the server reported
	}
	connect := func(user, password string) client {
		t.Helper()
		c := client{denied: make(chan string, 16)}
		nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(user, password),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				if errors.Is(err, nats.ErrPermissionViolation) || strings.Contains(err.Error(), "Permissions Violation") {
					c.denied <- err.Error()
				}
			}))
		if err != nil {
			t.Fatalf("connect as %s: %v", user, err)
		}
		t.Cleanup(nc.Close)
		c.nc = nc
		return c
	}
	wantDenied := func(c client, what string) {
		t.Helper()
		if err := c.nc.Flush(); err != nil {
			t.Fatalf("%s: flush: %v", what, err)
		}
		select {
		case <-c.denied:
		case <-time.After(5 * time.Second):
			t.Errorf("%s was allowed, want a permissions violation", what)
		}
	}

	messaging := connect("messaging", pw["MESSAGING"])
	attachment := connect("attachment", pw["ATTACHMENT"])
	notification := connect("notification", pw["NOTIFICATION"])
	careteam := connect("careteam-cardiology", pw["CARETEAM_CARDIOLOGY"])
	if _, err := nats.Connect(srv.ClientURL(), nats.UserInfo("messaging", "wrong")); err == nil {
		t.Error("connect with a wrong password succeeded")
	}
	if _, err := nats.Connect(srv.ClientURL()); err == nil {
		t.Error("connect without credentials succeeded")
	}

	ctx := t.Context()
	js, err := jetstream.New(messaging.nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct{ name, subject string }{{"SECUREMSG_EVENTS", "securemsg.events.>"}, {"SECUREMSG_AUDIT", "securemsg.audit.>"}} {
		if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: s.name, Subjects: []string{s.subject}, Storage: jetstream.MemoryStorage}); err != nil {
			t.Fatalf("messaging creates stream %s: %v", s.name, err)
		}
	}

	// The care-team app sees its pools' message.created events and nothing else.
	got := make(chan string, 8)
	if _, err := careteam.nc.Subscribe("securemsg.events.message.created.cardiology-north", func(m *nats.Msg) { got <- m.Subject }); err != nil {
		t.Fatal(err)
	}
	if err := careteam.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, subj := range []string{"securemsg.events.message.created.oncology", "securemsg.events.message.read.cardiology-north", "securemsg.events.message.created.cardiology-north"} {
		if _, err := js.Publish(ctx, subj, []byte("{}")); err != nil {
			t.Fatalf("messaging publishes %s: %v", subj, err)
		}
	}
	select {
	case s := <-got:
		if s != "securemsg.events.message.created.cardiology-north" {
			t.Errorf("care-team app received %s, want only its pools' message.created", s)
		}
	case <-time.After(5 * time.Second):
		t.Error("care-team app received nothing from its pool")
	}
	if _, err := careteam.nc.Subscribe("securemsg.events.message.created.oncology", func(*nats.Msg) {}); err == nil {
		wantDenied(careteam, "care-team subscribe to another pool")
	}
	if _, err := careteam.nc.Subscribe("securemsg.audit.>", func(*nats.Msg) {}); err == nil {
		wantDenied(careteam, "care-team subscribe to audit records")
	}

	// Services publish only their own subjects.
	if err := messaging.nc.Publish("securemsg.audit.attachment", nil); err != nil {
		t.Fatal(err)
	}
	wantDenied(messaging, "messaging publish to attachment's audit subject")
	if err := attachment.nc.Publish("securemsg.events.message.created.cardiology-north", nil); err != nil {
		t.Fatal(err)
	}
	wantDenied(attachment, "attachment publish of a message event")
	if _, err := notification.nc.Subscribe("securemsg.events.>", func(*nats.Msg) {}); err == nil {
		wantDenied(notification, "notification subscribe outside its consumer")
	}

	// notification may create its own durable consumer (with the filter the code gives it), not another.
	njs, err := jetstream.New(notification.nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := njs.CreateOrUpdateConsumer(ctx, "SECUREMSG_EVENTS", jetstream.ConsumerConfig{Durable: "notification", FilterSubject: "securemsg.events.message.>", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Errorf("notification creates its durable consumer: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := njs.CreateOrUpdateConsumer(short, "SECUREMSG_EVENTS", jetstream.ConsumerConfig{Durable: "someone-else", AckPolicy: jetstream.AckExplicitPolicy}); err == nil {
		t.Error("notification created a consumer under another name")
	}
}

// startSecuremsgNATS starts a real nats-server (in-process, the version scripts/lib/tools.sh
// pins, random loopback port, JetStream in a temporary directory) with the repository's
// accounts.conf and care-team example, as nats-server.conf includes them. The passwords must be
// set (setNATSPasswords) before.
func startSecuremsgNATS(t *testing.T) *server.Server {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"accounts.conf", "careteam/example-cardiology.conf"} {
		b, err := os.ReadFile(filepath.Join(natsDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := fmt.Sprintf(`listen: 127.0.0.1:-1
jetstream: { store_dir: %q, max_file_store: 100GB, max_memory_store: 2GB }
system_account: SYS
accounts: {
  include ./accounts.conf
  include ./careteam/example-cardiology.conf
}
`, filepath.Join(dir, "js"))
	path := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server rejects the configuration: %v", err)
	}
	opts.NoSigs, opts.NoLog = true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	return srv

}

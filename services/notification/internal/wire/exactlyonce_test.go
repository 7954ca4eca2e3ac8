package wire_test

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auth/authtest"
	"github.com/securemsg/securemsg/services/internal/platform/config"
	"github.com/securemsg/securemsg/services/internal/platform/daemon"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver/grpctest"
	"github.com/securemsg/securemsg/services/internal/platform/keys"
	"github.com/securemsg/securemsg/services/internal/platform/natsx"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/testkit"
	"github.com/securemsg/securemsg/services/notification/internal/adapters/pgstore"
	"github.com/securemsg/securemsg/services/notification/internal/adapters/sealer"
	"github.com/securemsg/securemsg/services/notification/internal/domain"
	"github.com/securemsg/securemsg/services/notification/internal/wire"
)

// restartable runs the notification process on a fixed schema and topology so that a test can
// stop it and start it again, as a deploy or a crash-restart does.
type restartable struct {
	t        *testing.T
	base     daemon.Base
	spec     daemon.Spec
	settings wire.Settings
	deps     wire.Deps
	js       jetstream.JetStream
	topo     natsx.Topology
	pool     *daemon.Process
	stop     func()
	alive    bool
}

func newRestartable(t *testing.T, e *env) *restartable {
	t.Helper()
	stack := requireStack(t)
	admin := testkit.Postgres(t)
	nc := testkit.NATS(t)
	names := testkit.UniqueNATSNames(t, nc)
	topo := natsx.DefaultTopology()
	topo.EventsStream, topo.EventsSubject = names.StreamPrefix+"EVENTS", names.SubjectPrefix+".events"
	topo.AuditStream, topo.AuditSubject = names.StreamPrefix+"AUDIT", names.SubjectPrefix+".audit"
	sp := spec()
	sp.Schema, sp.Topology = testkit.NewSchema(t, admin), topo
	pki := grpctest.NewPKI(t)
	srv := pki.ServerConfig(false)
	srv.GRPCAddr = "127.0.0.1:0" // each start serves on a listener of its own (start)
	issuer := authtest.NewIssuer(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	settings, deps := wiring(t, stack, e, envOptions{})
	return &restartable{
		t: t, spec: sp, settings: settings, deps: deps, js: js, topo: topo,
		base: daemon.Base{
			Server:   srv,
			Postgres: config.Postgres{URL: config.Secret(stack.PostgresURL), MaxConns: 8},
			NATS:     config.NATS{URL: stack.NATSURL, StreamReplicas: 1},
			OIDC:     config.OIDC{Issuer: issuer.URL, Audience: authtest.Audience},
			Access: config.Access{PolicyDir: filepath.Join(testkit.RepoRoot(), "deploy", "policies"),
				RatePerPrincipal: 1000, BurstPerPrincipal: 1000, RatePerClient: 10000, BurstPerClient: 10000,
				MaxTokenAge: time.Hour, MaxSessionAge: 12 * time.Hour, ClockSkew: 30 * time.Second},
		},
	}
}

func (r *restartable) start() {
	r.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	proc, err := daemon.Start(ctx, r.spec, r.base)
	if err != nil {
		cancel()
		r.t.Fatalf("daemon.Start = %v", err)
	}
	if _, err := wire.Register(proc, r.settings, r.deps); err != nil {
		cancel()
		r.t.Fatalf("Register = %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		r.t.Fatalf("listen: %v", err)
	}
	proc.ServeOn(lis)
	r.pool = proc
	done := make(chan error, 1)
	go func() { done <- proc.Run(ctx) }()
	r.alive = true
	r.stop = func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				r.t.Errorf("Run() = %v", err)
			}
		case <-time.After(30 * time.Second):
			r.t.Errorf("notification did not stop within 30s")
		}
		r.alive = false
	}
	r.t.Cleanup(func() {
		if r.alive {
			r.stop()
		}
	})
}

// TestExactlyOnceUnderRedeliveryAndRestart publishes alerts, delivers every event several times
// (as JetStream redelivery and a replay would), stops the service half-way and starts it again,
// and proves that mailpit received exactly one email per event.
func TestExactlyOnceUnderRedeliveryAndRestart(t *testing.T) {
	t.Parallel()
	e := &env{sms: newReceiver(t), push: newReceiver(t), hook: newReceiver(t)}
	r := newRestartable(t, e)
	r.start()
	ctx := t.Context()
	recipient := "u-" + strings.ReplaceAll(uuid.NewString()[:12], "-", "")
	addr := mailbox(t, "once")
	// This process has no portal client; the gRPC surface is covered elsewhere, so the
	// preferences are stored through the same store (and sealer) the API uses.
	seedEmail(t, r, recipient, addr)

	const n = 12
	subject := r.topo.EventsSubject + ".message.created." + testPool
	events := make([]*eventsv1.MessageCreated, n)
	for i := range events {
		events[i] = &eventsv1.MessageCreated{
			Meta:     &eventsv1.EventMeta{EventId: uuid.NewString(), OccurredAt: timestamppb.Now(), Producer: commonv1.Component_COMPONENT_MESSAGING},
			ThreadId: uuid.NewString(), MessageId: uuid.NewString(), PoolId: testPool, PatientId: "p-1001",
			SenderSubject: "user-clinician", RecipientSubjects: []string{recipient},
		}
		publish(t, r.js, subject, events[i], events[i].Meta.EventId)
		publish(t, r.js, subject, events[i], "again-"+events[i].Meta.EventId) // a second copy past JetStream's de-duplication
	}
	testkit.WaitFor(t, 30*time.Second, "some alerts sent before the restart", func() bool { return len(mails(t, addr)) >= 3 })
	r.stop()
	r.start()
	for _, ev := range events { // a replay after the restart
		publish(t, r.js, subject, ev, "replay-"+ev.Meta.EventId)
	}
	waitMails(t, addr, n, 60*time.Second)
	testkit.WaitFor(t, 30*time.Second, "consumer caught up", func() bool {
		c, err := r.js.Consumer(ctx, r.topo.EventsStream, "notification")
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
	var sent int
	if err := r.pool.Pool.QueryRow(ctx, `SELECT count(*) FROM deliveries WHERE recipient_subject = $1 AND status = 2`, recipient).Scan(&sent); err != nil {
		t.Fatal(err)
	}
	got := mails(t, addr)
	ids := map[string]int{}
	for _, m := range got {
		for _, line := range strings.Split(m.Raw, "\n") {
			if strings.HasPrefix(line, "X-Securemsg-Delivery:") {
				ids[strings.TrimSpace(strings.TrimPrefix(line, "X-Securemsg-Delivery:"))]++
			}
		}
	}
	if len(got) != n || len(ids) != n || sent != n {
		t.Fatalf("mails = %d, distinct deliveries = %d, sent rows = %d; want %d each (exactly once per event)", len(got), len(ids), sent, n)
	}
}

// seedEmail stores email preferences for subject directly through the store (sealed like the
// API does), for tests that run without a token issuer client.
func seedEmail(t *testing.T, r *restartable, subject, addr string) {
	t.Helper()
	store := storeFor(t, r)
	_, err := store.UpdatePreferences(t.Context(), domain.Identity{Subject: subject, Role: domain.RolePatient},
		func(p *domain.Preferences) ([]outbox.Event, error) {
			p.Channels[domain.ChannelEmail] = domain.ChannelSetting{Enabled: true, Address: addr}
			return nil, nil
		})
	if err != nil {
		t.Fatalf("seed preferences: %v", err)
	}
}

func storeFor(t *testing.T, r *restartable) *pgstore.Store {
	t.Helper()
	kr, err := keys.NewKeyring(r.deps.Transit, keys.KeyringOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pgstore.New(r.pool.Pool, sealer.New(kr, r.settings.TransitKey))
}

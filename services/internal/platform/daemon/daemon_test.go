package daemon_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/securemsg/securemsg/services/internal/platform/config"
	"github.com/securemsg/securemsg/services/internal/platform/daemon"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver/grpctest"
	"github.com/securemsg/securemsg/services/internal/platform/natsx"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
	"github.com/securemsg/securemsg/services/internal/testkit"
)

// TestProcessServesHealthAndRelaysOutbox starts a service process against the real Postgres and
// NATS, checks it answers gRPC health over TLS, that an outbox row committed by the service
// reaches JetStream, and that cancelling the context shuts everything down cleanly.
func TestProcessServesHealthAndRelaysOutbox(t *testing.T) {
	stack := testkit.LoadStack()
	admin := testkit.Postgres(t)
	schema := testkit.NewSchema(t, admin)
	nc := testkit.NATS(t)
	names := testkit.UniqueNATSNames(t, nc)
	topology := natsx.DefaultTopology()
	topology.EventsStream, topology.EventsSubject = names.StreamPrefix+"EVENTS", names.SubjectPrefix+".events"
	topology.AuditStream, topology.AuditSubject = names.StreamPrefix+"AUDIT", names.SubjectPrefix+".audit"

	pki := grpctest.NewPKI(t)
	server := pki.ServerConfig(false)
	server.GRPCAddr = freeAddr(t)
	base := daemon.Base{
		Server:   server,
		Log:      config.Log{},
		Postgres: config.Postgres{URL: config.Secret(stack.PostgresURL), MaxConns: 4},
		NATS:     config.NATS{URL: stack.NATSURL},
	}

	ctx, cancel := context.WithCancel(t.Context())
	proc, err := daemon.Start(ctx, daemon.Spec{Name: "daemontest", Schema: schema, Topology: topology}, base)
	if err != nil {
		t.Fatalf("Start() = %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- proc.Run(ctx) }()

	conn, err := grpc.NewClient(server.GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(false))))
	if err != nil {
		t.Fatalf("grpc.NewClient() = %v", err)
	}
	defer conn.Close()
	waitFor(t, "health SERVING", func() bool {
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
	})

	event := outbox.Event{ID: outbox.NewID(), Subject: topology.EventsSubject + ".thread.created.pool-a", Payload: []byte{1}}
	if err := pg.WithTx(ctx, proc.Pool, func(tx pgx.Tx) error { return outbox.Add(ctx, tx, event) }); err != nil {
		t.Fatalf("outbox.Add() = %v", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "event relayed to JetStream", func() bool {
		stream, err := js.Stream(ctx, topology.EventsStream)
		if err != nil {
			return false
		}
		info, err := stream.Info(ctx)
		return err == nil && info.State.Msgs == 1
	})

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run() after cancel = %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run() did not return within 30s of cancel")
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	return addr
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Package servicetest runs a securemsg service in-process for end-to-end tests: the real
// daemon (Postgres schema migrated, NATS streams, outbox relay, access guards with the shipped
// policies, gRPC over TLS) on a unique schema and unique stream names, with a test OIDC issuer
// whose personas match the dev stack's seeded users, and clients that call it as a portal
// (TLS, bearer token) or as another service (mTLS with a service identity).
package servicetest

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/securemsg/securemsg/services/internal/platform/auth/authtest"
	"github.com/securemsg/securemsg/services/internal/platform/config"
	"github.com/securemsg/securemsg/services/internal/platform/daemon"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver/grpctest"
	"github.com/securemsg/securemsg/services/internal/platform/natsx"
	"github.com/securemsg/securemsg/services/internal/testkit"
)

// Harness is a running service under test.
type Harness struct {
	Proc *daemon.Process
	Addr string
	// HTTPURL is the service's browser edge (https://127.0.0.1:port: Connect, gRPC-Web, REST),
	// with the PKI's server certificate; PKI.ClientTLS(false) trusts it.
	HTTPURL  string
	Schema   string
	Topology natsx.Topology
	JS       jetstream.JetStream
	Issuer   *authtest.Issuer
	PKI      *grpctest.PKI
	// Portal is a TLS connection without a client certificate, as a portal frontend has.
	Portal *grpc.ClientConn

	enrolment *enrolment
}

// Options adjust the service under test.
type Options struct {
	// Access overrides the access settings (the zero value takes test defaults: the shipped
	// policies, generous rate limits).
	Access *config.Access
}

// Start runs the service described by spec, after register has added its handlers and
// background work to the process. The service stops when the test ends.
func Start(t testing.TB, spec daemon.Spec, opts Options, register func(*daemon.Process) error) *Harness {
	t.Helper()
	stack := testkit.LoadStack()
	admin := testkit.Postgres(t)
	nc := testkit.NATS(t)
	h := &Harness{Schema: testkit.NewSchema(t, admin), Issuer: authtest.NewIssuer(t), PKI: grpctest.NewPKI(t)}
	names := testkit.UniqueNATSNames(t, nc)
	h.Topology = natsx.DefaultTopology()
	h.Topology.EventsStream, h.Topology.EventsSubject = names.StreamPrefix+"EVENTS", names.SubjectPrefix+".events"
	h.Topology.AuditStream, h.Topology.AuditSubject = names.StreamPrefix+"AUDIT", names.SubjectPrefix+".audit"
	h.Topology.ReconcileSubject = names.SubjectPrefix + ".reconcile.audit"
	h.Topology.DirectoryBucket = names.StreamPrefix + "DIRECTORY"
	spec.Schema, spec.Topology = h.Schema, h.Topology
	h.enrolment = openDirectory(t, nc, h.Topology)

	access := config.Access{
		PolicyDir:        filepath.Join(testkit.RepoRoot(), "deploy", "policies"),
		RatePerPrincipal: 1000, BurstPerPrincipal: 1000,
		RatePerClient: 10000, BurstPerClient: 10000,
		MaxTokenAge: time.Hour, MaxSessionAge: 12 * time.Hour, ClockSkew: 30 * time.Second,
	}
	if opts.Access != nil {
		access = *opts.Access
	}
	server := h.PKI.ServerConfig(false)
	server.TLSClientCAFile = h.PKI.CAFile // service identities verified when a certificate is given
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	server.GRPCAddr = lis.Addr().String()
	h.Addr = server.GRPCAddr
	base := daemon.Base{
		Server:   server,
		Postgres: config.Postgres{URL: config.Secret(stack.PostgresURL), MaxConns: 8},
		NATS:     config.NATS{URL: stack.NATSURL, StreamReplicas: 1},
		OIDC:     config.OIDC{Issuer: h.Issuer.URL, Audience: authtest.Audience},
		Access:   access,
	}
	ctx, cancel := context.WithCancel(context.Background())
	proc, err := daemon.Start(ctx, spec, base)
	if err != nil {
		cancel()
		_ = lis.Close()
		t.Fatalf("daemon.Start(%s) = %v", spec.Name, err)
	}
	proc.ServeOn(lis)
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		t.Fatalf("listen for the http edge: %v", err)
	}
	proc.ServeHTTPOn(httpLis)
	h.HTTPURL = "https://" + httpLis.Addr().String()
	h.Proc = proc
	if err := register(proc); err != nil {
		cancel()
		t.Fatalf("register %s: %v", spec.Name, err)
	}
	done := make(chan error, 1)
	go func() { done <- proc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s Run() = %v", spec.Name, err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("%s did not stop within 30s", spec.Name)
		}
	})
	if h.JS, err = jetstream.New(nc); err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	h.Portal = h.dial(t, credentials.NewTLS(h.PKI.ClientTLS(false)))
	testkit.WaitFor(t, 15*time.Second, spec.Name+" listening", func() bool {
		c, err := net.DialTimeout("tcp", h.Addr, time.Second)
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	})
	return h
}

// ServiceConn returns a connection that presents the identity of the named service (mTLS).
func (h *Harness) ServiceConn(t testing.TB, service string) *grpc.ClientConn {
	t.Helper()
	cert, _, _ := h.PKI.IssueService(t, service)
	tlsConf := h.PKI.ClientTLS(false)
	tlsConf.Certificates = append(tlsConf.Certificates[:0], cert)
	return h.dial(t, credentials.NewTLS(tlsConf))
}

func (h *Harness) dial(t testing.TB, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(h.Addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatalf("grpc.NewClient(%s) = %v", h.Addr, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// As returns a context whose outgoing metadata carries a fresh access token for persona.
func (h *Harness) As(t testing.TB, ctx context.Context, persona Persona) context.Context {
	t.Helper()
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+h.Token(t, persona))
}

// Token mints an access token for persona from the test issuer.
func (h *Harness) Token(t testing.TB, persona Persona) string {
	t.Helper()
	h.Enroll(t, persona)
	return h.Issuer.Mint(t, persona.Claims(h.Issuer))
}

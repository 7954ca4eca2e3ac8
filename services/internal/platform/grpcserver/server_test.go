package grpcserver_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/securemsg/securemsg/services/internal/platform/config"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver/grpctest"
	"github.com/securemsg/securemsg/services/internal/testkit"
)

func TestTLSAndMTLS(t *testing.T) {
	t.Parallel()
	pki := grpctest.NewPKI(t)
	other := grpctest.NewPKI(t) // a CA the server does not trust
	tlsSrv := startServer(t, pki, pki.ServerConfig(false))
	mtlsSrv := startServer(t, pki, pki.ServerConfig(true))

	old := pki.ClientTLS(true)
	old.MaxVersion = tls.VersionTLS11
	strangerCert := pki.ClientTLS(false)
	strangerCert.Certificates = []tls.Certificate{other.ClientCert}
	tests := []struct {
		name   string
		addr   string
		creds  credentials.TransportCredentials
		wantOK bool
	}{
		{"TLS server, client without certificate", tlsSrv.addr, credentials.NewTLS(pki.ClientTLS(false)), true},
		{"mTLS server, client with certificate", mtlsSrv.addr, credentials.NewTLS(pki.ClientTLS(true)), true},
		{"mTLS server, client without certificate", mtlsSrv.addr, credentials.NewTLS(pki.ClientTLS(false)), false},
		{"mTLS server, certificate from another CA", mtlsSrv.addr, credentials.NewTLS(strangerCert), false},
		{"client not trusting the server's CA", tlsSrv.addr, credentials.NewTLS(other.ClientTLS(true)), false},
		{"client limited to TLS 1.1", tlsSrv.addr, credentials.NewTLS(old), false},
		{"plaintext client", tlsSrv.addr, insecure.NewCredentials(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			conn, err := grpc.NewClient(tt.addr, grpc.WithTransportCredentials(tt.creds))
			if err != nil {
				t.Fatalf("grpc.NewClient() = %v", err)
			}
			defer func() { _ = conn.Close() }()
			_, _, err = echo(t.Context(), conn, "hello")
			if tt.wantOK && err != nil {
				t.Errorf("Echo() = %v, want success", err)
			}
			if !tt.wantOK && status.Code(err) != codes.Unavailable {
				t.Errorf("Echo() = %v, want code Unavailable (handshake refused)", err)
			}
		})
	}
}

func TestDialUsesClientCertificate(t *testing.T) {
	t.Parallel()
	pki := grpctest.NewPKI(t)
	h := startServer(t, pki, pki.ServerConfig(true))
	if _, _, err := echo(t.Context(), h.dial(t), "hello"); err != nil {
		t.Errorf("Echo() over Dial to an mTLS server = %v, want success", err)
	}
}

func TestHealthServingThenNotServingOnShutdown(t *testing.T) {
	t.Parallel()
	pki := grpctest.NewPKI(t)
	cfg := pki.ServerConfig(false)
	cfg.ShutdownDrain = 300 * time.Millisecond // long enough for the watcher to hear NOT_SERVING
	h := startServer(t, pki, cfg)
	client := healthpb.NewHealthClient(h.dial(t))

	for _, service := range []string{"", testDesc.ServiceName} {
		resp, err := client.Check(t.Context(), &healthpb.HealthCheckRequest{Service: service})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Check(%q) = %v, %v; want SERVING", service, resp.GetStatus(), err)
		}
	}
	watch, err := client.Watch(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("Watch() = %v", err)
	}
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch first update = %v, %v; want SERVING", resp.GetStatus(), err)
	}

	done := make(chan error, 1)
	go func() { done <- h.shutdown(t, 10*time.Second) }()
	resp, err := watch.Recv()
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Watch update after shutdown began = %v, %v; want NOT_SERVING", resp.GetStatus(), err)
	}
	start := time.Now()
	if err := <-done; err != nil {
		t.Errorf("Serve() after cancel = %v, want nil", err)
	}
	// The open Watch stream must not hold GracefulStop until ShutdownTimeout (5s).
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("shutdown took %v after NOT_SERVING, want well under ShutdownTimeout", d)
	}
}

func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		release  bool // let the in-flight call finish during the drain
		wantCode codes.Code
	}{
		{"in-flight rpc finishes", true, codes.OK},
		{"rpc still running at the deadline is cut off", false, codes.Unavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := startTLSConfig(t, func(cfg *config.Server) {
				cfg.ShutdownDrain = 50 * time.Millisecond
				cfg.ShutdownTimeout = 500 * time.Millisecond
			})
			conn := h.dial(t)
			result := make(chan error, 1)
			go func() {
				_, _, err := echo(t.Context(), conn, "block")
				result <- err
			}()
			<-h.svc.started
			done := make(chan error, 1)
			go func() { done <- h.shutdown(t, 5*time.Second) }()
			if tt.release {
				close(h.svc.release)
			}
			if err := <-done; err != nil {
				t.Errorf("Serve() after cancel = %v, want nil", err)
			}
			if err := <-result; status.Code(err) != tt.wantCode {
				t.Errorf("in-flight Echo(block) = %v, want code %v", err, tt.wantCode)
			}
		})
	}
}

func TestReflectionOnlyInDev(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		dev      bool
		wantCode codes.Code
	}{
		{"dev", true, codes.OK},
		{"production", false, codes.Unimplemented},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := startTLSConfig(t, func(cfg *config.Server) { cfg.Dev = tt.dev }, grpcserver.WithGuards(denyAll))
			stream, err := reflectionpb.NewServerReflectionClient(h.dial(t)).ServerReflectionInfo(t.Context())
			if err != nil {
				t.Fatalf("ServerReflectionInfo() = %v", err)
			}
			err = stream.Send(&reflectionpb.ServerReflectionRequest{
				MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
			})
			// io.EOF means the server already ended the stream (no reflection service): the
			// status comes from Recv, as grpc-go documents.
			if err != nil && !errors.Is(err, io.EOF) {
				t.Fatalf("Send(ListServices) = %v", err)
			}
			resp, err := stream.Recv()
			if status.Code(err) != tt.wantCode {
				t.Fatalf("reflection ListServices = %v, want code %v", err, tt.wantCode)
			}
			if tt.wantCode == codes.OK && !strings.Contains(resp.String(), testDesc.ServiceName) {
				t.Errorf("reflection ListServices = %v, want it to list %s", resp, testDesc.ServiceName)
			}
		})
	}
}

func TestNewRejectsBadTLSSettings(t *testing.T) {
	t.Parallel()
	pki := grpctest.NewPKI(t)
	noCA := pki.ServerConfig(false)
	noCA.RequireClientCert = true
	missing := pki.ServerConfig(false)
	missing.TLSCertFile = ""
	badFile := pki.ServerConfig(false)
	badFile.TLSKeyFile = pki.CAFile // a certificate is not a key
	tests := []struct {
		name string
		cfg  config.Server
	}{
		{"mTLS without a client CA", noCA},
		{"no certificate file", missing},
		{"key file holds no key", badFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := grpcserver.New(tt.cfg); err == nil {
				t.Errorf("New(%s) = nil error, want an error", tt.name)
			}
		})
	}
}

func TestRunServesAndStops(t *testing.T) {
	t.Parallel()
	pki := grpctest.NewPKI(t)
	cfg := pki.ServerConfig(false)
	cfg.MetricsAddr = "127.0.0.1:0"
	srv, err := grpcserver.New(cfg, grpcserver.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	// Run has no address to report (port 0); it must still start and stop cleanly.
	waitFor(t, "health SERVING", func() bool {
		resp, err := srv.Health().Check(t.Context(), &healthpb.HealthCheckRequest{})
		return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
	})
	cancel()
	if err := testkit.Receive(t, done, 10*time.Second, "Run() to return after cancel"); err != nil {
		t.Errorf("Run() after cancel = %v, want nil", err)
	}
}

func TestRunReportsListenError(t *testing.T) {
	t.Parallel()
	pki := grpctest.NewPKI(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = busy.Close() }()
	cfg := pki.ServerConfig(false)
	cfg.GRPCAddr = busy.Addr().String()
	srv, err := grpcserver.New(cfg, grpcserver.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	if err := srv.Run(t.Context()); err == nil {
		t.Errorf("Run() on a busy port = nil, want an error")
	}
}

func TestMetricsHandler(t *testing.T) {
	t.Parallel()
	h := startTLS(t)
	conn := h.dial(t)
	for _, v := range []string{phiMarker, "notfound", "internal"} {
		_, _, _ = echo(t.Context(), conn, v)
	}
	rec := httptest.NewRecorder()
	h.srv.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`grpc_server_handled_total{grpc_code="OK",grpc_method="Echo",grpc_service="securemsg.test.v1.Test",grpc_type="unary"} 1`,
		`grpc_server_handled_total{grpc_code="NotFound",grpc_method="Echo"`,
		`grpc_server_handled_total{grpc_code="Internal",grpc_method="Echo"`,
		`grpc_server_handling_seconds_bucket{grpc_method="Echo"`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /metrics lacks %q", want)
		}
	}
	if strings.Contains(body, phiMarker) || strings.Contains(body, secretMarker) {
		t.Errorf("GET /metrics contains a request payload or error text")
	}
}

// TestHealthProbeListener checks the plaintext probe port answers health and nothing else, and
// follows the main server's state.
func TestHealthProbeListener(t *testing.T) {
	t.Parallel()
	pki := grpctest.NewPKI(t)
	cfg := pki.ServerConfig(false)
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.HealthAddr = probe.Addr().String()
	_ = probe.Close()
	main, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.GRPCAddr = main.Addr().String()
	_ = main.Close()
	srv, err := grpcserver.New(cfg, grpcserver.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()

	conn, err := grpc.NewClient(cfg.HealthAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	waitFor(t, "probe port SERVING", func() bool {
		resp, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
		return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
	})
	// Only health lives there: no API is reachable without TLS.
	err = conn.Invoke(t.Context(), "/securemsg.messaging.v1.MessagingService/GetThread", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
	if got := status.Code(err); got != codes.Unimplemented {
		t.Errorf("an API method on the probe port = %v, want Unimplemented", got)
	}
	cancel()
	if err := testkit.Receive(t, done, 10*time.Second, "Run() to return after cancel"); err != nil {
		t.Errorf("Run() after cancel = %v, want nil", err)
	}
}

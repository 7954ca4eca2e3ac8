package grpcserver_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/securemsg/securemsg/services/internal/platform/grpcserver"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver/grpctest"
	"github.com/securemsg/securemsg/services/internal/platform/logging"
)

// principalGuard records the caller as an auth guard would.
var principalGuard = grpcserver.GuardFunc(func(ctx context.Context, _ string) error {
	logging.AddFields(ctx, slog.String(logging.KeyPrincipal, "user-123"), slog.String(logging.KeyClientApp, "portal-web"))
	return nil
})

func TestAccessLog(t *testing.T) {
	t.Parallel()
	h := startTLS(t, grpcserver.WithGuards(principalGuard))
	conn := h.dial(t)
	for _, kind := range callKinds {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			// The payload is PHI: it must not reach the log, while the rpc must.
			id, _, err := kind.call(t.Context(), conn, phiMarker)
			if err != nil {
				t.Fatalf("Echo() = %v", err)
			}
			method := echoMethod
			if kind.name == "stream" {
				method = streamMethod
			}
			line := h.logLine(t, "the access log line", func(l map[string]any) bool {
				return l["msg"] == "rpc finished" && l[logging.KeyRequestID] == id
			})
			want := map[string]any{
				logging.KeyMethod:    method,
				logging.KeyCode:      "OK",
				logging.KeyPrincipal: "user-123",
				logging.KeyClientApp: "portal-web",
				"level":              "INFO",
			}
			for k, v := range want {
				if line[k] != v {
					t.Errorf("access log %s = %v, want %v (line %v)", k, line[k], v, line)
				}
			}
			if _, ok := line[logging.KeyDurationMS].(float64); !ok {
				t.Errorf("access log %s = %v, want a number", logging.KeyDurationMS, line[logging.KeyDurationMS])
			}
			if p, _ := line[logging.KeyPeer].(string); !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("access log %s = %q, want 127.0.0.1:port", logging.KeyPeer, p)
			}
		})
	}
	t.Cleanup(func() {
		if strings.Contains(h.logs.String(), phiMarker) {
			t.Errorf("logs contain the request payload:\n%s", h.logs.String())
		}
	})
}

func TestAccessLogNamesMTLSPeer(t *testing.T) {
	t.Parallel()
	pki := grpctest.NewPKI(t)
	h := startServer(t, pki, pki.ServerConfig(true))
	id, _, err := echo(t.Context(), h.dial(t), "hello")
	if err != nil {
		t.Fatalf("Echo() = %v", err)
	}
	l := h.logLine(t, "the access log line", func(l map[string]any) bool {
		return l["msg"] == "rpc finished" && l[logging.KeyRequestID] == id
	})
	if l[logging.KeyPeerService] != "client" {
		t.Errorf("access log %s = %v, want client (the certificate's CN)", logging.KeyPeerService, l[logging.KeyPeerService])
	}
}

func TestAccessLogHealthAtDebug(t *testing.T) {
	t.Parallel()
	h := startTLS(t)
	if _, err := healthpb.NewHealthClient(h.dial(t)).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("Check() = %v", err)
	}
	l := h.logLine(t, "the health access log line", func(l map[string]any) bool {
		return l[logging.KeyMethod] == "/grpc.health.v1.Health/Check"
	})
	if l["level"] != "DEBUG" {
		t.Errorf("health access log level = %v, want DEBUG", l["level"])
	}
}

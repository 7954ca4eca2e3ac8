package grpcserver_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/securemsg/securemsg/services/internal/platform/grpcserver"
)

// denyAll refuses every guarded call.
var denyAll = grpcserver.GuardFunc(func(context.Context, string) error {
	return status.Error(codes.PermissionDenied, "denied")
})

func TestGuards(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		guard    grpcserver.Guard
		value    string
		wantCode codes.Code
		wantMsg  string // "" means masked
	}{
		{"deny", denyAll, "hello", codes.PermissionDenied, "denied"},
		{"deny before validation", denyAll, "", codes.PermissionDenied, "denied"},
		{"guard internal error is masked", grpcserver.GuardFunc(func(context.Context, string) error {
			return errors.New("policy engine down: " + secretMarker)
		}), "hello", codes.Internal, ""},
		{"guard panic is recovered", grpcserver.GuardFunc(func(context.Context, string) error {
			panic("guard " + secretMarker)
		}), "hello", codes.Internal, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := startTLS(t, grpcserver.WithGuards(tt.guard))
			conn := h.dial(t)
			for _, kind := range callKinds {
				_, _, err := kind.call(t.Context(), conn, tt.value)
				st := status.Convert(err)
				if st.Code() != tt.wantCode {
					t.Errorf("%s Echo(%q) = %v, want code %v", kind.name, tt.value, err, tt.wantCode)
				}
				if tt.wantMsg != "" && st.Message() != tt.wantMsg {
					t.Errorf("%s Echo(%q) message = %q, want %q", kind.name, tt.value, st.Message(), tt.wantMsg)
				}
				if tt.wantMsg == "" && !maskedMessage.MatchString(st.Message()) {
					t.Errorf("%s Echo(%q) message = %q, want masked", kind.name, tt.value, st.Message())
				}
				if strings.Contains(st.Message(), secretMarker) {
					t.Errorf("%s Echo(%q) message = %q, leaks the secret marker", kind.name, tt.value, st.Message())
				}
			}
			// Health bypasses guards, so probes work without credentials.
			resp, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
			if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("Check() with a guard = %v, %v; want SERVING", resp.GetStatus(), err)
			}
		})
	}
}

func TestGuardsRunInOrder(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var order []string
	record := func(name string) grpcserver.Guard {
		return grpcserver.GuardFunc(func(context.Context, string) error {
			mu.Lock()
			defer mu.Unlock()
			order = append(order, name)
			return nil
		})
	}
	h := startTLS(t, grpcserver.WithGuards(record("auth"), nil, record("policy")), grpcserver.WithGuards(record("ratelimit")))
	if _, _, err := echo(t.Context(), h.dial(t), "hello"); err != nil {
		t.Fatalf("Echo() = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got, want := strings.Join(order, ","), "auth,policy,ratelimit"; got != want {
		t.Errorf("guard order = %s, want %s", got, want)
	}
}

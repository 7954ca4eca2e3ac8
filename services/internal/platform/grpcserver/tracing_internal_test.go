package grpcserver

import (
	"testing"

	"google.golang.org/grpc/stats"
)

// TestUntracedMethods: only methods of registered services are traced, and not the probes: a
// made-up path (whose span name and rpc.* attributes a caller would choose) gets no span.
func TestUntracedMethods(t *testing.T) {
	t.Parallel()
	for method, traced := range map[string]bool{
		"/grpc.health.v1.Health/Check":            false, // registered, but a probe
		"/grpc.health.v1.Health/NoSuchMethod":     false,
		"/securemsg.made.v1.UpService/PHI-MARKER": false,
		"/not-a-path": false,
		"/grpc.reflection.v1.ServerReflection/Dummy": false,
	} {
		if got := untracedMethods(&stats.RPCTagInfo{FullMethodName: method}); got != traced {
			t.Errorf("traced(%s) = %t, want %t", method, got, traced)
		}
	}
	// A registered, non-probe method is traced: the test binary links the health service only,
	// so knownMethod is checked on it directly.
	if !knownMethod(&stats.RPCTagInfo{FullMethodName: "/grpc.health.v1.Health/Check"}) {
		t.Error("knownMethod(health Check) = false; want true for a registered method")
	}
}

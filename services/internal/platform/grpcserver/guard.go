package grpcserver

import (
	"context"
	"strings"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Guard is a check run on every rpc except health and reflection: authentication, policy, rate
// limits, IP allow/deny lists. Either interceptor may be nil when the guard has nothing to do for
// that kind of rpc. A guard rejects a call by returning a status error (Unauthenticated,
// PermissionDenied, ResourceExhausted...); any other error is masked as internal. A guard that
// learns who the caller is should record it with logging.AddFields (logging.KeyPrincipal,
// logging.KeyClientApp) so the access-log line carries it.
type Guard interface {
	UnaryServerInterceptor() grpc.UnaryServerInterceptor
	StreamServerInterceptor() grpc.StreamServerInterceptor
}

// infraServices answer probes and tooling without a caller identity.
var infraServices = map[string]bool{
	healthpb.Health_ServiceDesc.ServiceName:    true,
	"grpc.reflection.v1.ServerReflection":      true,
	"grpc.reflection.v1alpha.ServerReflection": true,
}

func isInfraMethod(fullMethod string) bool {
	service, _, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	return infraServices[service]
}

// guarded matches every call except those to infraServices.
var guarded = selector.MatchFunc(func(_ context.Context, c interceptors.CallMeta) bool {
	return !infraServices[c.Service]
})

func unaryGuard(i grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return selector.UnaryServerInterceptor(i, guarded)
}

func streamGuard(i grpc.StreamServerInterceptor) grpc.StreamServerInterceptor {
	return selector.StreamServerInterceptor(i, guarded)
}

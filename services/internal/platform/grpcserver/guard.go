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

// GuardFunc is a Guard made of one check of the call's context and full method, run before a
// unary rpc and when a stream opens (IP lists, rate limits), as http.HandlerFunc makes a
// Handler of a function. A non-nil error refuses the call and is what the caller gets.
type GuardFunc func(ctx context.Context, fullMethod string) error

// UnaryServerInterceptor runs the check before the handler.
func (g GuardFunc) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := g(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor runs the check when the stream opens, before the handler.
func (g GuardFunc) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := g(ss.Context(), info.FullMethod); err != nil {
			return err
		}
		return handler(srv, ss)
	}
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

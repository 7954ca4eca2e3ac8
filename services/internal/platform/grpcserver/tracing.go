package grpcserver

import (
	"context"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"

	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/tracing"
)

// WithTracing traces every rpc with OpenTelemetry (otelgrpc's stats handler, which wraps the
// whole interceptor chain, so a span's duration is what the client waited). Health checks and
// reflection are not traced: probes would fill a trace backend with nothing.
//
// A caller without a verified service certificate — a portal, a browser through the HTTP edge
// — is treated as a public endpoint: the trace context it sends becomes a link, not the parent,
// so an outside caller can neither choose our trace ids nor force sampling. Between the suite's
// own services (mTLS) the trace simply continues.
func WithTracing() Option {
	return WithServerOptions(grpc.StatsHandler(otelgrpc.NewServerHandler(
		otelgrpc.WithFilter(untracedMethods),
		otelgrpc.WithPropagators(tracing.Propagator),
		otelgrpc.WithPublicEndpointFn(func(ctx context.Context, _ *stats.RPCTagInfo) bool {
			_, internal := auth.PeerService(ctx)
			return !internal
		}),
	)))
}

// untracedMethods keeps probes and reflection out of traces.
var untracedMethods = filters.None(filters.ServiceName("grpc.health.v1.Health"),
	filters.ServicePrefix("grpc.reflection."))

// clientTracing is the client side of WithTracing, for Dial: spans for calls to other services,
// and the trace context sent along so their server spans join the caller's trace.
func clientTracing() grpc.DialOption {
	return grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithPropagators(tracing.Propagator)))
}

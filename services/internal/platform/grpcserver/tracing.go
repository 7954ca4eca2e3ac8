package grpcserver

import (
	"context"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

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

// untracedMethods keeps probes, reflection and methods that do not exist out of traces. gRPC
// tags an rpc (and otelgrpc names its span, with rpc.service and rpc.method) before it looks
// the method up, so without the last check any caller could write free text into our traces by
// calling a made-up path.
var untracedMethods = filters.All(
	filters.None(filters.ServiceName("grpc.health.v1.Health"), filters.ServicePrefix("grpc.reflection.")),
	knownMethod,
)

// knownMethod reports whether the rpc's method is one of a registered protobuf service's (the
// generated code of every service a binary serves registers its descriptors).
func knownMethod(info *stats.RPCTagInfo) bool {
	svc, method, ok := strings.Cut(strings.TrimPrefix(info.FullMethodName, "/"), "/")
	if !ok {
		return false
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return false
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	return ok && sd.Methods().ByName(protoreflect.Name(method)) != nil
}

// clientTracing is the client side of WithTracing, for Dial: spans for calls to other services,
// and the trace context sent along so their server spans join the caller's trace.
func clientTracing() grpc.DialOption {
	return grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithPropagators(tracing.Propagator)))
}

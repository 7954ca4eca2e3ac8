package grpcserver

import (
	"context"
	"log/slog"
	"time"

	middleware "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/securemsg/securemsg/services/internal/platform/logging"
)

// logRPC writes the one access-log line for an rpc. It logs the method, outcome, timing, peer
// (the client a trusted proxy forwarded, with the proxy beside it; the calling service when it
// presented a verified client certificate), the request id
// (via the request logger) and the Fields guards added — never a payload or metadata value.
func logRPC(ctx context.Context, fields *logging.Fields, method string, start time.Time, err error) {
	code := status.Code(err)
	attrs := []slog.Attr{
		slog.String(logging.KeyMethod, method),
		slog.String(logging.KeyCode, code.String()),
		slog.Float64(logging.KeyDurationMS, float64(time.Since(start).Microseconds())/1000),
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		attrs = append(attrs, slog.String(logging.KeyPeer, p.Addr.String()))
		if hop := proxyHop(ctx); hop != "" {
			attrs = append(attrs, slog.String(logging.KeyProxy, hop))
		}
		// A service calling over mTLS is known by its verified certificate.
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 && len(ti.State.VerifiedChains[0]) > 0 {
			attrs = append(attrs, slog.String(logging.KeyPeerService, ti.State.VerifiedChains[0][0].Subject.CommonName))
		}
	}
	attrs = append(attrs, fields.Attrs()...)
	logging.FromContext(ctx).LogAttrs(ctx, levelFor(method, code), "rpc finished", attrs...)
}

// levelFor keeps probes quiet and makes server-side failures stand out.
func levelFor(method string, code codes.Code) slog.Level {
	switch {
	case isInfraMethod(method) && code == codes.OK:
		return slog.LevelDebug // Kubernetes probes every few seconds
	case code == codes.Internal || code == codes.Unknown || code == codes.DataLoss:
		return slog.LevelError
	case code == codes.Unavailable || code == codes.DeadlineExceeded || code == codes.ResourceExhausted:
		return slog.LevelWarn
	default:
		return slog.LevelInfo
	}
}

func unaryAccessLog() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		ctx, fields := logging.WithFields(ctx)
		resp, err := handler(ctx, req)
		logRPC(ctx, fields, info.FullMethod, start, err)
		return resp, err
	}
}

func streamAccessLog() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		ctx, fields := logging.WithFields(ss.Context())
		wrapped := middleware.WrapServerStream(ss)
		wrapped.WrappedContext = ctx
		err := handler(srv, wrapped)
		logRPC(ctx, fields, info.FullMethod, start, err)
		return err
	}
}

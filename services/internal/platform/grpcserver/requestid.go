package grpcserver

import (
	"context"
	"log/slog"

	"github.com/google/uuid"
	middleware "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/securemsg/securemsg/services/internal/platform/logging"
)

// RequestIDHeader is the metadata key carrying the request id, in requests and responses.
const RequestIDHeader = "x-request-id"

// requestID returns the caller's id when well formed, else a new random one.
func requestID(ctx context.Context) string {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(RequestIDHeader); len(v) == 1 && logging.WellFormedRequestID(v[0]) {
			return v[0]
		}
	}
	return uuid.NewString()
}

// withRequest puts the server's logger and the request id into ctx.
func withRequest(ctx context.Context, log *slog.Logger) (context.Context, string) {
	id := requestID(ctx)
	return logging.WithRequestID(logging.WithLogger(ctx, log), id), id
}

func unaryRequestID(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, id := withRequest(ctx, log)
		// SetHeader only fails after headers were sent, which cannot have happened yet.
		_ = grpc.SetHeader(ctx, metadata.Pairs(RequestIDHeader, id))
		return handler(ctx, req)
	}
}

func streamRequestID(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, id := withRequest(ss.Context(), log)
		_ = ss.SetHeader(metadata.Pairs(RequestIDHeader, id))
		wrapped := middleware.WrapServerStream(ss)
		wrapped.WrappedContext = ctx
		return handler(srv, wrapped)
	}
}

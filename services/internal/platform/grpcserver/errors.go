package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/securemsg/securemsg/services/internal/platform/logging"
)

// ErrorMapper maps a domain error that carries no gRPC status to one; ok is false for errors it
// does not know. The status message reaches the client: keep it generic and PHI-free.
type ErrorMapper func(err error) (st *status.Status, ok bool)

// MapError returns an ErrorMapper for a sentinel: any error matching target (errors.Is) becomes
// code with msg. Example: grpcserver.MapError(domain.ErrThreadNotFound, codes.NotFound, "thread not found").
func MapError(target error, code codes.Code, msg string) ErrorMapper {
	return func(err error) (*status.Status, bool) {
		if errors.Is(err, target) {
			return status.New(code, msg), true
		}
		return nil, false
	}
}

// grpcStatuser is implemented by status errors and by domain errors that choose their status.
type grpcStatuser interface {
	GRPCStatus() *status.Status
}

// masked codes mean "the server failed"; their text is the server's business, not the client's.
func masked(c codes.Code) bool {
	return c == codes.Internal || c == codes.Unknown || c == codes.DataLoss
}

// ToStatus is the one function that turns an error into what a client sees. In order:
//   - nil stays nil;
//   - an error carrying a status (a status error, or a domain error with GRPCStatus, even
//     wrapped) yields that status — its own message, not the wrapping text, which may hold
//     internal detail;
//   - the first ErrorMapper that claims the error yields its status;
//   - context.Canceled and context.DeadlineExceeded become Canceled and DeadlineExceeded;
//   - anything else, and any Internal, Unknown or DataLoss status from the steps above, becomes
//     Internal "internal error (request id X)"; the real error is logged with that id.
func ToStatus(ctx context.Context, err error, mappers ...ErrorMapper) error {
	if err == nil {
		return nil
	}
	if st, ok := statusOf(err, mappers); ok && !masked(st.Code()) {
		return st.Err()
	}
	id := logging.RequestID(ctx)
	logging.FromContext(ctx).LogAttrs(ctx, slog.LevelError, "rpc failed with an internal error",
		slog.String(logging.KeyError, err.Error()))
	return status.Error(codes.Internal, fmt.Sprintf("internal error (request id %s)", id))
}

func statusOf(err error, mappers []ErrorMapper) (*status.Status, bool) {
	var gs grpcStatuser
	if errors.As(err, &gs) {
		if st := gs.GRPCStatus(); st != nil {
			return st, true
		}
	}
	for _, m := range mappers {
		if st, ok := m(err); ok && st != nil {
			return st, true
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, "request canceled"), true
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, "deadline exceeded"), true
	}
	return nil, false
}

func unaryErrors(mappers []ErrorMapper) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		if err != nil {
			return nil, ToStatus(ctx, err, mappers...)
		}
		return resp, nil
	}
}

func streamErrors(mappers []ErrorMapper) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return ToStatus(ss.Context(), handler(srv, ss), mappers...)
	}
}

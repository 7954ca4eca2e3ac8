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
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// grpcStatuser is implemented by status errors and by domain errors that choose their status.
type grpcStatuser interface {
	GRPCStatus() *status.Status
}

// masked codes mean "the server failed"; their text is the server's business, not the client's.
func masked(c codes.Code) bool {
	return c == codes.Internal || c == codes.Unknown
}

// DataLossMessage is what a client sees for DataLoss: the code tells it the stored data failed
// an integrity check (retrying will not help), the detail stays in the server's log.
const DataLossMessage = "stored data failed an integrity check (request id %s)"

// ToStatus is the one function that turns an error into what a client sees. In order:
//   - nil stays nil;
//   - an error carrying a status (a status error, or a usererr.Error — whose GRPCStatus has the
//     kind's code, its message and google.rpc.ErrorInfo with its reason — even wrapped) yields
//     that status: its own message, not the wrapping text, which may hold internal detail;
//   - an Unavailable usererr's cause (the dependency's own error) is logged at warn level with
//     the request id, since the caller is told only that it may retry;
//   - context.Canceled and context.DeadlineExceeded become Canceled and DeadlineExceeded;
//   - a DataLoss status keeps its code (the client must know the data is not authentic and a
//     retry will not help) with a fixed message; the real error is logged;
//   - anything else, and any Internal or Unknown status from the steps above, becomes
//     Internal "internal error (request id X)"; the real error is logged with that id.
func ToStatus(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	st, ok := statusOf(err)
	if ok && !masked(st.Code()) && st.Code() != codes.DataLoss {
		var ue *usererr.Error
		if st.Code() == codes.Unavailable && errors.As(err, &ue) && ue.Err != nil {
			logging.FromContext(ctx).LogAttrs(ctx, slog.LevelWarn, "rpc refused: a dependency is unavailable",
				slog.String(logging.KeyError, ue.Err.Error()))
		}
		return st.Err()
	}
	id := logging.RequestID(ctx)
	if ok && st.Code() == codes.DataLoss {
		logging.FromContext(ctx).LogAttrs(ctx, slog.LevelError, "rpc failed: stored data not authentic",
			slog.String(logging.KeyError, err.Error()))
		return status.Error(codes.DataLoss, fmt.Sprintf(DataLossMessage, id))
	}
	logging.FromContext(ctx).LogAttrs(ctx, slog.LevelError, "rpc failed with an internal error",
		slog.String(logging.KeyError, err.Error()))
	return status.Error(codes.Internal, fmt.Sprintf("internal error (request id %s)", id))
}

func statusOf(err error) (*status.Status, bool) {
	var gs grpcStatuser
	if errors.As(err, &gs) {
		if st := gs.GRPCStatus(); st != nil {
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

func unaryErrors() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		if err != nil {
			return nil, ToStatus(ctx, err)
		}
		return resp, nil
	}
}

func streamErrors() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return ToStatus(ss.Context(), handler(srv, ss))
	}
}

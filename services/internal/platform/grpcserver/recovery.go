package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/securemsg/securemsg/services/internal/platform/logging"
)

// errPanic is what a recovered panic becomes; ToStatus masks it as an internal error, so the
// client sees only "internal error (request id X)".
var errPanic = errors.New("panic recovered in rpc handler")

// recoverPanic logs the panic with the request id and its stack, and returns errPanic. The
// panic value itself is logged only when it is an error (runtime errors such as a nil
// dereference, or our errors, PHI-free by contract); any other value is logged by type alone,
// since panic(fmt.Sprintf(...)) could carry anything.
func recoverPanic(panics prometheus.Counter) recovery.RecoveryHandlerFuncContext {
	return func(ctx context.Context, p any) error {
		panics.Inc()
		what := fmt.Sprintf("%T", p)
		if err, ok := p.(error); ok { // runtime.Error included
			what = err.Error()
		}
		logging.FromContext(ctx).LogAttrs(ctx, slog.LevelError, "panic in rpc",
			slog.String(logging.KeyPanic, what),
			slog.String(logging.KeyStack, string(debug.Stack())))
		return errPanic
	}
}

func unaryRecovery(panics prometheus.Counter) grpc.UnaryServerInterceptor {
	return recovery.UnaryServerInterceptor(recovery.WithRecoveryHandlerContext(recoverPanic(panics)))
}

func streamRecovery(panics prometheus.Counter) grpc.StreamServerInterceptor {
	return recovery.StreamServerInterceptor(recovery.WithRecoveryHandlerContext(recoverPanic(panics)))
}

package daemon

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"github.com/securemsg/securemsg/services/internal/platform/config"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver"
	"github.com/securemsg/securemsg/services/internal/platform/tracing"
)

// Program is what a service's main tells Main: how to read its configuration and how to build
// it on a started Process. C is the service's config struct (wire.Config), S what its Build
// returns (the use cases; Main only needs the error).
type Program[C, S any] struct {
	// Spec names the service and what it owns, for the loaded configuration.
	Spec func(C) Spec
	// Base is the configuration every service shares, taken from C.
	Base func(C) Base
	// DefaultGRPCAddr is SECUREMSG_GRPC_ADDR when the environment does not set it.
	DefaultGRPCAddr string
	// ServerOptions tune the gRPC server for this service (message sizes, windows).
	ServerOptions []grpcserver.Option
	// Build connects the service's own dependencies and registers it on the process.
	Build func(context.Context, C, *Process) (S, error)
}

// Main is a service binary's whole main: load the configuration from SECUREMSG_* variables
// (every problem reported at once), start the shared parts, build the service on them and run it
// until SIGTERM or SIGINT; on failure it prints the error and exits 1.
func Main[C, S any](name string, p Program[C, S]) {
	if err := run(p); err != nil {
		_, _ = fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

func run[C, S any](p Program[C, S]) error {
	var cfg C
	if err := config.Load(&cfg, config.WithDefault("SECUREMSG_GRPC_ADDR", p.DefaultGRPCAddr)); err != nil {
		return err
	}
	ctx, stop := grpcserver.SignalContext(context.Background())
	defer stop()
	spec := p.Spec(cfg)
	stopTracing, err := tracing.Setup(ctx, spec.Name)
	if err != nil {
		return err
	}
	defer func() {
		// Spans still buffered are sent before the process ends; a trace backend that is down
		// costs the shutdown at most this long.
		flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = stopTracing(flushCtx)
	}()
	proc, err := Start(ctx, spec, p.Base(cfg), p.ServerOptions...)
	if err != nil {
		return err
	}
	if _, err := p.Build(ctx, cfg, proc); err != nil {
		return err
	}
	// Start-up (migrations, policies, clients) leaves a large transient heap, and the garbage
	// collector would size its next goal from it: twice that, reached during the first big
	// request. Collecting now sets the goal from the steady state instead (attachment's memory
	// budget of 64 MiB RSS depends on it).
	debug.FreeOSMemory()
	return proc.Run(ctx)
}

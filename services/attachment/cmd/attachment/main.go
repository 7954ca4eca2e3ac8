// Command attachment runs the securemsg attachment service: scanned, envelope-encrypted attachments.
// Configuration comes from SECUREMSG_* environment variables (see README.md, Configuration, and
// services/attachment/internal/wire/config.go).
package main

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"

	"github.com/securemsg/securemsg/services/attachment/internal/wire"
	"github.com/securemsg/securemsg/services/internal/platform/config"
	"github.com/securemsg/securemsg/services/internal/platform/daemon"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "attachment:", err)
		os.Exit(1)
	}
}

func run() error {
	var cfg wire.Config
	if err := config.Load(&cfg, config.WithDefault("SECUREMSG_GRPC_ADDR", "127.0.0.1:7002")); err != nil {
		return err
	}
	ctx, stop := grpcserver.SignalContext(context.Background())
	defer stop()
	spec := wire.Spec()
	spec.Schema = cfg.Attachment.Schema
	proc, err := daemon.Start(ctx, spec, cfg.Base, wire.ServerOptions()...)
	if err != nil {
		return err
	}
	if _, err := wire.Build(ctx, cfg, proc); err != nil {
		return err
	}
	// Start-up (migrations, policies, clients) leaves a large transient heap, and the garbage
	// collector would size its next goal from it: twice that, reached during the first big
	// upload. Collecting now sets the goal from the steady state instead (RSS budget: 64 MiB).
	debug.FreeOSMemory()
	return proc.Run(ctx)
}

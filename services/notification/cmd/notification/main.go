// Command notification runs the securemsg notification service: PHI-free alerts that ask people to log in.
// Configuration comes from SECUREMSG_* environment variables (see README.md, Configuration, and
// services/notification/internal/wire/config.go).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/securemsg/securemsg/services/internal/platform/config"
	"github.com/securemsg/securemsg/services/internal/platform/daemon"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver"
	"github.com/securemsg/securemsg/services/notification/internal/wire"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "notification:", err)
		os.Exit(1)
	}
}

func run() error {
	var cfg wire.Config
	if err := config.Load(&cfg, config.WithDefault("SECUREMSG_GRPC_ADDR", "127.0.0.1:7003")); err != nil {
		return err
	}
	ctx, stop := grpcserver.SignalContext(context.Background())
	defer stop()
	proc, err := daemon.Start(ctx, wire.Spec(), cfg.Base)
	if err != nil {
		return err
	}
	if _, err := wire.Build(ctx, cfg, proc); err != nil {
		return err
	}
	return proc.Run(ctx)
}

// Command notification runs the securemsg notification service: PHI-free alerts that ask people to log in.
// Configuration comes from SECUREMSG_* environment variables (see README.md, Configuration).
package main

import (
	"context"
	"fmt"
	"os"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	"github.com/securemsg/securemsg/services/internal/platform/config"
	"github.com/securemsg/securemsg/services/internal/platform/daemon"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver"
)

// Config is the notification service's configuration.
type Config struct {
	Base daemon.Base
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "notification:", err)
		os.Exit(1)
	}
}

func run() error {
	var cfg Config
	if err := config.Load(&cfg, config.WithDefault("SECUREMSG_GRPC_ADDR", "127.0.0.1:7003")); err != nil {
		return err
	}
	ctx, stop := grpcserver.SignalContext(context.Background())
	defer stop()
	proc, err := daemon.Start(ctx, daemon.Spec{Name: "notification", Schema: "notification", Component: commonv1.Component_COMPONENT_NOTIFICATION}, cfg.Base)
	if err != nil {
		return err
	}
	return proc.Run(ctx)
}

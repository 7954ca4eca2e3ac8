// Command messaging runs the securemsg messaging service: threads and messages between patients, proxies and care teams.
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

// Config is the messaging service's configuration.
type Config struct {
	Base daemon.Base
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "messaging:", err)
		os.Exit(1)
	}
}

func run() error {
	var cfg Config
	if err := config.Load(&cfg, config.WithDefault("SECUREMSG_GRPC_ADDR", "127.0.0.1:7001")); err != nil {
		return err
	}
	ctx, stop := grpcserver.SignalContext(context.Background())
	defer stop()
	proc, err := daemon.Start(ctx, daemon.Spec{Name: "messaging", Schema: "messaging", Component: commonv1.Component_COMPONENT_MESSAGING}, cfg.Base)
	if err != nil {
		return err
	}
	return proc.Run(ctx)
}

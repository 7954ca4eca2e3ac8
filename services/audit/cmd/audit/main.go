// Command audit runs the securemsg audit service: it consumes audit records from JetStream into
// the append-only, hash-chained, Merkle-tree log in schema `audit`, signs checkpoints, answers
// queries, exports, verification, proofs and access reports over gRPC, raises anomaly alerts
// and answers producers' reconciliation requests.
// Configuration comes from SECUREMSG_* environment variables (see README.md, Configuration, and
// services/audit/internal/wire/config.go).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/securemsg/securemsg/services/audit/internal/wire"
	"github.com/securemsg/securemsg/services/internal/platform/config"
	"github.com/securemsg/securemsg/services/internal/platform/daemon"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "audit:", err)
		os.Exit(1)
	}
}

func run() error {
	var cfg wire.Config
	if err := config.Load(&cfg, config.WithDefault("SECUREMSG_GRPC_ADDR", "127.0.0.1:7004")); err != nil {
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

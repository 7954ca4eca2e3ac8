// Command audit runs the securemsg audit service: it consumes audit records from JetStream into
// the append-only, hash-chained, Merkle-tree log in schema `audit`, signs checkpoints, answers
// queries, exports, verification, proofs and access reports over gRPC, raises anomaly alerts
// and answers producers' reconciliation requests.
// Configuration comes from SECUREMSG_* environment variables (see README.md, Configuration, and
// services/audit/internal/wire/config.go).
package main

import (
	"github.com/securemsg/securemsg/services/audit/internal/app"
	"github.com/securemsg/securemsg/services/audit/internal/wire"
	"github.com/securemsg/securemsg/services/internal/platform/daemon"
)

func main() {
	daemon.Main("audit", daemon.Program[wire.Config, *app.Service]{
		Spec:            func(wire.Config) daemon.Spec { return wire.Spec() },
		Base:            func(c wire.Config) daemon.Base { return c.Base },
		DefaultGRPCAddr: "127.0.0.1:7004",
		Build:           wire.Build,
	})
}

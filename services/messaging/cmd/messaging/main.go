// Command messaging runs the securemsg messaging service: threads and messages between patients, proxies and care teams.
// Configuration comes from SECUREMSG_* environment variables (see README.md, Configuration, and
// services/messaging/internal/wire/config.go).
package main

import (
	// Pools keep their active hours in IANA time zones; the image carries no zoneinfo.
	_ "time/tzdata"

	"github.com/securemsg/securemsg/services/internal/platform/daemon"
	"github.com/securemsg/securemsg/services/messaging/internal/app"
	"github.com/securemsg/securemsg/services/messaging/internal/wire"
)

func main() {
	daemon.Main("messaging", daemon.Program[wire.Config, *app.Service]{
		Spec:            func(wire.Config) daemon.Spec { return wire.Spec() },
		Base:            func(c wire.Config) daemon.Base { return c.Base },
		DefaultGRPCAddr: "127.0.0.1:7001",
		Build:           wire.Build,
	})
}

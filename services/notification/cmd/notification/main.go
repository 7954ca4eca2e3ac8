// Command notification runs the securemsg notification service: PHI-free alerts that ask people to log in.
// Configuration comes from SECUREMSG_* environment variables (see README.md, Configuration, and
// services/notification/internal/wire/config.go).
package main

import (
	"github.com/securemsg/securemsg/services/internal/platform/daemon"
	"github.com/securemsg/securemsg/services/notification/internal/app"
	"github.com/securemsg/securemsg/services/notification/internal/wire"
)

func main() {
	daemon.Main("notification", daemon.Program[wire.Config, *app.Service]{
		Spec:            func(wire.Config) daemon.Spec { return wire.Spec() },
		Base:            func(c wire.Config) daemon.Base { return c.Base },
		DefaultGRPCAddr: "127.0.0.1:7003",
		Build:           wire.Build,
	})
}

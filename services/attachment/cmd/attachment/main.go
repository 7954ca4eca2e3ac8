// Command attachment runs the securemsg attachment service: scanned, envelope-encrypted attachments.
// Configuration comes from SECUREMSG_* environment variables (see README.md, Configuration, and
// services/attachment/internal/wire/config.go).
package main

import (
	"github.com/securemsg/securemsg/services/attachment/internal/app"
	"github.com/securemsg/securemsg/services/attachment/internal/wire"
	"github.com/securemsg/securemsg/services/internal/platform/daemon"
)

func main() {
	daemon.Main("attachment", daemon.Program[wire.Config, *app.Service]{
		Spec: func(c wire.Config) daemon.Spec {
			spec := wire.Spec()
			spec.Schema = c.Attachment.Schema // tests and benchmarks run the binary on a schema of their own
			return spec
		},
		Base:            func(c wire.Config) daemon.Base { return c.Base },
		DefaultGRPCAddr: "127.0.0.1:7002",
		ServerOptions:   wire.ServerOptions(),
		Build:           wire.Build,
	})
}

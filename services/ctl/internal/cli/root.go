// Package cli assembles securemsgctl's command tree.
package cli

import (
	"github.com/spf13/cobra"

	"github.com/securemsg/securemsg/services/ctl/internal/appscmd"
	"github.com/securemsg/securemsg/services/ctl/internal/auditcmd"
	"github.com/securemsg/securemsg/services/ctl/internal/config"
	"github.com/securemsg/securemsg/services/ctl/internal/keyscmd"
	"github.com/securemsg/securemsg/services/ctl/internal/peoplecmd"
	"github.com/securemsg/securemsg/services/ctl/internal/poolscmd"
	"github.com/securemsg/securemsg/services/ctl/internal/tokencmd"
)

// NewRootCommand returns the securemsgctl root command with every subcommand wired in.
func NewRootCommand(env config.Env) *cobra.Command {
	root := &cobra.Command{
		Use:           "securemsgctl",
		Short:         "Operate securemsg: keys, audit, care pools, client apps, retention, tokens",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(keyscmd.NewCommand(env))
	root.AddCommand(tokencmd.NewCommand())
	root.AddCommand(auditcmd.NewCommand())
	root.AddCommand(poolscmd.NewCommand())
	root.AddCommand(appscmd.NewCommand())
	root.AddCommand(peoplecmd.NewCommand())
	return root
}

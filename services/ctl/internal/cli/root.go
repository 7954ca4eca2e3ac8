// Package cli assembles securemsgctl's command tree.
package cli

import (
	"github.com/spf13/cobra"

	"github.com/securemsg/securemsg/services/ctl/internal/appscmd"
	"github.com/securemsg/securemsg/services/ctl/internal/auditcmd"
	"github.com/securemsg/securemsg/services/ctl/internal/config"
	"github.com/securemsg/securemsg/services/ctl/internal/exitcode"
	"github.com/securemsg/securemsg/services/ctl/internal/keyscmd"
	"github.com/securemsg/securemsg/services/ctl/internal/legalholdcmd"
	"github.com/securemsg/securemsg/services/ctl/internal/peoplecmd"
	"github.com/securemsg/securemsg/services/ctl/internal/poolscmd"
	"github.com/securemsg/securemsg/services/ctl/internal/retentioncmd"
	"github.com/securemsg/securemsg/services/ctl/internal/tokencmd"
)

// NewRootCommand returns the securemsgctl root command with every subcommand wired in. Run it
// with ExecuteContext and exit with exitcode.Of of its error.
func NewRootCommand(env config.Env) *cobra.Command {
	const short = "Operate securemsg: keys, audit, care pools, client apps, people, retention purges, legal holds, tokens"
	root := &cobra.Command{
		Use:           "securemsgctl",
		Short:         short,
		Long:          short + ".\n\n" + exitcode.Help,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(keyscmd.NewCommand(env))
	root.AddCommand(tokencmd.NewCommand())
	root.AddCommand(auditcmd.NewCommand())
	root.AddCommand(poolscmd.NewCommand())
	root.AddCommand(appscmd.NewCommand())
	root.AddCommand(peoplecmd.NewCommand())
	root.AddCommand(retentioncmd.NewCommand())
	root.AddCommand(legalholdcmd.NewCommand())
	markUsageErrors(root)
	return root
}

// markUsageErrors makes every way cobra refuses a command line a usage error (exit status 2):
// bad flags, missing required flags, wrong arguments, and unknown subcommands (a command that
// only groups others prints its help when called alone and refuses any argument).
func markUsageErrors(root *cobra.Command) {
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return exitcode.Usage(err) })
	// Checked here, before cobra checks them itself with plain errors. No command sets its own
	// PersistentPreRun{,E}, which would hide this one.
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if err := cmd.ValidateRequiredFlags(); err != nil {
			return exitcode.Usage(err)
		}
		return exitcode.Usage(cmd.ValidateFlagGroups())
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
			c.Args = cobra.NoArgs
			c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
		}
		if c.Args != nil {
			c.Args = exitcode.UsageArgs(c.Args)
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

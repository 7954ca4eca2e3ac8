// Package appscmd implements `securemsgctl apps`: an administrator lists, registers, changes,
// withdraws and reinstates the client applications every service admits, through the
// messaging service's registry rpcs (authorised by policy, audited, and in every service's
// directory from the next call on).
package appscmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/ctl/internal/exitcode"
	"github.com/securemsg/securemsg/services/ctl/internal/svcconn"
)

// NewCommand returns the `apps` command and its subcommands.
func NewCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "apps",
		Short: "Manage the registered client applications (admin)",
		Long: `apps calls the messaging service as an administrator (--token-file: an admin's token with
the admin scope, MFA and a recent login). A token issued to an app that is not registered, or
asking for a scope beyond the app's, is refused by every service.`,
	}
	var c client
	c.Register(cmd)
	cmd.AddCommand(listCommand(&c), registerCommand(&c), updateCommand(&c),
		activeCommand(&c, "reinstate", true), activeCommand(&c, "withdraw", false))
	return cmd
}

// client is the commands' connection to the messaging service.
type client struct{ svcconn.Admin }

func (c *client) print(w io.Writer, apps ...*messagingv1.ClientApp) error {
	if c.JSON {
		return svcconn.PrintJSON(w, apps)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "CLIENT ID\tKIND\tNAME\tACTIVE\tSCOPES\tPOOLS")
	for _, a := range apps {
		pools := strings.Join(a.GetPoolIds(), ",")
		if pools == "" {
			pools = "-"
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%s\t%s\n", a.GetClientId(), KindName(a.GetKind()), a.GetDisplayName(), a.GetActive(),
			strings.Join(a.GetAllowedScopes(), " "), pools)
	}
	return tw.Flush()
}

// KindName is a kind as the command line writes it ("care-team").
func KindName(k directoryv1.ClientAppKind) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(k.String(), "CLIENT_APP_KIND_")), "_", "-")
}

// ParseKind reads a kind: patient-portal, care-team, third-party, operator or provisioning.
func ParseKind(s string) (directoryv1.ClientAppKind, error) {
	v, ok := directoryv1.ClientAppKind_value["CLIENT_APP_KIND_"+strings.ToUpper(strings.ReplaceAll(s, "-", "_"))]
	if !ok || v == 0 {
		return 0, exitcode.Usage(fmt.Errorf("--kind must be patient-portal, care-team, third-party, operator or provisioning, not %q", s))
	}
	return directoryv1.ClientAppKind(v), nil
}

func listCommand(c *client) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List every registration, withdrawn ones too",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.Call(cmd.Context(), func(ctx context.Context, api messagingv1.MessagingServiceClient) error {
				var all []*messagingv1.ClientApp
				req := &messagingv1.ListClientAppsRequest{PageSize: 500}
				for {
					resp, err := api.ListClientApps(ctx, req)
					if err != nil {
						return err
					}
					all = append(all, resp.GetApps()...)
					if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
						return c.print(cmd.OutOrStdout(), all...)
					}
				}
			})
		},
	}
}

func registerCommand(c *client) *cobra.Command {
	var kind, name string
	var scopes, pools []string
	cmd := &cobra.Command{
		Use:   "register CLIENT_ID --kind KIND --name NAME --scope SCOPE [--scope …] [--pool POOL …]",
		Short: "Register a client application",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := ParseKind(kind)
			if err != nil {
				return err
			}
			app := &messagingv1.ClientApp{ClientId: args[0], Kind: k, DisplayName: name, AllowedScopes: scopes, PoolIds: pools}
			return c.Call(cmd.Context(), func(ctx context.Context, api messagingv1.MessagingServiceClient) error {
				resp, err := api.RegisterClientApp(ctx, &messagingv1.RegisterClientAppRequest{App: app})
				if err != nil {
					return err
				}
				return c.print(cmd.OutOrStdout(), resp.GetApp())
			})
		},
	}
	cmd.Flags().StringVar(&kind, "kind", "", "patient-portal, care-team, third-party, operator or provisioning")
	cmd.Flags().StringVar(&name, "name", "", "a name for operators")
	cmd.Flags().StringSliceVar(&scopes, "scope", nil, "an OAuth scope the app may ask for; repeatable")
	cmd.Flags().StringSliceVar(&pools, "pool", nil, "care-team and third-party apps: a pool the app may work in; repeatable")
	for _, f := range []string{"kind", "name", "scope"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

func updateCommand(c *client) *cobra.Command {
	var name string
	var scopes, pools []string
	cmd := &cobra.Command{
		Use:   "update CLIENT_ID [--name …] [--scope …] [--pool …]",
		Short: "Change a registration's name, scopes or pools (the flags given replace the stored values)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			mask := &fieldmaskpb.FieldMask{}
			for flag, field := range map[string]string{"name": "display_name", "scope": "allowed_scopes", "pool": "pool_ids"} {
				if cmd.Flags().Changed(flag) {
					mask.Paths = append(mask.Paths, field)
				}
			}
			if len(mask.Paths) == 0 {
				return exitcode.Usage(errors.New("nothing to change: give at least one of --name, --scope, --pool"))
			}
			app := &messagingv1.ClientApp{ClientId: args[0], DisplayName: name, AllowedScopes: scopes, PoolIds: pools}
			return c.Call(cmd.Context(), func(ctx context.Context, api messagingv1.MessagingServiceClient) error {
				resp, err := api.UpdateClientApp(ctx, &messagingv1.UpdateClientAppRequest{App: app, UpdateMask: mask})
				if err != nil {
					return err
				}
				return c.print(cmd.OutOrStdout(), resp.GetApp())
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "a name for operators")
	cmd.Flags().StringSliceVar(&scopes, "scope", nil, "an OAuth scope the app may ask for; repeatable")
	cmd.Flags().StringSliceVar(&pools, "pool", nil, "a pool the app may work in; repeatable")
	return cmd
}

func activeCommand(c *client, verb string, active bool) *cobra.Command {
	short := "Reinstate a withdrawn registration"
	if !active {
		short = "Withdraw a registration: every token issued to the app is refused from the next call on"
	}
	return &cobra.Command{
		Use:   verb + " CLIENT_ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.Call(cmd.Context(), func(ctx context.Context, api messagingv1.MessagingServiceClient) error {
				resp, err := api.UpdateClientApp(ctx, &messagingv1.UpdateClientAppRequest{
					App: &messagingv1.ClientApp{ClientId: args[0], Active: active}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"active"}},
				})
				if err != nil {
					return err
				}
				return c.print(cmd.OutOrStdout(), resp.GetApp())
			})
		},
	}
}

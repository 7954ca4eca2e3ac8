// Package peoplecmd implements `securemsgctl people`: an administrator lists and reads the
// directory's people, provisions care-team members, and deactivates or reactivates anyone,
// through the messaging service's people rpcs (authorised by policy, audited, and in every
// service's directory from the next call on). Identity providers do the same over SCIM; this is
// the operator's way, for a clinic without one and for emergencies.
package peoplecmd

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/ctl/internal/exitcode"
	"github.com/securemsg/securemsg/services/ctl/internal/svcconn"
)

// NewCommand returns the `people` command and its subcommands.
func NewCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "people",
		Short: "List, provision and (de)activate the directory's people (admin)",
		Long: `people calls the messaging service as an administrator (--token-file: an admin's token with
the admin scope, MFA and a recent login). A deactivated person is refused by every service from
their next call on, whatever their token says. Patients and proxies are recorded at their first
call and are never provisioned; provisioning is for the organisation's staff.

Display names and user names are personal data: the table prints them for the administrator
who asked, and nothing here logs them.`,
	}
	var c client
	c.Register(cmd)
	cmd.AddCommand(listCommand(&c), getCommand(&c), provisionCommand(&c),
		statusCommand(&c, "deactivate", directoryv1.PersonStatus_PERSON_STATUS_DEACTIVATED),
		statusCommand(&c, "activate", directoryv1.PersonStatus_PERSON_STATUS_ACTIVE))
	return cmd
}

type client struct{ svcconn.Admin }

func (c *client) print(w io.Writer, people ...*messagingv1.Person) error {
	if c.JSON {
		return svcconn.PrintJSON(w, people)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "SUBJECT\tSTATUS\tROLES\tSOURCE\tUSER NAME\tNAME")
	for _, p := range people {
		roles := make([]string, 0, len(p.GetRoles()))
		for _, r := range p.GetRoles() {
			roles = append(roles, RoleName(r))
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.GetSubject(), StatusName(p.GetStatus()), strings.Join(roles, ","),
			SourceName(p.GetSource()), dash(p.GetUserName()), dash(p.GetDisplayName()))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// RoleName is a role as the command line writes it ("clinician").
func RoleName(r commonv1.Role) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "ROLE_"))
}

// StatusName is a status as the command line writes it ("deactivated").
func StatusName(s directoryv1.PersonStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "PERSON_STATUS_"))
}

// SourceName is how the directory learned of a person, as the command line writes it.
func SourceName(s messagingv1.PersonSource) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(s.String(), "PERSON_SOURCE_")), "_", "-")
}

// ParseRoles reads provisioned roles: clinician, staff, admin, auditor.
func ParseRoles(names []string) ([]commonv1.Role, error) {
	var out []commonv1.Role
	for _, n := range names {
		v, ok := commonv1.Role_value["ROLE_"+strings.ToUpper(strings.TrimSpace(n))]
		r := commonv1.Role(v)
		if !ok || (r != commonv1.Role_ROLE_CLINICIAN && r != commonv1.Role_ROLE_STAFF && r != commonv1.Role_ROLE_ADMIN && r != commonv1.Role_ROLE_AUDITOR) {
			return nil, exitcode.Usage(fmt.Errorf("--role must be clinician, staff, admin or auditor, not %q", n))
		}
		out = append(out, r)
	}
	return out, nil
}

// ParseSources reads --source values: first-contact, provisioned, seed.
func ParseSources(names []string) ([]messagingv1.PersonSource, error) {
	var out []messagingv1.PersonSource
	for _, n := range names {
		v, ok := messagingv1.PersonSource_value["PERSON_SOURCE_"+strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(n), "-", "_"))]
		if !ok || v == 0 {
			return nil, exitcode.Usage(fmt.Errorf("--source must be first-contact, provisioned or seed, not %q", n))
		}
		out = append(out, messagingv1.PersonSource(v))
	}
	return out, nil
}

func listCommand(c *client) *cobra.Command {
	var userName, externalID string
	var sources []string
	cmd := &cobra.Command{
		Use:   "list [--user-name NAME] [--external-id ID] [--source SOURCE …]",
		Short: "List people, by subject",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src, err := ParseSources(sources)
			if err != nil {
				return err
			}
			return c.Call(cmd.Context(), func(ctx context.Context, api messagingv1.MessagingServiceClient) error {
				var all []*messagingv1.Person
				req := &messagingv1.ListPeopleRequest{UserName: userName, ExternalId: externalID, Sources: src, PageSize: 100}
				for {
					resp, err := api.ListPeople(ctx, req)
					if err != nil {
						return err
					}
					all = append(all, resp.GetPeople()...)
					if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
						return c.print(cmd.OutOrStdout(), all...)
					}
				}
			})
		},
	}
	cmd.Flags().StringVar(&userName, "user-name", "", "only the person with this login name (case-insensitive)")
	cmd.Flags().StringVar(&externalID, "external-id", "", "only the person with this identity-provider id")
	cmd.Flags().StringSliceVar(&sources, "source", nil, "first-contact, provisioned or seed; repeatable")
	return cmd
}

func getCommand(c *client) *cobra.Command {
	return &cobra.Command{
		Use:   "get SUBJECT",
		Short: "Show one person",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.Call(cmd.Context(), func(ctx context.Context, api messagingv1.MessagingServiceClient) error {
				resp, err := api.GetPerson(ctx, &messagingv1.GetPersonRequest{Subject: args[0]})
				if err != nil {
					return err
				}
				return c.print(cmd.OutOrStdout(), resp.GetPerson())
			})
		},
	}
}

func provisionCommand(c *client) *cobra.Command {
	var userName, externalID, name string
	var roles []string
	cmd := &cobra.Command{
		Use:   "provision SUBJECT --role ROLE [--role …] [--user-name NAME] [--external-id ID] [--name NAME]",
		Short: "Create or replace a care-team member (every field is replaced; the status is kept active)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := ParseRoles(roles)
			if err != nil {
				return err
			}
			p := &messagingv1.Person{Subject: args[0], UserName: userName, ExternalId: externalID, DisplayName: name, Roles: r}
			return c.Call(cmd.Context(), func(ctx context.Context, api messagingv1.MessagingServiceClient) error {
				resp, err := api.ProvisionPerson(ctx, &messagingv1.ProvisionPersonRequest{Person: p})
				if err != nil {
					return err
				}
				return c.print(cmd.OutOrStdout(), resp.GetPerson())
			})
		},
	}
	cmd.Flags().StringSliceVar(&roles, "role", nil, "clinician, staff, admin or auditor; repeatable")
	cmd.Flags().StringVar(&userName, "user-name", "", "the person's login name at the identity provider")
	cmd.Flags().StringVar(&externalID, "external-id", "", "the identity provider's id for the person")
	cmd.Flags().StringVar(&name, "name", "", "the name shown beside what they write")
	_ = cmd.MarkFlagRequired("role")
	return cmd
}

func statusCommand(c *client, verb string, status directoryv1.PersonStatus) *cobra.Command {
	short := "Reactivate a person"
	if status == directoryv1.PersonStatus_PERSON_STATUS_DEACTIVATED {
		short = "Deactivate a person: every service refuses them from their next call on"
	}
	return &cobra.Command{
		Use:   verb + " SUBJECT",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.Call(cmd.Context(), func(ctx context.Context, api messagingv1.MessagingServiceClient) error {
				resp, err := api.SetPersonStatus(ctx, &messagingv1.SetPersonStatusRequest{Subject: args[0], Status: status})
				if err != nil {
					return err
				}
				return c.print(cmd.OutOrStdout(), resp.GetPerson())
			})
		},
	}
}

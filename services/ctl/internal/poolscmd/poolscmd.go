// Package poolscmd implements `securemsgctl pools`: an administrator lists, creates, changes,
// deactivates and reactivates care pools and manages who works in them, through the messaging
// service's pool rpcs (so every change is authorised by policy, audited and reaches every
// service's directory at once).
package poolscmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/ctl/internal/exitcode"
	"github.com/securemsg/securemsg/services/ctl/internal/svcconn"
)

// NewCommand returns the `pools` command and its subcommands.
func NewCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pools",
		Short: "Manage care pools and their members (admin)",
		Long: `pools calls the messaging service as an administrator (--token-file: an admin's token with
the admin scope, MFA and a recent login). A member added or removed works, or stops working,
the pool's threads from their next call on, on every service.`,
	}
	var c client
	c.Register(cmd)
	cmd.AddCommand(listCommand(&c), getCommand(&c), createCommand(&c), updateCommand(&c),
		activeCommand(&c, "activate", true), activeCommand(&c, "deactivate", false),
		membersCommand(&c), addMemberCommand(&c), removeMemberCommand(&c))
	return cmd
}

// client is the commands' connection to the messaging service.
type client struct{ svcconn.Admin }

func (c *client) printPools(w io.Writer, pools ...*messagingv1.Pool) error {
	if c.JSON {
		return svcconn.PrintJSON(w, pools)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "POOL\tNAME\tORGANISATION\tAUDIENCE\tACTIVE\tOPEN NOW\tMEMBERS\tHOURS")
	for _, p := range pools {
		audience := "all patients"
		if p.GetAudience() == messagingv1.PoolAudience_POOL_AUDIENCE_LISTED_PATIENTS {
			audience = fmt.Sprintf("%d listed", len(p.GetPatientIds()))
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%t\t%t\t%d\t%s\n", p.GetPoolId(), p.GetName(), p.GetOrganisation(), audience,
			p.GetActive(), p.GetOpenNow(), p.GetMemberCount(), FormatHours(p.GetActiveHours()))
	}
	return tw.Flush()
}

func listCommand(c *client) *cobra.Command {
	var inactive bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List every pool, by name",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.Call(cmd.Context(), func(ctx context.Context, api messagingv1.MessagingServiceClient) error {
				var all []*messagingv1.Pool
				req := &messagingv1.ListPoolsRequest{IncludeInactive: inactive, PageSize: 500}
				for {
					resp, err := api.ListPools(ctx, req)
					if err != nil {
						return err
					}
					all = append(all, resp.GetPools()...)
					if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
						return c.printPools(cmd.OutOrStdout(), all...)
					}
				}
			})
		},
	}
	cmd.Flags().BoolVar(&inactive, "include-inactive", false, "list deactivated pools too")
	return cmd
}

func getCommand(c *client) *cobra.Command {
	return &cobra.Command{
		Use:   "get POOL_ID",
		Short: "Show one pool",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.Call(cmd.Context(), func(ctx context.Context, api messagingv1.MessagingServiceClient) error {
				resp, err := api.GetPool(ctx, &messagingv1.GetPoolRequest{PoolId: args[0]})
				if err != nil {
					return err
				}
				return c.printPools(cmd.OutOrStdout(), resp.GetPool())
			})
		},
	}
}

// poolFlags are the flags that describe a pool, for create and update.
type poolFlags struct {
	name, organisation, audience, timeZone string
	patients, hours                        []string
}

func (f *poolFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.name, "name", "", "the name patients see")
	cmd.Flags().StringVar(&f.organisation, "organisation", "", "the organisation the pool belongs to")
	cmd.Flags().StringVar(&f.audience, "audience", "all", "who may write: all (every patient) or listed (--patient only)")
	cmd.Flags().StringSliceVar(&f.patients, "patient", nil, "with --audience listed: a patient id who may write; repeatable")
	cmd.Flags().StringArrayVar(&f.hours, "hours", nil, `staffed window, e.g. "Mon-Fri 08:00-17:00"; repeatable; none: always`)
	cmd.Flags().StringVar(&f.timeZone, "time-zone", "", "IANA time zone of --hours (e.g. America/Chicago)")
}

// pool builds the pool the flags describe.
func (f *poolFlags) pool(id string) (*messagingv1.Pool, error) {
	p := &messagingv1.Pool{PoolId: id, Name: f.name, Organisation: f.organisation, PatientIds: f.patients}
	switch f.audience {
	case "all":
		p.Audience = messagingv1.PoolAudience_POOL_AUDIENCE_ALL_PATIENTS
	case "listed":
		p.Audience = messagingv1.PoolAudience_POOL_AUDIENCE_LISTED_PATIENTS
	default:
		return nil, exitcode.Usage(errors.New("--audience must be all or listed"))
	}
	if len(f.hours) > 0 {
		h, err := ParseHours(f.timeZone, f.hours)
		if err != nil {
			return nil, err
		}
		p.ActiveHours = h
	}
	return p, nil
}

func createCommand(c *client) *cobra.Command {
	var f poolFlags
	cmd := &cobra.Command{
		Use:   "create POOL_ID --name NAME",
		Short: "Create an active pool with no members",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := f.pool(args[0])
			if err != nil {
				return err
			}
			return c.Call(cmd.Context(), func(ctx context.Context, api messagingv1.MessagingServiceClient) error {
				resp, err := api.CreatePool(ctx, &messagingv1.CreatePoolRequest{Pool: p})
				if err != nil {
					return err
				}
				return c.printPools(cmd.OutOrStdout(), resp.GetPool())
			})
		},
	}
	f.register(cmd)
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

// updateFields maps update's flags to the pool fields they change.
var updateFields = []struct{ flag, field string }{
	{"name", "name"}, {"organisation", "organisation"}, {"audience", "audience"}, {"patient", "patient_ids"},
	{"hours", "active_hours"}, {"time-zone", "active_hours"},
}

func updateCommand(c *client) *cobra.Command {
	var f poolFlags
	var etag string
	var alwaysOpen bool
	cmd := &cobra.Command{
		Use:   "update POOL_ID [--name …] [--organisation …] [--audience …] [--patient …] [--hours … --time-zone …]",
		Short: "Change the fields named by the flags given",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := f.pool(args[0])
			if err != nil {
				return err
			}
			p.Etag = etag
			mask := &fieldmaskpb.FieldMask{}
			for _, u := range updateFields {
				if cmd.Flags().Changed(u.flag) && !contains(mask.Paths, u.field) {
					mask.Paths = append(mask.Paths, u.field)
				}
			}
			if alwaysOpen {
				p.ActiveHours = nil
				mask.Paths = append(mask.Paths, "active_hours")
			}
			if len(mask.Paths) == 0 {
				return exitcode.Usage(errors.New("nothing to change: give at least one of --name, --organisation, --audience, --patient, --hours, --always-open"))
			}
			return c.Call(cmd.Context(), func(ctx context.Context, api messagingv1.MessagingServiceClient) error {
				resp, err := api.UpdatePool(ctx, &messagingv1.UpdatePoolRequest{Pool: p, UpdateMask: mask})
				if err != nil {
					return err
				}
				return c.printPools(cmd.OutOrStdout(), resp.GetPool())
			})
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&etag, "etag", "", "refuse the change unless the pool is still at this etag")
	cmd.Flags().BoolVar(&alwaysOpen, "always-open", false, "clear the active hours")
	return cmd
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func activeCommand(c *client, verb string, active bool) *cobra.Command {
	short := "Reactivate a pool: patients may write to it and its members work it again"
	if !active {
		short = "Deactivate a pool: nobody may write or transfer to it, and its members lose its threads"
	}
	return &cobra.Command{
		Use:   verb + " POOL_ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.Call(cmd.Context(), func(ctx context.Context, api messagingv1.MessagingServiceClient) error {
				resp, err := api.UpdatePool(ctx, &messagingv1.UpdatePoolRequest{
					Pool: &messagingv1.Pool{PoolId: args[0], Active: active}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"active"}},
				})
				if err != nil {
					return err
				}
				return c.printPools(cmd.OutOrStdout(), resp.GetPool())
			})
		},
	}
}

func membersCommand(c *client) *cobra.Command {
	return &cobra.Command{
		Use:   "members POOL_ID",
		Short: "List who works in a pool",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.Call(cmd.Context(), func(ctx context.Context, api messagingv1.MessagingServiceClient) error {
				var all []*messagingv1.PoolMember
				req := &messagingv1.ListPoolMembersRequest{PoolId: args[0], PageSize: 500}
				for {
					resp, err := api.ListPoolMembers(ctx, req)
					if err != nil {
						return err
					}
					all = append(all, resp.GetMembers()...)
					if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
						break
					}
				}
				if c.JSON {
					return svcconn.PrintJSON(cmd.OutOrStdout(), all)
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
				_, _ = fmt.Fprintln(tw, "SUBJECT\tROLE\tSINCE")
				for _, m := range all {
					_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\n", m.GetSubject(), roleName(m.GetRole()), m.GetAddTime().AsTime().Format(time.RFC3339))
				}
				return tw.Flush()
			})
		},
	}
}

func roleName(r directoryv1.PoolRole) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "POOL_ROLE_"))
}

// ParseRole reads a pool role: clinician, staff or lead.
func ParseRole(s string) (directoryv1.PoolRole, error) {
	v, ok := directoryv1.PoolRole_value["POOL_ROLE_"+strings.ToUpper(s)]
	if !ok || v == 0 {
		return 0, exitcode.Usage(fmt.Errorf("--role must be clinician, staff or lead, not %q", s))
	}
	return directoryv1.PoolRole(v), nil
}

func addMemberCommand(c *client) *cobra.Command {
	var role string
	cmd := &cobra.Command{
		Use:   "add-member POOL_ID SUBJECT --role clinician|staff|lead",
		Short: "Add a person to a pool, or change their role in it",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := ParseRole(role)
			if err != nil {
				return err
			}
			return c.Call(cmd.Context(), func(ctx context.Context, api messagingv1.MessagingServiceClient) error {
				resp, err := api.SetPoolMember(ctx, &messagingv1.SetPoolMemberRequest{PoolId: args[0], Subject: args[1], Role: r})
				if err != nil {
					return err
				}
				verb := "role changed"
				if resp.GetAdded() {
					verb = "added"
				}
				_, _ = fmt.Fprintf(cmd.OutOrStdout(), "%s %s to %s as %s\n", args[1], verb, args[0], roleName(resp.GetMember().GetRole()))
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&role, "role", "clinician", "the person's role in the pool: clinician, staff or lead")
	return cmd
}

func removeMemberCommand(c *client) *cobra.Command {
	return &cobra.Command{
		Use:   "remove-member POOL_ID SUBJECT",
		Short: "Take a person out of a pool; they lose its threads on their next call",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.Call(cmd.Context(), func(ctx context.Context, api messagingv1.MessagingServiceClient) error {
				resp, err := api.RemovePoolMember(ctx, &messagingv1.RemovePoolMemberRequest{PoolId: args[0], Subject: args[1]})
				if err != nil {
					return err
				}
				_, _ = fmt.Fprintf(cmd.OutOrStdout(), "%s removed from %s; %d open threads of the pool are still assigned to them\n",
					args[1], args[0], resp.GetAssignedThreads())
				return nil
			})
		},
	}
}

var weekdays = []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}

// ParseHours reads staffed windows written "Mon-Fri 08:00-17:00" or "Sat 09:00-12:30" in time
// zone tz.
func ParseHours(tz string, specs []string) (*messagingv1.ActiveHours, error) {
	if tz == "" {
		return nil, exitcode.Usage(errors.New("--time-zone is required with --hours"))
	}
	h := &messagingv1.ActiveHours{TimeZone: tz}
	for _, spec := range specs {
		days, span, ok := strings.Cut(strings.TrimSpace(spec), " ")
		if !ok {
			return nil, exitcode.Usage(fmt.Errorf("--hours %q: want DAYS HH:MM-HH:MM", spec))
		}
		first, last, isRange := strings.Cut(strings.ToLower(days), "-")
		if !isRange {
			last = first
		}
		from, to := dayIndex(first), dayIndex(last)
		if from == 0 || to == 0 || to < from {
			return nil, exitcode.Usage(fmt.Errorf("--hours %q: days are Mon..Sun, or a range like Mon-Fri", spec))
		}
		open, closing, ok := strings.Cut(strings.TrimSpace(span), "-")
		openMin, err1 := minuteOf(open)
		closeMin, err2 := minuteOf(closing)
		if !ok || err1 != nil || err2 != nil || closeMin <= openMin {
			return nil, exitcode.Usage(fmt.Errorf("--hours %q: want a time span like 08:00-17:00 that closes after it opens", spec))
		}
		for d := from; d <= to; d++ {
			h.Windows = append(h.Windows, &messagingv1.HoursWindow{DayOfWeek: int32(d), OpenMinute: int32(openMin), CloseMinute: int32(closeMin)}) //nolint:gosec // G115: within a week's minutes
		}
	}
	return h, nil
}

// FormatHours writes windows back in ParseHours' form, one day per entry; "always" for none.
func FormatHours(h *messagingv1.ActiveHours) string {
	if len(h.GetWindows()) == 0 {
		return "always"
	}
	var parts []string
	for _, w := range h.GetWindows() {
		parts = append(parts, fmt.Sprintf("%s %02d:%02d-%02d:%02d", weekdays[w.GetDayOfWeek()-1],
			w.GetOpenMinute()/60, w.GetOpenMinute()%60, w.GetCloseMinute()/60, w.GetCloseMinute()%60))
	}
	return strings.Join(parts, ", ") + " " + h.GetTimeZone()
}

func dayIndex(d string) int {
	for i, w := range weekdays {
		if strings.HasPrefix(d, w) {
			return i + 1
		}
	}
	return 0
}

func minuteOf(hhmm string) (int, error) {
	hh, mm, ok := strings.Cut(strings.TrimSpace(hhmm), ":")
	h, err1 := strconv.Atoi(hh)
	m, err2 := strconv.Atoi(mm)
	if !ok || err1 != nil || err2 != nil || h < 0 || m < 0 || m > 59 || h*60+m > 24*60 {
		return 0, fmt.Errorf("bad time %q", hhmm)
	}
	return h*60 + m, nil
}

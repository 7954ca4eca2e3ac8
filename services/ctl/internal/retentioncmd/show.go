package retentioncmd

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/ctl/internal/svcconn"
)

func showCommand(c *client) *cobra.Command {
	return &cobra.Command{
		Use:   "show",
		Short: "Show the retention policy in force: each category's period and cutoff, the purge job, the legal holds",
		Long: `show asks the messaging service (GetRetentionPolicy) for the retention policy it applies: for
each thread category the retention period (SECUREMSG_MESSAGING_RETENTION) and the cutoff as of
now (a purge run now would purge the threads whose last message is older, unless a legal hold
keeps them); how often the service purges by itself (SECUREMSG_MESSAGING_PURGE_INTERVAL); and
how many threads legal holds keep (securemsgctl legal-hold list names them). It changes nothing
and reads no PHI.

Output: a table per category and two summary lines, or with --json one line of protojson (a
GetRetentionPolicyResponse).

Exit status: 0 ok, 1 failed, 3 refused (not an admin with MFA).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.Call(cmd.Context(), func(ctx context.Context, api messagingv1.MessagingServiceClient) error {
				resp, err := api.GetRetentionPolicy(ctx, &messagingv1.GetRetentionPolicyRequest{})
				if err != nil {
					return err
				}
				if c.JSON {
					return svcconn.PrintJSON(cmd.OutOrStdout(), []*messagingv1.GetRetentionPolicyResponse{resp})
				}
				return printPolicy(cmd.OutOrStdout(), resp)
			})
		},
	}
}

// printPolicy writes the policy as a table with its summary lines.
func printPolicy(w io.Writer, r *messagingv1.GetRetentionPolicyResponse) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "CATEGORY\tRETENTION\tPAST RETENTION IF LAST MESSAGE BEFORE")
	for _, p := range r.GetPeriods() {
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\n", CategoryName(p.GetCategory()), PeriodText(p.GetPeriod().AsDuration()),
			p.GetCutoffTime().AsTime().UTC().Format(time.RFC3339))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	job := "is off (SECUREMSG_MESSAGING_PURGE_INTERVAL=0): only `securemsgctl retention purge` purges"
	if d := r.GetPurgeInterval(); d != nil {
		job = "runs every " + d.AsDuration().String()
	}
	_, err := fmt.Fprintf(w, "as of %s; the service's purge job %s\nlegal holds keep %d %s (%d patient %s, %d thread %s): securemsgctl legal-hold list\n",
		r.GetAsOf().AsTime().UTC().Format(time.RFC3339), job,
		r.GetThreadsOnLegalHold(), plural(r.GetThreadsOnLegalHold(), "thread", "threads"),
		r.GetPatientLegalHolds(), plural(r.GetPatientLegalHolds(), "hold", "holds"),
		r.GetThreadLegalHolds(), plural(r.GetThreadLegalHolds(), "hold", "holds"))
	return err
}

// PeriodText is a retention period as SECUREMSG_MESSAGING_RETENTION writes it: whole days as
// "2555d", anything else as a Go duration.
func PeriodText(d time.Duration) string {
	const day = 24 * time.Hour
	if d > 0 && d%day == 0 {
		return fmt.Sprintf("%dd", d/day)
	}
	return d.String()
}

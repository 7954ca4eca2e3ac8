package auditcmd

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
	"github.com/securemsg/securemsg/services/ctl/internal/svcconn"
)

func alertsCommand() *cobra.Command {
	var c conn
	var openOnly, asJSON bool
	var rule string
	cmd := &cobra.Command{
		Use:   "alerts [--open] [--rule RULE] [--json]",
		Short: "List the anomaly alerts raised over the audit log, newest first",
		Long: `alerts asks the audit service (ListAlerts) for the anomaly alerts its detector raised: the
rule, the actor whose records fired it, the window, the count against the rule's threshold, the
log sequences to read with QueryAuditEvents, and whether someone acknowledged it. An alert names
no patient and no content. The listing is itself audited.

Output: a table, or with --json one line of protojson per alert (an Alert).

Exit status: 0 ok, 1 failed, 2 bad arguments, 3 refused (not an auditor with MFA).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, ctx, done, err := c.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			var all []*auditv1.Alert
			for token := ""; ; {
				resp, err := client.ListAlerts(ctx, &auditv1.ListAlertsRequest{OpenOnly: openOnly, RuleId: rule, PageSize: 200, PageToken: token})
				if err != nil {
					return err
				}
				all = append(all, resp.GetAlerts()...)
				if token = resp.GetNextPageToken(); token == "" {
					break
				}
			}
			if asJSON {
				return svcconn.PrintJSON(cmd.OutOrStdout(), all)
			}
			return printAlerts(cmd.OutOrStdout(), all)
		},
	}
	c.flags(cmd)
	cmd.Flags().BoolVar(&openOnly, "open", false, "only alerts nobody has acknowledged")
	cmd.Flags().StringVar(&rule, "rule", "", "only alerts of this rule (bulk_read, repeated_denials, break_glass, ...)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print protojson instead of a table")
	return cmd
}

func ackCommand() *cobra.Command {
	var c conn
	var note string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ack ALERT_ID --note TEXT",
		Short: "Acknowledge an anomaly alert with a note of what was found or done",
		Long: `ack records (AcknowledgeAlert) that you looked into an alert, with a note of at most 500
characters: what you found or did, as ids and ticket numbers, never patient details. The
acknowledgement is audited. Acknowledging an alert again changes nothing and shows the first
acknowledgement.

Exit status: 0 ok, 1 failed, 2 bad arguments, 3 refused (not an auditor with MFA), 4 no such
alert.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, ctx, done, err := c.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := client.AcknowledgeAlert(ctx, &auditv1.AcknowledgeAlertRequest{AlertId: args[0], Note: note})
			if err != nil {
				return err
			}
			if asJSON {
				return svcconn.PrintJSON(cmd.OutOrStdout(), []*auditv1.Alert{resp.GetAlert()})
			}
			return printAlerts(cmd.OutOrStdout(), []*auditv1.Alert{resp.GetAlert()})
		},
	}
	c.flags(cmd)
	cmd.Flags().StringVar(&note, "note", "", "what was found or done (required; ids and ticket numbers, no patient details)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print protojson instead of a table")
	_ = cmd.MarkFlagRequired("note")
	return cmd
}

// printAlerts writes alerts as a table, one line each.
func printAlerts(w io.Writer, alerts []*auditv1.Alert) error {
	if len(alerts) == 0 {
		_, err := fmt.Fprintln(w, "no alert")
		return err
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "ALERT\tRAISED\tRULE\tACTOR\tCOUNT\tSEQUENCES\tSTATE")
	for _, a := range alerts {
		state := "open"
		if a.GetAcknowledgeTime() != nil {
			state = fmt.Sprintf("acknowledged by %s at %s: %s", a.GetAcknowledgedBy(),
				a.GetAcknowledgeTime().AsTime().UTC().Format(time.RFC3339), strings.ReplaceAll(a.GetNote(), "\n", " "))
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s (%s)\t%d of %d\t%d-%d\t%s\n", a.GetAlertId(),
			a.GetRaiseTime().AsTime().UTC().Format(time.RFC3339), a.GetRuleId(), a.GetActor().GetSubject(),
			strings.ToLower(strings.TrimPrefix(a.GetActor().GetRole().String(), "ROLE_")),
			a.GetCount(), a.GetThreshold(), a.GetFirstSequence(), a.GetLastSequence(), state)
	}
	return tw.Flush()
}

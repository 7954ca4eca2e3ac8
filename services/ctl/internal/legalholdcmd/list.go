package legalholdcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/ctl/internal/exitcode"
	"github.com/securemsg/securemsg/services/ctl/internal/svcconn"
)

func listCommand(c *client) *cobra.Command {
	var pageSize int32
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the legal holds in force: patient holds, then thread holds, with case, who and when",
		Long: `list asks the messaging service (ListLegalHolds, page after page) for every legal hold in
force: first the holds over all of a patient's threads (by patient id), then the holds on single
threads (by thread id), each with its case reference and who placed it when ("-" for holds placed
before the service recorded it). Ids and case references only; no subject lines. The listing is
audited.

Output: a table (KIND, TARGET, CASE, PLACED BY, PLACED AT), or with --json one line of protojson
per hold (a LegalHold).

Exit status: 0 ok (also when no hold is in force), 1 failed, 2 usage, 3 refused (not an admin
with MFA).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pageSize < 1 || pageSize > 200 {
				return exitcode.Usage(errors.New("--page-size must be between 1 and 200"))
			}
			return c.Call(cmd.Context(), func(ctx context.Context, api messagingv1.MessagingServiceClient) error {
				var all []*messagingv1.LegalHold
				req := &messagingv1.ListLegalHoldsRequest{PageSize: pageSize}
				for {
					resp, err := api.ListLegalHolds(ctx, req)
					if err != nil {
						return err
					}
					all = append(all, resp.GetLegalHolds()...)
					if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
						return c.printHolds(cmd.OutOrStdout(), all)
					}
				}
			})
		},
	}
	cmd.Flags().Int32Var(&pageSize, "page-size", 200, "holds per call (1 to 200)")
	return cmd
}

func (c *client) printHolds(w io.Writer, holds []*messagingv1.LegalHold) error {
	if c.JSON {
		return svcconn.PrintJSON(w, holds)
	}
	if len(holds) == 0 {
		_, err := fmt.Fprintln(w, "no legal hold in force")
		return err
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "KIND\tTARGET\tCASE\tPLACED BY\tPLACED AT")
	for _, h := range holds {
		kind, target := "thread", h.GetThreadId()
		if h.GetPatientId() != "" {
			kind, target = "patient", h.GetPatientId()
		}
		by, at := h.GetCreatedBySubject(), "-"
		if by == "" {
			by = "-"
		}
		if h.GetCreateTime() != nil {
			at = h.GetCreateTime().AsTime().UTC().Format(time.RFC3339)
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", kind, target, h.GetCaseReference(), by, at)
	}
	return tw.Flush()
}

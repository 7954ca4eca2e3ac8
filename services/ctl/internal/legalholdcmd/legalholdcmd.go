// Package legalholdcmd implements `securemsgctl legal-hold`: an administrator places and lifts
// legal holds on a thread, or on every thread about a patient, through the messaging service's
// SetLegalHold rpc (authorised by policy, audited), and lists the holds in force through
// ListLegalHolds (ids, case references, who and when: never a subject line). Retention purges
// skip held threads and count them as kept.
package legalholdcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/ctl/internal/exitcode"
	"github.com/securemsg/securemsg/services/ctl/internal/svcconn"
)

// NewCommand returns the `legal-hold` command and its subcommands.
func NewCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "legal-hold",
		Short: "Place, lift and list legal holds on threads (admin)",
		Long: `legal-hold calls the messaging service as an administrator (--token-file: an admin's token
with the admin scope and MFA; set and clear also need a recent login). A held thread is kept by
every retention purge (counted as "held" in securemsgctl retention purge) until the hold is
lifted. A hold on a patient covers every thread about them, present and future. list shows the
holds in force.

Exit status: 0 ok, 1 failed, 2 usage (also a thread id that is not a UUID), 3 refused (not an
admin with MFA), 4 no such thread.`,
	}
	var c client
	c.Register(cmd)
	cmd.AddCommand(holdCommand(&c, "set", true), holdCommand(&c, "clear", false), listCommand(&c))
	return cmd
}

type client struct{ svcconn.Admin }

func holdCommand(c *client, verb string, on bool) *cobra.Command {
	var patient, caseRef string
	cmd := &cobra.Command{
		Use:   verb + " (THREAD_ID | --patient PATIENT_ID)",
		Short: "Lift the legal hold on a thread, or on every thread about a patient",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &messagingv1.SetLegalHoldRequest{On: on, CaseReference: caseRef}
			switch {
			case len(args) == 1 && patient == "":
				req.Target = &messagingv1.SetLegalHoldRequest_ThreadId{ThreadId: args[0]}
			case len(args) == 0 && patient != "":
				req.Target = &messagingv1.SetLegalHoldRequest_PatientId{PatientId: patient}
			default:
				return exitcode.Usage(errors.New("give either a THREAD_ID or --patient, not both"))
			}
			if on && caseRef == "" {
				return exitcode.Usage(errors.New("--case is required: the legal case or matter the hold serves"))
			}
			return c.Call(cmd.Context(), func(ctx context.Context, api messagingv1.MessagingServiceClient) error {
				resp, err := api.SetLegalHold(ctx, req)
				if err != nil {
					return err
				}
				return c.print(cmd.OutOrStdout(), req, resp)
			})
		},
	}
	cmd.Flags().StringVar(&patient, "patient", "", "the patient whose threads, present and future, the hold covers (instead of THREAD_ID)")
	if on {
		cmd.Short = "Place a legal hold on a thread, or on every thread about a patient"
		cmd.Use += " --case CASE_REF"
		cmd.Flags().StringVar(&caseRef, "case", "", `the legal case or matter the hold serves, e.g. "LIT-2026-0042" (no names or other PHI: it is logged and audited)`)
	}
	return cmd
}

func (c *client) print(w io.Writer, req *messagingv1.SetLegalHoldRequest, resp *messagingv1.SetLegalHoldResponse) error {
	if c.JSON {
		return svcconn.PrintJSON(w, []*messagingv1.SetLegalHoldResponse{resp})
	}
	target := "thread " + req.GetThreadId()
	if req.GetPatientId() != "" {
		target = "the threads of patient " + req.GetPatientId()
	}
	state := "lifted from " + target
	if resp.GetOn() {
		state = fmt.Sprintf("in force on %s (case %s)", target, resp.GetCaseReference())
	}
	_, err := fmt.Fprintf(w, "legal hold %s: %d %s changed, at %s\n", state, resp.GetThreadsAffected(),
		plural(resp.GetThreadsAffected(), "thread", "threads"), resp.GetUpdateTime().AsTime().Format(time.RFC3339))
	return err
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

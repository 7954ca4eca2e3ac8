// Package retentioncmd implements `securemsgctl retention show` and `retention purge`: an
// administrator reads the retention policy the messaging service applies (GetRetentionPolicy:
// each category's period from SECUREMSG_MESSAGING_RETENTION and its cutoff now, the purge job's
// interval, the legal hold counts), and counts (dry run) or purges the threads past their
// category's retention period through the RunRetentionPurge rpc (authorised by policy, audited
// per thread, legal holds skipped). A purge crypto-shreds each thread's key and deletes its rows
// and attachments: it cannot be undone, so it asks for confirmation (or --yes) after showing
// what it will purge.
package retentioncmd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/ctl/internal/exitcode"
	"github.com/securemsg/securemsg/services/ctl/internal/svcconn"
)

// NewCommand returns the `retention` command and its subcommands.
func NewCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "retention",
		Short: "Show the retention policy; count or purge threads past their retention period (admin)",
		Long: `retention calls the messaging service as an administrator (--token-file: an admin's token
with the admin scope and MFA; a purge also needs a recent login).

The retention period of each thread category is the messaging service's configuration
(SECUREMSG_MESSAGING_RETENTION, see docs/operations.md); "show" prints what the service
applies. The service also purges on its own every SECUREMSG_MESSAGING_PURGE_INTERVAL.`,
	}
	var c client
	// A purge runs call after call, and waits for the operator's "yes": a minute is too short.
	c.RegisterTimeout(cmd, time.Hour)
	cmd.AddCommand(showCommand(&c), purgeCommand(&c))
	return cmd
}

type client struct{ svcconn.Admin }

// purge holds purge's flags and where it writes.
type purge struct {
	c          *client
	dryRun     bool
	yes        bool
	limit      int32
	categories []string
	asOf       string
	in         io.Reader
	out, errW  io.Writer
}

func purgeCommand(c *client) *cobra.Command {
	p := &purge{c: c}
	cmd := &cobra.Command{
		Use:   "purge [--dry-run] [--yes] [--category CATEGORY …] [--limit N] [--as-of TIME]",
		Short: "Purge (or with --dry-run count) the threads past retention; held threads are kept",
		Long: `purge asks the messaging service for the threads past their category's retention period that
no legal hold covers and purges them for good: each thread's key is crypto-shredded and its
messages and attachments are deleted. --dry-run only counts, and changes nothing.

Without --dry-run, purge first counts (a dry run) and shows what it will purge, then asks you
to type "yes"; --yes skips the question. Without --yes and without an answer on stdin (a
script, cron), it refuses with exit status 2 and purges nothing. Everything is purged as of
the instant of that count, so the question and the purge agree.

The service purges at most --limit threads per call; purge calls again as long as a call
reaches the limit, and shows its progress per call: a bar on a terminal, one line per call on
stderr otherwise. The service reports nothing during a call, so while one runs the bar shows
only the elapsed time. --timeout (default an hour) bounds the whole purge, the question
included.

Output: a table per category (ELIGIBLE: past retention; PURGED; MESSAGES and ATTACHMENTS:
purged, or on a dry run that would be; HELD: past retention but kept by a legal hold), or with
--json one line of protojson (a RunRetentionPurgeResponse; on a purge, the sum of its calls).

When nothing is past retention, purge asks nothing and prints its count (with --json, the
dry run's response).

Exit status: 0 ok (also when nothing was past retention), 1 failed (e.g. ABORTED: another
purge is running; UNAVAILABLE: the attachment service is down; confirmation declined),
2 usage (bad flag; no confirmation), 3 refused (not an admin with MFA).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p.in, p.out, p.errW = cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()
			req, err := p.request()
			if err != nil {
				return exitcode.Usage(err)
			}
			return c.Call(cmd.Context(), func(ctx context.Context, api messagingv1.MessagingServiceClient) error {
				return p.run(ctx, api, req)
			})
		},
	}
	cmd.Flags().BoolVar(&p.dryRun, "dry-run", false, "only count what would be purged; change nothing")
	cmd.Flags().BoolVarP(&p.yes, "yes", "y", false, "purge without asking for confirmation")
	cmd.Flags().Int32Var(&p.limit, "limit", 0, "threads per call (0: the service's default, 1,000); a dry run counts at most this many")
	cmd.Flags().StringSliceVar(&p.categories, "category", nil, "only this category (general, clinical-question, prescription, test-results, appointment, billing, administrative); repeatable")
	cmd.Flags().StringVar(&p.asOf, "as-of", "", "purge what was past retention at this RFC 3339 time (default: now; never in the future)")
	return cmd
}

// request builds the dry run's request from the flags.
func (p *purge) request() (*messagingv1.RunRetentionPurgeRequest, error) {
	if p.limit < 0 {
		return nil, errors.New("--limit must not be negative")
	}
	req := &messagingv1.RunRetentionPurgeRequest{DryRun: true, Limit: p.limit}
	for _, name := range p.categories {
		cat, err := ParseCategory(name)
		if err != nil {
			return nil, err
		}
		req.Categories = append(req.Categories, cat)
	}
	if p.asOf != "" {
		t, err := time.Parse(time.RFC3339, p.asOf)
		if err != nil {
			return nil, fmt.Errorf("--as-of %q: want an RFC 3339 time such as 2026-01-31T00:00:00Z", p.asOf)
		}
		req.AsOf = timestamppb.New(t)
	}
	return req, nil
}

func (p *purge) run(ctx context.Context, api messagingv1.MessagingServiceClient, req *messagingv1.RunRetentionPurgeRequest) error {
	preview, err := api.RunRetentionPurge(ctx, req)
	if err != nil {
		return err
	}
	if p.dryRun {
		return p.print(preview, 1)
	}
	if preview.GetTotal().GetThreadsEligible() == 0 {
		return p.print(preview, 1)
	}
	if !p.yes {
		if err := p.confirm(preview); err != nil {
			return err
		}
	}
	req = proto.CloneOf(req)
	req.DryRun = false
	if req.AsOf == nil {
		req.AsOf = preview.GetStartTime() // the service's clock: what the count above counted
	}
	prog := newProgress(p.errW, preview, !p.mayHaveMore(preview))
	var calls []*messagingv1.RunRetentionPurgeResponse
	for {
		resp, err := prog.call(func() (*messagingv1.RunRetentionPurgeResponse, error) { return api.RunRetentionPurge(ctx, req) })
		if err != nil {
			prog.abort()
			if len(calls) > 0 {
				sum := Sum(calls)
				_, _ = fmt.Fprintf(p.errW, "purge failed after %d %s: %d threads purged before the failure; run purge again to continue\n",
					len(calls), plural(int64(len(calls)), "call", "calls"), sum.GetTotal().GetThreadsPurged())
			}
			return err
		}
		calls = append(calls, resp)
		more := p.mayHaveMore(resp)
		prog.done(len(calls), resp, more)
		if !more {
			break
		}
		if resp.GetTotal().GetThreadsPurged() == 0 {
			prog.abort()
			return fmt.Errorf("purge call %d purged nothing of the %d threads it found past retention; stopping", len(calls), resp.GetTotal().GetThreadsEligible())
		}
	}
	prog.stop()
	return p.print(Sum(calls), len(calls))
}

// confirm shows what the purge will do and reads the operator's "yes".
func (p *purge) confirm(preview *messagingv1.RunRetentionPurgeResponse) error {
	t := preview.GetTotal()
	count := fmt.Sprintf("%d %s", t.GetThreadsEligible(), plural(t.GetThreadsEligible(), "thread", "threads"))
	if p.mayHaveMore(preview) {
		count = "at least " + count + " (the count stops at --limit)"
	}
	_, _ = fmt.Fprintf(p.errW, "About to purge for good %s past retention as of %s (%d messages, %d attachments; keys crypto-shredded); %d held %s kept.\nType yes to purge: ",
		count, asOfText(preview), t.GetMessagesPurged(), t.GetAttachmentsPurged(), t.GetThreadsSkippedLegalHold(), plural(t.GetThreadsSkippedLegalHold(), "thread", "threads"))
	answer, err := bufio.NewReader(p.in).ReadString('\n')
	answer = strings.TrimSpace(answer)
	if answer == "" && err != nil {
		_, _ = fmt.Fprintln(p.errW)
		return exitcode.Usage(errors.New("no confirmation on stdin: nothing purged; answer on a terminal, or pass --yes"))
	}
	if !strings.EqualFold(answer, "yes") {
		return errors.New("purge not confirmed: nothing purged")
	}
	return nil
}

// mayHaveMore tells whether threads past retention may be left after a call: the service says
// so (truncated) whenever its limit stopped it short, in whatever category.
func (p *purge) mayHaveMore(r *messagingv1.RunRetentionPurgeResponse) bool {
	return r.GetTruncated()
}

// print writes the result as a table with a summary line, or as protojson.
func (p *purge) print(r *messagingv1.RunRetentionPurgeResponse, calls int) error {
	if p.c.JSON {
		return svcconn.PrintJSON(p.out, []*messagingv1.RunRetentionPurgeResponse{r})
	}
	tw := tabwriter.NewWriter(p.out, 2, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "CATEGORY\tELIGIBLE\tPURGED\tMESSAGES\tATTACHMENTS\tHELD")
	row := func(name string, c *messagingv1.RetentionCounts) {
		_, _ = fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\n", name, c.GetThreadsEligible(), c.GetThreadsPurged(), c.GetMessagesPurged(),
			c.GetAttachmentsPurged(), c.GetThreadsSkippedLegalHold())
	}
	for _, c := range r.GetByCategory() {
		row(CategoryName(c.GetCategory()), c)
	}
	row("total", r.GetTotal())
	if err := tw.Flush(); err != nil {
		return err
	}
	t := r.GetTotal()
	held := fmt.Sprintf("%d held %s kept", t.GetThreadsSkippedLegalHold(), plural(t.GetThreadsSkippedLegalHold(), "thread", "threads"))
	var err error
	switch {
	case r.GetDryRun() && !p.dryRun: // a purge that found nothing to purge
		_, err = fmt.Fprintf(p.out, "nothing past retention as of %s: nothing purged, %s\n", asOfText(r), held)
	case r.GetDryRun():
		more := ""
		if p.mayHaveMore(r) {
			more = " (perhaps more: the count stops at --limit)"
		}
		_, err = fmt.Fprintf(p.out, "dry run as of %s: nothing changed; %d %s would be purged%s, %s\n", asOfText(r),
			t.GetThreadsEligible(), plural(t.GetThreadsEligible(), "thread", "threads"), more, held)
	default:
		took := r.GetFinishTime().AsTime().Sub(r.GetStartTime().AsTime()).Round(time.Millisecond)
		_, err = fmt.Fprintf(p.out, "purged %d %s past retention in %d %s (%s); %s\n", t.GetThreadsPurged(),
			plural(t.GetThreadsPurged(), "thread", "threads"), calls, plural(int64(calls), "call", "calls"), took, held)
	}
	return err
}

func asOfText(r *messagingv1.RunRetentionPurgeResponse) string {
	return r.GetStartTime().AsTime().UTC().Format(time.RFC3339)
}

// Sum adds up the responses of the calls of one purge: eligible, purged, message and attachment
// counts are summed; held counts are the last call's (every call counts the same held threads);
// truncated is the last call's; the times span the calls.
func Sum(calls []*messagingv1.RunRetentionPurgeResponse) *messagingv1.RunRetentionPurgeResponse {
	if len(calls) == 0 {
		return &messagingv1.RunRetentionPurgeResponse{Total: &messagingv1.RetentionCounts{}}
	}
	last := calls[len(calls)-1]
	out := &messagingv1.RunRetentionPurgeResponse{DryRun: last.GetDryRun(), Total: &messagingv1.RetentionCounts{}, Truncated: last.GetTruncated(),
		StartTime: calls[0].GetStartTime(), FinishTime: last.GetFinishTime()}
	byCat := map[commonv1.ThreadCategory]*messagingv1.RetentionCounts{}
	for _, r := range calls {
		for _, c := range r.GetByCategory() {
			s, ok := byCat[c.GetCategory()]
			if !ok {
				s = &messagingv1.RetentionCounts{Category: c.GetCategory()}
				byCat[c.GetCategory()] = s
				out.ByCategory = append(out.ByCategory, s)
			}
			add(s, c)
		}
		add(out.Total, r.GetTotal())
	}
	for _, s := range out.ByCategory {
		s.ThreadsSkippedLegalHold = 0
		for _, c := range last.GetByCategory() {
			if c.GetCategory() == s.GetCategory() {
				s.ThreadsSkippedLegalHold = c.GetThreadsSkippedLegalHold()
			}
		}
	}
	out.Total.ThreadsSkippedLegalHold = last.GetTotal().GetThreadsSkippedLegalHold()
	return out
}

func add(s, c *messagingv1.RetentionCounts) {
	s.ThreadsEligible += c.GetThreadsEligible()
	s.ThreadsPurged += c.GetThreadsPurged()
	s.MessagesPurged += c.GetMessagesPurged()
	s.AttachmentsPurged += c.GetAttachmentsPurged()
}

// CategoryName is a category as the command line writes it ("clinical-question").
func CategoryName(c commonv1.ThreadCategory) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(c.String(), "THREAD_CATEGORY_")), "_", "-")
}

// ParseCategory reads a category written as CategoryName writes it.
func ParseCategory(s string) (commonv1.ThreadCategory, error) {
	v, ok := commonv1.ThreadCategory_value["THREAD_CATEGORY_"+strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), "-", "_"))]
	if !ok || v == 0 {
		return 0, fmt.Errorf("--category %q: want general, clinical-question, prescription, test-results, appointment, billing or administrative", s)
	}
	return commonv1.ThreadCategory(v), nil
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// progress shows a purge's calls: on a terminal a bar over the threads the count found (a
// spinner when it stopped at --limit) whose elapsed time moves while a call runs; otherwise one
// line per call.
type progress struct {
	w   io.Writer
	bar *progressbar.ProgressBar // nil when w is not a terminal
}

func newProgress(w io.Writer, preview *messagingv1.RunRetentionPurgeResponse, complete bool) *progress {
	p := &progress{w: w}
	if !isTerminal(w) {
		return p
	}
	total := preview.GetTotal().GetThreadsEligible()
	if !complete {
		total = -1 // unknown: a spinner with the count so far
	}
	p.bar = progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("purging threads"),
		progressbar.OptionShowCount(),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionThrottle(0),
		progressbar.OptionClearOnFinish())
	_ = p.bar.RenderBlank()
	return p
}

// call runs fn, redrawing the bar (its elapsed time and spinner) until fn returns.
func (p *progress) call(fn func() (*messagingv1.RunRetentionPurgeResponse, error)) (*messagingv1.RunRetentionPurgeResponse, error) {
	if p.bar == nil {
		return fn()
	}
	stop := make(chan struct{})
	ticked := make(chan struct{})
	go func() {
		defer close(ticked)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				_ = p.bar.Add64(0)
			}
		}
	}()
	resp, err := fn()
	close(stop)
	<-ticked
	return resp, err
}

// done reports call n's result; another call follows when more is true.
func (p *progress) done(n int, r *messagingv1.RunRetentionPurgeResponse, more bool) {
	t := r.GetTotal()
	if p.bar != nil {
		_ = p.bar.Add64(t.GetThreadsPurged())
		return
	}
	next := "done"
	if more {
		next = "the limit was reached, calling again"
	}
	_, _ = fmt.Fprintf(p.w, "purge call %d: %d %s purged (%d messages, %d attachments); %s\n", n, t.GetThreadsPurged(),
		plural(t.GetThreadsPurged(), "thread", "threads"), t.GetMessagesPurged(), t.GetAttachmentsPurged(), next)
}

// stop ends the bar after the last call.
func (p *progress) stop() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}

// abort ends the bar where it stands, after a failed call.
func (p *progress) abort() {
	if p.bar != nil {
		_ = p.bar.Exit()
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Package auditcmd implements `securemsgctl audit`: verify an audit export offline against a
// signed checkpoint and the log's public key, export the log from the audit service, and fetch
// its latest checkpoint. Verification needs no network and no trust in the service: it
// recomputes every leaf hash, the hash chain and the Merkle root.
package auditcmd

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
	"github.com/securemsg/securemsg/services/ctl/internal/exitcode"
	"github.com/securemsg/securemsg/services/ctl/internal/svcconn"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog/tlog"
)

// NewCommand returns the `audit` command with its subcommands verify, export and checkpoint.
func NewCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify, export and checkpoint the tamper-evident audit log; list and acknowledge its anomaly alerts",
	}
	cmd.AddCommand(verifyCommand(), exportCommand(), checkpointCommand(), alertsCommand(), ackCommand())
	return cmd
}

// ErrVerificationFailed is returned (exit status 1) when an export does not verify.
var ErrVerificationFailed = errors.New("audit export failed verification")

func verifyCommand() *cobra.Command {
	var exportFile string
	var cpFiles, pubFiles []string
	cmd := &cobra.Command{
		Use:   "verify --export FILE --checkpoint FILE --public-key FILE [--public-key FILE ...]",
		Short: "Check a JSONL export offline against signed checkpoints",
		Long: `verify recomputes every record's leaf hash, the hash chain and the Merkle root from a JSONL
export, checks the checkpoints' Ed25519 signatures with the public key, and compares the roots.
It reports the first bad sequence: edited, removed, inserted and reordered records are all
detected. Several --checkpoint files narrow down where a consistently rehashed edit lies.
After a signing-key rotation, give every public key the checkpoints were signed with (repeat
--public-key, or name a folder of *.pem keys); each checkpoint is checked with the key its key
id names, and a checkpoint of any other key fails.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pubs, err := tlog.LoadPublicKeys(pubFiles...)
			if err != nil {
				return err
			}
			if len(pubs) == 0 {
				return errors.New("no public key found in --public-key")
			}
			var cps []*auditv1.Checkpoint
			for _, f := range cpFiles {
				b, err := os.ReadFile(f) //nolint:gosec // G304: the operator names the file on their own command line
				if err != nil {
					return fmt.Errorf("read checkpoint: %w", err)
				}
				c, err := tlog.ReadCheckpoints(b)
				if err != nil {
					return err
				}
				cps = append(cps, c...)
			}
			in, err := os.Open(exportFile) //nolint:gosec // G304: the operator names the file on their own command line
			if err != nil {
				return fmt.Errorf("open export: %w", err)
			}
			defer func() { _ = in.Close() }()
			start := time.Now()
			res, err := tlog.VerifyExportKeys(bufio.NewReaderSize(in, 1<<20), tlog.NewKeyRing(pubs...), cps...)
			if err != nil {
				return err
			}
			return report(cmd.OutOrStdout(), res, time.Since(start))
		},
	}
	cmd.Flags().StringVar(&exportFile, "export", "", "JSONL export file (from `securemsgctl audit export`)")
	cmd.Flags().StringArrayVar(&cpFiles, "checkpoint", nil, "checkpoint file (protojson); repeatable")
	cmd.Flags().StringArrayVar(&pubFiles, "public-key", nil, "a trusted Ed25519 public key of the log (PEM file, or a folder of *.pem); repeatable")
	for _, f := range []string{"export", "checkpoint", "public-key"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

func report(w io.Writer, res *auditv1.VerifyRangeResponse, took time.Duration) error {
	if res.Ok {
		cp := "no checkpoint reached (the export does not start at sequence 1)"
		if res.Checkpoint != nil {
			cp = fmt.Sprintf("checkpoint %d (key %s) matches", res.Checkpoint.TreeSize, res.Checkpoint.KeyId)
		}
		_, _ = fmt.Fprintf(w, "OK: %d records verified up to sequence %d in %v; %s\n", res.VerifiedCount, res.ToSequence, took.Round(time.Millisecond), cp)
		return nil
	}
	_, _ = fmt.Fprintf(w, "FAILED: %s at sequence %d after %d good records: %s\n",
		strings.TrimPrefix(res.Failure.String(), "VERIFY_FAILURE_"), res.FirstFailingSequence, res.VerifiedCount, res.Detail)
	return ErrVerificationFailed
}

// conn holds the flags of the commands that call the audit service.
type conn struct{ svcconn.Flags }

func (c *conn) flags(cmd *cobra.Command) {
	c.Register(cmd, "audit", "127.0.0.1:7004", "an auditor", 10*time.Minute)
}

// dial connects to the audit service (svcconn.Flags.Dial).
func (c *conn) dial(ctx context.Context) (auditv1.AuditServiceClient, context.Context, func(), error) {
	cc, ctx, done, err := c.Dial(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	return auditv1.NewAuditServiceClient(cc), ctx, done, nil
}

func exportCommand() *cobra.Command {
	var c conn
	var out, cpOut, format string
	var from, to uint64
	cmd := &cobra.Command{
		Use:   "export --out FILE [--checkpoint-out FILE]",
		Short: "Export the audit log (JSONL for verification, or FHIR AuditEvent NDJSON)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := auditv1.ExportFormat_EXPORT_FORMAT_JSONL
			switch format {
			case "jsonl":
			case "fhir":
				f = auditv1.ExportFormat_EXPORT_FORMAT_FHIR_AUDIT_EVENT
			default:
				return exitcode.Usage(fmt.Errorf("--format must be jsonl or fhir"))
			}
			client, ctx, done, err := c.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			stream, err := client.ExportAuditEvents(ctx, &auditv1.ExportAuditEventsRequest{Format: f,
				Filter: &auditv1.AuditEventFilter{FromSequence: from, ToSequence: to}})
			if err != nil {
				return err
			}
			file, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600) //nolint:gosec // G304: the operator names the file on their own command line
			if err != nil {
				return err
			}
			defer func() { _ = file.Close() }()
			h := sha256.New()
			var sum *auditv1.ExportSummary
			for {
				resp, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					return err
				}
				if len(resp.Chunk) > 0 {
					h.Write(resp.Chunk)
					if _, err := file.Write(resp.Chunk); err != nil {
						return err
					}
				}
				if resp.Summary != nil {
					sum = resp.Summary
				}
			}
			if sum == nil {
				return errors.New("export ended without a summary; the file is incomplete")
			}
			if got := h.Sum(nil); string(got) != string(sum.Sha256) {
				return errors.New("export damaged in transfer: SHA-256 does not match the summary")
			}
			if cpOut != "" && sum.Checkpoint != nil {
				if err := writeCheckpoint(cpOut, sum.Checkpoint); err != nil {
					return err
				}
			}
			_, _ = fmt.Fprintf(cmd.OutOrStdout(), "exported %d records (sequences %d..%d) to %s\n", sum.RecordCount, sum.FirstSequence, sum.LastSequence, out)
			return file.Close()
		},
	}
	c.flags(cmd)
	cmd.Flags().StringVar(&out, "out", "", "output file")
	cmd.Flags().StringVar(&cpOut, "checkpoint-out", "", "also write the latest checkpoint here")
	cmd.Flags().StringVar(&format, "format", "jsonl", "jsonl (verifiable) or fhir (FHIR R4 AuditEvent NDJSON)")
	cmd.Flags().Uint64Var(&from, "from", 0, "first sequence (0: the start)")
	cmd.Flags().Uint64Var(&to, "to", 0, "last sequence (0: the end)")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

func checkpointCommand() *cobra.Command {
	var c conn
	var out string
	cmd := &cobra.Command{
		Use:   "checkpoint [--out FILE]",
		Short: "Fetch the latest signed checkpoint (keep copies: they pin the log's history)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, ctx, done, err := c.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := client.GetLatestCheckpoint(ctx, &auditv1.GetLatestCheckpointRequest{})
			if err != nil {
				return err
			}
			if out != "" {
				return writeCheckpoint(out, resp.Checkpoint)
			}
			b, err := checkpointJSON(resp.Checkpoint)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	c.flags(cmd)
	cmd.Flags().StringVar(&out, "out", "", "write the checkpoint here (default: stdout)")
	return cmd
}

// checkpointJSON is a checkpoint as the commands print and write it: protojson and a newline, the
// form verify --checkpoint reads.
func checkpointJSON(cp *auditv1.Checkpoint) ([]byte, error) {
	b, err := protojson.Marshal(cp)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// writeCheckpoint writes cp to path. A checkpoint is a signed tree head, public by design: it is
// copied and compared by anyone who checks the log, so it is written world-readable.
func writeCheckpoint(path string, cp *auditv1.Checkpoint) error {
	b, err := checkpointJSON(cp)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644) //nolint:gosec // G306: public by design, see above
}

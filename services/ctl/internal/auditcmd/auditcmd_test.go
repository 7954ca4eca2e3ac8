package auditcmd_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/ctl/internal/auditcmd"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog/tlog"
)

// writeFixture writes an export of n records, a checkpoint over all of them and the public key.
func writeFixture(t *testing.T, n int, tamper func(lines []string) []string) (exportPath, cpPath, pubPath string) {
	t.Helper()
	dir := t.TempDir()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	tree := tlog.NewTree()
	prev := tlog.ZeroHash()
	var lines []string
	for i := range n {
		rec := &eventsv1.AuditRecord{Meta: &eventsv1.EventMeta{EventId: fmt.Sprintf("e%d", i), OccurredAt: timestamppb.Now(), Producer: commonv1.Component_COMPONENT_MESSAGING},
			Actor: &eventsv1.AuditActor{Subject: "clin-1"}, Action: eventsv1.Action_ACTION_READ, RecordType: eventsv1.RecordType_RECORD_TYPE_THREAD,
			RecordId: fmt.Sprintf("t%d", i), PatientId: "patient-1", Outcome: eventsv1.Outcome_OUTCOME_SUCCESS}
		b, _ := proto.Marshal(rec)
		leaf := tlog.LeafHash(b)
		chain := tlog.ChainHash(prev, leaf)
		tree.Append(leaf, nil)
		line, err := tlog.AppendEntryJSON(nil, &auditv1.AuditEntry{Sequence: uint64(i + 1), Record: rec, RecordBytes: b, LeafHash: leaf, PrevChainHash: prev, ChainHash: chain})
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, strings.TrimSuffix(string(line), "\n"))
		prev = chain
	}
	cp := tlog.NewSigner(priv).Sign(uint64(n), tree.Root(), time.Now())
	if tamper != nil {
		lines = tamper(lines)
	}
	exportPath, cpPath, pubPath = filepath.Join(dir, "export.jsonl"), filepath.Join(dir, "cp.json"), filepath.Join(dir, "pub.pem")
	cpJSON, _ := protojson.Marshal(cp)
	for path, data := range map[string][]byte{exportPath: []byte(strings.Join(lines, "\n") + "\n"), cpPath: cpJSON} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := tlog.WritePublicKey(pubPath, pub); err != nil {
		t.Fatal(err)
	}
	return exportPath, cpPath, pubPath
}

func TestVerifyCommand(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		tamper  func([]string) []string
		wantErr bool
		want    string
	}{
		{"clean", nil, false, "OK: 40 records verified"},
		{"line removed", func(l []string) []string { return append(l[:10:10], l[11:]...) }, true, "SEQUENCE_GAP at sequence 11"},
		{"lines swapped", func(l []string) []string { l[5], l[6] = l[6], l[5]; return l }, true, "at sequence 6"},
		{"record edited", func(l []string) []string { l[20] = strings.Replace(l[20], "patient-1", "patient-2", 1); return l }, true, "LEAF_HASH_MISMATCH at sequence 21"},
		{"tail cut", func(l []string) []string { return l[:39] }, true, "SEQUENCE_GAP at sequence 40"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			exp, cp, pub := writeFixture(t, 40, tt.tamper)
			cmd := auditcmd.NewCommand()
			var out bytes.Buffer
			cmd.SetOut(&out)
			cmd.SetArgs([]string{"verify", "--export", exp, "--checkpoint", cp, "--public-key", pub})
			err := cmd.Execute()
			if (err != nil) != tt.wantErr || (err != nil && !errors.Is(err, auditcmd.ErrVerificationFailed)) {
				t.Fatalf("verify error = %v, want error %v", err, tt.wantErr)
			}
			if !strings.Contains(out.String(), tt.want) {
				t.Errorf("verify output = %q, want it to contain %q", out.String(), tt.want)
			}
		})
	}
}

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

// exportLog builds an audit log as the audit service does (leaf hash, hash chain, Merkle tree)
// and keeps its JSONL export lines.
type exportLog struct {
	tree  *tlog.Tree
	prev  []byte
	lines []string
}

func newExportLog() *exportLog { return &exportLog{tree: tlog.NewTree(), prev: tlog.ZeroHash()} }

// append adds rec as the next entry and returns the log's size.
func (l *exportLog) append(t *testing.T, rec *eventsv1.AuditRecord) uint64 {
	t.Helper()
	b, _ := proto.Marshal(rec)
	leaf := tlog.LeafHash(b)
	chain := tlog.ChainHash(l.prev, leaf)
	l.tree.Append(leaf, nil)
	seq := uint64(len(l.lines) + 1)
	line, err := tlog.AppendEntryJSON(nil, &auditv1.AuditEntry{Sequence: seq, Record: rec, RecordBytes: b, LeafHash: leaf, PrevChainHash: l.prev, ChainHash: chain})
	if err != nil {
		t.Fatal(err)
	}
	l.lines = append(l.lines, strings.TrimSuffix(string(line), "\n"))
	l.prev = chain
	return seq
}

// export is the JSONL export of lines, one entry a line.
func export(lines []string) []byte { return []byte(strings.Join(lines, "\n") + "\n") }

// writeFiles writes each file's data, failing the test on the first error.
func writeFiles(t *testing.T, files map[string][]byte) {
	t.Helper()
	for path, data := range files {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// runAudit runs `securemsgctl audit args...` and returns what it printed.
func runAudit(args ...string) (string, error) {
	cmd := auditcmd.NewCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// writeFixture writes an export of n records, a checkpoint over all of them and the public key.
func writeFixture(t *testing.T, n int, tamper func(lines []string) []string) (exportPath, cpPath, pubPath string) {
	t.Helper()
	dir := t.TempDir()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	l := newExportLog()
	for i := range n {
		l.append(t, &eventsv1.AuditRecord{Meta: &eventsv1.EventMeta{EventId: fmt.Sprintf("e%d", i), OccurredAt: timestamppb.Now(), Producer: commonv1.Component_COMPONENT_MESSAGING},
			Actor: &eventsv1.AuditActor{Subject: "clin-1"}, Action: eventsv1.Action_ACTION_READ, RecordType: eventsv1.RecordType_RECORD_TYPE_THREAD,
			RecordId: fmt.Sprintf("t%d", i), PatientId: "patient-1", Outcome: eventsv1.Outcome_OUTCOME_SUCCESS})
	}
	cp := tlog.NewSigner(priv).Sign(uint64(n), l.tree.Root(), time.Now())
	lines := l.lines
	if tamper != nil {
		lines = tamper(lines)
	}
	exportPath, cpPath, pubPath = filepath.Join(dir, "export.jsonl"), filepath.Join(dir, "cp.json"), filepath.Join(dir, "pub.pem")
	cpJSON, _ := protojson.Marshal(cp)
	writeFiles(t, map[string][]byte{exportPath: export(lines), cpPath: cpJSON})
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
			out, err := runAudit("verify", "--export", exp, "--checkpoint", cp, "--public-key", pub)
			if (err != nil) != tt.wantErr || (err != nil && !errors.Is(err, auditcmd.ErrVerificationFailed)) {
				t.Fatalf("verify error = %v, want error %v", err, tt.wantErr)
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("verify output = %q, want it to contain %q", out, tt.want)
			}
		})
	}
}

// TestVerifyCommandRotatedKey: checkpoints signed before and after a signing-key rotation
// verify when both public keys are given (as two files or as a folder), and fail with only the
// new key.
func TestVerifyCommandRotatedKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pubA, privA, _ := ed25519.GenerateKey(rand.Reader)
	pubB, privB, _ := ed25519.GenerateKey(rand.Reader)
	l := newExportLog()
	var cps []*auditv1.Checkpoint
	for i := range 40 {
		size := l.append(t, &eventsv1.AuditRecord{Meta: &eventsv1.EventMeta{EventId: fmt.Sprintf("e%d", i), OccurredAt: timestamppb.Now()},
			Actor: &eventsv1.AuditActor{Subject: "clin-1"}, Action: eventsv1.Action_ACTION_READ, RecordId: fmt.Sprintf("t%d", i)})
		switch size {
		case 10, 20: // before the rotation
			cps = append(cps, tlog.NewSigner(privA).Sign(size, l.tree.Root(), time.Now()))
		case 30, 40: // after it
			cps = append(cps, tlog.NewSigner(privB).Sign(size, l.tree.Root(), time.Now()))
		}
	}
	var cpLines []byte
	for _, cp := range cps {
		b, _ := protojson.Marshal(cp)
		cpLines = append(append(cpLines, b...), '\n')
	}
	keysDir := filepath.Join(dir, "keys")
	exportPath, cpPath := filepath.Join(dir, "export.jsonl"), filepath.Join(dir, "cps.jsonl")
	pathA, pathB := filepath.Join(dir, "a.pem"), filepath.Join(dir, "b.pem")
	writeFiles(t, map[string][]byte{exportPath: export(l.lines), cpPath: cpLines})
	for path, pub := range map[string]ed25519.PublicKey{pathA: pubA, pathB: pubB} {
		if err := tlog.WritePublicKey(path, pub); err != nil {
			t.Fatal(err)
		}
		if err := tlog.RememberPublicKey(keysDir, pub); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		keys    []string
		wantErr bool
		want    string
	}{
		{"both keys", []string{pathA, pathB}, false, "OK: 40 records verified"},
		{"keys folder", []string{keysDir}, false, "OK: 40 records verified"},
		{"only the new key", []string{pathB}, true, "SIGNATURE_INVALID"},
		{"only the old key", []string{pathA}, true, "SIGNATURE_INVALID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			args := []string{"verify", "--export", exportPath, "--checkpoint", cpPath}
			for _, k := range tt.keys {
				args = append(args, "--public-key", k)
			}
			out, err := runAudit(args...)
			if (err != nil) != tt.wantErr {
				t.Fatalf("verify %v error = %v, want error %v (output %q)", tt.keys, err, tt.wantErr, out)
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("verify output = %q, want it to contain %q", out, tt.want)
			}
		})
	}
}

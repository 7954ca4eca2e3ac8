package tlog_test

import (
	"bytes"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog/tlog"
)

// FuzzVerifyExport feeds arbitrary export files (untrusted input to `securemsgctl audit verify`)
// to the offline verifier, checked against a genuine checkpoint over a genuine 5-entry log. It
// must never panic; a result is Ok or names a failure; and an export it accepts against the
// checkpoint must carry exactly the genuine records for the checkpointed sequences: whatever
// the fuzzer does to the bytes, it cannot forge a verified history.
func FuzzVerifyExport(f *testing.F) {
	const n = 5
	signer, pub := newSigner(f)
	clean := buildLog(f, n)
	cp := signer.Sign(n, rootAt(clean, n), time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC))
	good := export(f, clean)

	f.Add(good)
	f.Add(export(f, clean[:3]))                                       // truncated below the checkpoint
	f.Add(export(f, clean[2:]))                                       // starts later: chain-only check
	f.Add(bytes.ReplaceAll(good, []byte("\n"), []byte("\n\n  \r\n"))) // blank lines
	f.Add(bytes.Replace(good, []byte("user-1"), []byte("user-9"), 1)) // edited readable copy
	f.Add([]byte("{}\n"))
	f.Add([]byte("not json\n"))
	f.Add([]byte(`{"sequence":"1","recordBytes":"!!"}` + "\n"))
	f.Add([]byte{})

	want := make([][]byte, n)
	for i, e := range clean {
		want[i] = e.GetRecordBytes()
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := tlog.VerifyExport(bytes.NewReader(data), pub, cp)
		if err != nil {
			if res != nil {
				t.Fatalf("VerifyExport returned both a result and error %v", err)
			}
			return // unreadable input (a line over MaxExportLine)
		}
		if res == nil {
			t.Fatal("VerifyExport = nil, nil")
		}
		if !res.GetOk() {
			if res.GetFailure() == auditv1.VerifyFailure_VERIFY_FAILURE_UNSPECIFIED {
				t.Fatalf("VerifyExport not ok but names no failure: %v", res)
			}
			return
		}
		if res.GetFailure() != auditv1.VerifyFailure_VERIFY_FAILURE_UNSPECIFIED {
			t.Fatalf("VerifyExport ok with failure %v", res.GetFailure())
		}
		if res.GetCheckpoint() == nil {
			// Only an export that does not start at sequence 1 may pass without a checkpoint.
			if first := firstSequence(t, data); first == 1 {
				t.Fatalf("VerifyExport ok without checkpoint for an export starting at 1: %v", res)
			}
			return
		}
		if !proto.Equal(res.GetCheckpoint(), cp) || res.GetToSequence() < n || res.GetVerifiedCount() != res.GetToSequence() {
			t.Fatalf("VerifyExport = %v, want ok through the checkpoint of size %d", res, n)
		}
		got := recordBytes(t, data)
		for i := range n {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("VerifyExport accepted a forged record at sequence %d", i+1)
			}
		}
	})
}

// FuzzReadCheckpoints feeds arbitrary checkpoint files to their parser: no panic, and what it
// returns survives a protojson round trip.
func FuzzReadCheckpoints(f *testing.F) {
	signer, _ := newSigner(f)
	cp := signer.Sign(3, bytes.Repeat([]byte{1}, 32), time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC))
	line, err := protojson.Marshal(cp)
	if err != nil {
		f.Fatal(err)
	}
	pretty, _ := protojson.MarshalOptions{Multiline: true}.Marshal(cp)
	f.Add(line)
	f.Add(pretty)
	f.Add(append(append(append([]byte{}, line...), '\n'), line...))
	f.Add([]byte("\n\n"))
	f.Add([]byte("{\"treeSize\":\"x\"}"))
	f.Add([]byte("[]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cps, err := tlog.ReadCheckpoints(data)
		if err != nil {
			if cps != nil {
				t.Fatalf("ReadCheckpoints returned checkpoints and error %v", err)
			}
			return
		}
		for _, c := range cps {
			b, err := protojson.Marshal(c)
			if err != nil {
				t.Fatalf("Marshal(parsed checkpoint): %v", err)
			}
			back := &auditv1.Checkpoint{}
			if err := protojson.Unmarshal(b, back); err != nil || !proto.Equal(back, c) {
				t.Fatalf("checkpoint does not survive a round trip: %v", err)
			}
		}
	})
}

// recordBytes decodes the export lines as the verifier does and returns their record bytes.
func recordBytes(t *testing.T, data []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for _, line := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		e := &auditv1.AuditEntry{}
		if err := protojson.Unmarshal(line, e); err != nil {
			t.Fatalf("VerifyExport accepted an export whose line does not decode: %v", err)
		}
		out = append(out, e.GetRecordBytes())
	}
	return out
}

func firstSequence(t *testing.T, data []byte) uint64 {
	t.Helper()
	for _, line := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		ae := &auditv1.AuditEntry{}
		if protojson.Unmarshal(line, ae) == nil {
			return ae.GetSequence()
		}
		return 0
	}
	return 0
}

package tlog

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protojson"

	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
)

// MaxExportLine bounds one JSON line of an export (an entry is a few KiB at most).
const MaxExportLine = 1 << 20

var lineMarshal = protojson.MarshalOptions{UseProtoNames: false, EmitUnpopulated: false}

// AppendEntryJSON appends e as one line of a JSONL export (protojson, bytes in base64, then
// "\n") to dst.
func AppendEntryJSON(dst []byte, e *auditv1.AuditEntry) ([]byte, error) {
	b, err := lineMarshal.MarshalAppend(dst, e)
	if err != nil {
		return dst, fmt.Errorf("tlog: encode entry %d: %w", e.GetSequence(), err)
	}
	return append(b, '\n'), nil
}

// ReadCheckpoints parses checkpoints written by `securemsgctl audit checkpoint`: one protojson
// Checkpoint per line (a single pretty-printed object is accepted too).
func ReadCheckpoints(data []byte) ([]*auditv1.Checkpoint, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, errors.New("tlog: no checkpoint found")
	}
	one := &auditv1.Checkpoint{}
	if err := protojson.Unmarshal(data, one); err == nil {
		return []*auditv1.Checkpoint{one}, nil
	}
	var out []*auditv1.Checkpoint
	for i, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		cp := &auditv1.Checkpoint{}
		if err := protojson.Unmarshal(line, cp); err != nil {
			return nil, fmt.Errorf("tlog: checkpoint line %d: %w", i+1, err)
		}
		out = append(out, cp)
	}
	return out, nil
}

// VerifyExport checks a JSONL export offline against checkpoints signed by pub (see
// VerifyExportKeys, which accepts several keys).
func VerifyExport(r io.Reader, pub ed25519.PublicKey, cps ...*auditv1.Checkpoint) (*auditv1.VerifyRangeResponse, error) {
	return VerifyExportKeys(r, NewKeyRing(pub), cps...)
}

// VerifyExportKeys checks a JSONL export offline against checkpoints signed by keys of ring
// (each checkpoint names its key by key id; an unknown key id fails). Checkpoint
// signatures are checked first. An export that starts at sequence 1 gets the full check: every
// leaf, the chain, the Merkle root at every checkpoint size, and that it reaches the largest
// checkpoint (so a truncated tail is caught). An export that starts later can only be checked
// for its leaves and internal chain; the result then carries no checkpoint. A failed
// verification is a result (Ok false); the error is for unreadable input only.
func VerifyExportKeys(r io.Reader, ring *KeyRing, cps ...*auditv1.Checkpoint) (*auditv1.VerifyRangeResponse, error) {
	for _, cp := range cps {
		if err := ring.Verify(cp); err != nil {
			return &auditv1.VerifyRangeResponse{Failure: auditv1.VerifyFailure_VERIFY_FAILURE_CHECKPOINT_SIGNATURE_INVALID,
				Checkpoint: cp, Detail: err.Error()}, nil
		}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxExportLine)
	var v *Verifier
	var wantSize uint64
	un := protojson.UnmarshalOptions{DiscardUnknown: false}
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		e := &auditv1.AuditEntry{}
		if err := un.Unmarshal(line, e); err != nil {
			next := uint64(0)
			if v != nil {
				next = v.Next()
			}
			return &auditv1.VerifyRangeResponse{Failure: auditv1.VerifyFailure_VERIFY_FAILURE_RECORD_UNDECODABLE,
				FirstFailingSequence: next, Detail: fmt.Sprintf("line %d is not an audit entry", lineNo)}, nil
		}
		if v == nil {
			if e.GetSequence() == 1 {
				v = NewVerifier(1, ZeroHash(), NewTree(), cps...)
				for _, cp := range cps {
					wantSize = max(wantSize, cp.GetTreeSize())
				}
			} else {
				v = NewVerifier(e.GetSequence(), e.GetPrevChainHash(), nil)
			}
		}
		if !v.AddEntry(e) {
			break
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("tlog: read export: %w", err)
	}
	if v == nil {
		v = NewVerifier(1, ZeroHash(), NewTree(), cps...)
		for _, cp := range cps {
			wantSize = max(wantSize, cp.GetTreeSize())
		}
	}
	return v.Finish(wantSize), nil
}

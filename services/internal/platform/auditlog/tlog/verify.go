package tlog

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
)

// Verifier re-checks a contiguous run of log entries, in sequence order: contiguous sequences,
// records that decode, leaf hashes over the exact record bytes, the hash chain, and — when it
// knows the tree before the run — the Merkle root at every checkpoint size the run reaches. It
// stops at the first failure and remembers it.
//
// What each tampering looks like: an edited record fails its leaf hash (or, when the editor
// also recomputed the leaf hash, the chain; or, when the editor recomputed every hash after it,
// the signed checkpoint's root); a removed, inserted or reordered record breaks the sequence or
// the chain. A consistently rehashed log can only be caught by a signed checkpoint: the failure
// then names the first sequence after the last checkpoint that still matched, since the damage
// lies between the two.
type Verifier struct {
	next    uint64
	chain   []byte
	tree    *Tree
	cps     []*auditv1.Checkpoint
	count   uint64
	lastOK  uint64 // size of the last checkpoint whose root matched (or the run's start)
	matched *auditv1.Checkpoint
	fail    *auditv1.VerifyRangeResponse
}

// NewVerifier starts verifying at sequence first, after an entry whose chain hash was
// prevChain (ZeroHash() for first == 1). tree is the Merkle tree over sequences 1..first-1
// (NewTree() for first == 1) or nil when unknown, in which case roots are not checked.
// checkpoints must already have been checked with VerifyCheckpoint.
func NewVerifier(first uint64, prevChain []byte, tree *Tree, checkpoints ...*auditv1.Checkpoint) *Verifier {
	cps := slices.Clone(checkpoints)
	slices.SortFunc(cps, func(a, b *auditv1.Checkpoint) int {
		return cmpU64(a.GetTreeSize(), b.GetTreeSize())
	})
	v := &Verifier{next: first, chain: bytes.Clone(prevChain), tree: tree, cps: cps, lastOK: first - 1}
	if tree != nil && tree.Size() != first-1 {
		v.fail = &auditv1.VerifyRangeResponse{Failure: auditv1.VerifyFailure_VERIFY_FAILURE_SEQUENCE_GAP,
			FirstFailingSequence: first, Detail: fmt.Sprintf("tree has %d leaves before sequence %d", tree.Size(), first)}
		return v
	}
	if tree != nil {
		v.checkCheckpoints()
	}
	return v
}

// VerifyCheckpoints checks every checkpoint against pub and returns the first that fails.
func VerifyCheckpoints(pub ed25519.PublicKey, cps ...*auditv1.Checkpoint) error {
	for _, cp := range cps {
		if err := VerifyCheckpoint(cp, pub); err != nil {
			return err
		}
	}
	return nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Failed reports whether a check has failed.
func (v *Verifier) Failed() bool { return v.fail != nil }

// Next is the sequence the verifier expects next.
func (v *Verifier) Next() uint64 { return v.next }

// AddEntry checks one entry. When e.Record is set (an export carries the decoded record beside
// its bytes) it must equal the decoded bytes, or the readable copy was edited. It returns false
// once verification has failed.
func (v *Verifier) AddEntry(e *auditv1.AuditEntry) bool {
	return v.add(e.GetSequence(), e.GetRecordBytes(), e.GetLeafHash(), e.GetPrevChainHash(), e.GetChainHash(), e.GetRecord(), e.Record != nil)
}

// Add checks one entry given as its stored fields; the record bytes must decode as an
// AuditRecord, whose decoded form is returned (nil after a failure).
func (v *Verifier) Add(seq uint64, recordBytes, leaf, prevChain, chain []byte) (*eventsv1.AuditRecord, bool) {
	rec := &eventsv1.AuditRecord{}
	ok := v.addDecoded(seq, recordBytes, leaf, prevChain, chain, rec, nil, false)
	if !ok {
		return nil, false
	}
	return rec, true
}

func (v *Verifier) add(seq uint64, recordBytes, leaf, prevChain, chain []byte, shown *eventsv1.AuditRecord, compare bool) bool {
	return v.addDecoded(seq, recordBytes, leaf, prevChain, chain, &eventsv1.AuditRecord{}, shown, compare)
}

func (v *Verifier) addDecoded(seq uint64, recordBytes, leaf, prevChain, chain []byte, rec, shown *eventsv1.AuditRecord, compare bool) bool {
	if v.fail != nil {
		return false
	}
	failAt := func(kind auditv1.VerifyFailure, format string, args ...any) bool {
		v.fail = &auditv1.VerifyRangeResponse{Failure: kind, FirstFailingSequence: v.next, Detail: fmt.Sprintf(format, args...)}
		return false
	}
	if seq != v.next {
		return failAt(auditv1.VerifyFailure_VERIFY_FAILURE_SEQUENCE_GAP, "expected sequence %d, found %d", v.next, seq)
	}
	if err := proto.Unmarshal(recordBytes, rec); err != nil {
		return failAt(auditv1.VerifyFailure_VERIFY_FAILURE_RECORD_UNDECODABLE, "sequence %d: record bytes do not decode", seq)
	}
	computed := LeafHash(recordBytes)
	if !bytes.Equal(computed, leaf) {
		return failAt(auditv1.VerifyFailure_VERIFY_FAILURE_LEAF_HASH_MISMATCH, "sequence %d: leaf hash %s, record bytes hash to %s", seq, short(leaf), short(computed))
	}
	if compare && !proto.Equal(rec, shown) {
		return failAt(auditv1.VerifyFailure_VERIFY_FAILURE_LEAF_HASH_MISMATCH, "sequence %d: the decoded record differs from its record bytes", seq)
	}
	if !bytes.Equal(prevChain, v.chain) {
		return failAt(auditv1.VerifyFailure_VERIFY_FAILURE_CHAIN_BROKEN, "sequence %d: previous chain hash %s, expected %s", seq, short(prevChain), short(v.chain))
	}
	next := ChainHash(v.chain, computed)
	if !bytes.Equal(next, chain) {
		return failAt(auditv1.VerifyFailure_VERIFY_FAILURE_CHAIN_BROKEN, "sequence %d: chain hash %s, expected %s", seq, short(chain), short(next))
	}
	v.chain = next
	v.next++
	v.count++
	if v.tree != nil {
		v.tree.Append(computed, nil)
		v.checkCheckpoints()
	}
	return v.fail == nil
}

// checkCheckpoints compares the root with every checkpoint of exactly the tree's size.
func (v *Verifier) checkCheckpoints() {
	size := v.tree.Size()
	for len(v.cps) > 0 && v.cps[0].GetTreeSize() <= size {
		cp := v.cps[0]
		v.cps = v.cps[1:]
		if cp.GetTreeSize() < size {
			continue // before the run: nothing to compare
		}
		root := v.tree.Root()
		if !bytes.Equal(root, cp.GetRootHash()) {
			first := v.lastOK + 1
			v.fail = &auditv1.VerifyRangeResponse{
				Failure:              auditv1.VerifyFailure_VERIFY_FAILURE_CHECKPOINT_ROOT_MISMATCH,
				FirstFailingSequence: first,
				Checkpoint:           cp,
				Detail: fmt.Sprintf("root over sequences 1..%d is %s, checkpoint says %s; the damage lies in sequences %d..%d",
					size, short(root), short(cp.GetRootHash()), first, size),
			}
			return
		}
		v.lastOK = size
		v.matched = cp
	}
}

// Finish ends the run. When wantSize is non-zero and the run ended before it (an export
// truncated below the checkpoint it is checked against), that is a failure at the first
// missing sequence. It returns the result in the audit API's shape.
func (v *Verifier) Finish(wantSize uint64) *auditv1.VerifyRangeResponse {
	if v.fail == nil && wantSize > 0 && v.next <= wantSize {
		v.fail = &auditv1.VerifyRangeResponse{Failure: auditv1.VerifyFailure_VERIFY_FAILURE_SEQUENCE_GAP,
			FirstFailingSequence: v.next,
			Detail:               fmt.Sprintf("entries end at sequence %d but the checkpoint covers %d", v.next-1, wantSize)}
	}
	if v.fail != nil {
		r := proto.Clone(v.fail).(*auditv1.VerifyRangeResponse)
		r.VerifiedCount = v.count
		r.ToSequence = v.next - 1
		if r.Checkpoint == nil {
			r.Checkpoint = v.matched
		}
		return r
	}
	return &auditv1.VerifyRangeResponse{Ok: true, VerifiedCount: v.count, Checkpoint: v.matched, ToSequence: v.next - 1}
}

// Chain is the chain hash after the last verified entry.
func (v *Verifier) Chain() []byte { return v.chain }

func short(h []byte) string {
	s := hex.EncodeToString(h)
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}

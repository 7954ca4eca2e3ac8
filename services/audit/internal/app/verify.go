package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/transparency-dev/merkle/proof"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
	"github.com/securemsg/securemsg/services/audit/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog/tlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// VerifyRange re-checks sequences from..to (to 0 = the end) against the stored hashes, the
// chain, the projection columns and every checkpoint inside the range, for an auditor or admin.
// The tree before from is rebuilt from kept nodes, so any range gets the Merkle check.
func (s *Service) VerifyRange(ctx context.Context, from, to uint64) (domain.Verification, error) {
	if err := requireAny(ctx, false, auth.RoleAuditor, auth.RoleAdmin); err != nil {
		return domain.Verification{}, err
	}
	return s.Verify(ctx, from, to)
}

// Verify is VerifyRange without the caller check (for the service's own jobs and tests).
func (s *Service) Verify(ctx context.Context, from, to uint64) (domain.Verification, error) {
	head, err := s.log.Head(ctx)
	if err != nil {
		return domain.Verification{}, err
	}
	if to == 0 {
		to = head.Size
	}
	if from == 0 || from > to {
		return domain.Verification{}, usererr.New(usererr.InvalidArgument, "INVALID_SEQUENCE_RANGE", "from_sequence must be at least 1 and not after to_sequence")
	}
	if to > head.Size {
		return domain.Verification{}, usererr.Newf(usererr.OutOfRange, "BEYOND_LOG_END", "to_sequence %d is beyond the log's end %d", to, head.Size)
	}
	if from < head.FirstSequence {
		return domain.Verification{}, usererr.Newf(usererr.OutOfRange, "REMOVED_BY_RETENTION", "sequences before %d were removed by retention", head.FirstSequence)
	}
	stored, err := s.checkpoints.Checkpoints(ctx, from, to)
	if err != nil {
		return domain.Verification{}, err
	}
	var cps []*auditv1.Checkpoint
	for _, c := range stored {
		cp := checkpointProto(c)
		if err := s.trusted.Verify(cp); err != nil {
			return domain.Verification{Failure: domain.VerifyCheckpointSignatureInvalid, FirstFailingSequence: c.TreeSize,
				Checkpoint: &c, Detail: err.Error(), ToSequence: to}, nil
		}
		cps = append(cps, cp)
	}
	prev, err := s.chainBefore(ctx, from, head.FirstSequence)
	if err != nil {
		return domain.Verification{}, err
	}
	tree, err := s.treeAt(ctx, from-1)
	if err != nil {
		if !domain.IsPruned(err) {
			return domain.Verification{}, err
		}
		tree = nil // retention removed leaves the tree needs: check leaves and chain only
	}
	v := tlog.NewVerifier(from, prev, tree, cps...)
	var badProjection uint64
	stop := errors.New("stop")
	err = s.log.Range(ctx, from, to, func(e domain.Entry) error {
		rec, ok := v.Add(e.Sequence, e.Bytes, e.Leaf, e.PrevChain, e.Chain)
		if !ok {
			return stop
		}
		if !domain.Project(rec).Equal(e.Projection) {
			badProjection = e.Sequence
			return stop
		}
		return nil
	})
	if err != nil && !errors.Is(err, stop) {
		return domain.Verification{}, err
	}
	if badProjection != 0 {
		r := verificationOf(v.Finish(0))
		return domain.Verification{Failure: domain.VerifyLeafHashMismatch, FirstFailingSequence: badProjection,
			VerifiedCount: r.VerifiedCount - 1, ToSequence: to, Checkpoint: r.Checkpoint,
			Detail: fmt.Sprintf("sequence %d: the indexed columns differ from the record bytes", badProjection)}, nil
	}
	r := verificationOf(v.Finish(0))
	if r.Ok && v.Next() != to+1 {
		r = domain.Verification{Failure: domain.VerifySequenceGap, FirstFailingSequence: v.Next(),
			VerifiedCount: r.VerifiedCount, Detail: fmt.Sprintf("sequence %d is missing", v.Next())}
	}
	r.ToSequence = to
	return r, nil
}

// chainBefore is the chain hash a verification from sequence from starts with: the zero hash
// for the log's start, else the stored chain hash of the entry before (the chain check of from
// itself catches an edit there), or, when retention dropped that entry and from is the first
// kept, the chain hash the first kept entry states (its own leaf and every later link are still
// checked).
func (s *Service) chainBefore(ctx context.Context, from, firstKept uint64) ([]byte, error) {
	if from == 1 {
		return tlog.ZeroHash(), nil
	}
	var got []byte
	if err := s.log.Range(ctx, from-1, from-1, func(e domain.Entry) error { got = e.Chain; return nil }); err != nil {
		return nil, err
	}
	if got == nil && from == firstKept {
		if err := s.log.Range(ctx, from, from, func(e domain.Entry) error { got = e.PrevChain; return nil }); err != nil {
			return nil, err
		}
	}
	if got == nil {
		return nil, usererr.Newf(usererr.OutOfRange, "SEQUENCE_NOT_STORED", "sequence %d is not stored", from-1)
	}
	return got, nil
}

// LatestCheckpoint returns the newest checkpoint, for an auditor, an admin or a service.
func (s *Service) LatestCheckpoint(ctx context.Context) (domain.Checkpoint, error) {
	if err := requireAny(ctx, true, auth.RoleAuditor, auth.RoleAdmin); err != nil {
		return domain.Checkpoint{}, err
	}
	return s.checkpoints.LatestCheckpoint(ctx)
}

// resolveSize turns 0 into the latest checkpoint's size and checks size against the log; it
// returns the checkpoint of the size when one was signed.
func (s *Service) resolveSize(ctx context.Context, size uint64) (uint64, *domain.Checkpoint, error) {
	if size == 0 {
		c, err := s.checkpoints.LatestCheckpoint(ctx)
		if err != nil {
			return 0, nil, err
		}
		return c.TreeSize, &c, nil
	}
	head, err := s.log.Head(ctx)
	if err != nil {
		return 0, nil, err
	}
	if size > head.Size {
		return 0, nil, usererr.Newf(usererr.OutOfRange, "BEYOND_LOG_END", "tree size %d is beyond the log's size %d", size, head.Size)
	}
	if cs, err := s.checkpoints.Checkpoints(ctx, size, size); err == nil && len(cs) == 1 {
		return size, &cs[0], nil
	}
	return size, nil, nil
}

// InclusionProof proves the record at seq is in the tree of treeSize (0 = latest checkpoint).
func (s *Service) InclusionProof(ctx context.Context, seq, treeSize uint64) (domain.InclusionProof, error) {
	if err := requireAny(ctx, true, auth.RoleAuditor, auth.RoleAdmin); err != nil {
		return domain.InclusionProof{}, err
	}
	if seq == 0 || (treeSize != 0 && seq > treeSize) {
		return domain.InclusionProof{}, usererr.New(usererr.InvalidArgument, "INVALID_SEQUENCE", "sequence must be in 1..tree_size")
	}
	size, cp, err := s.resolveSize(ctx, treeSize)
	if err != nil {
		return domain.InclusionProof{}, err
	}
	if seq > size {
		return domain.InclusionProof{}, usererr.Newf(usererr.InvalidArgument, "INVALID_SEQUENCE", "sequence %d is beyond tree size %d", seq, size)
	}
	leaf, err := s.log.LeafHash(ctx, seq)
	if err != nil {
		return domain.InclusionProof{}, err
	}
	nodes, err := proof.Inclusion(seq-1, size)
	hashes, err := s.proofHashes(ctx, nodes, err)
	if err != nil {
		return domain.InclusionProof{}, err
	}
	return domain.InclusionProof{LeafIndex: seq - 1, TreeSize: size, LeafHash: leaf, Hashes: hashes, Checkpoint: cp}, nil
}

// ConsistencyProof proves the tree of first is a prefix of the tree of second (0 = latest).
func (s *Service) ConsistencyProof(ctx context.Context, first, second uint64) (domain.ConsistencyProof, error) {
	if err := requireAny(ctx, true, auth.RoleAuditor, auth.RoleAdmin); err != nil {
		return domain.ConsistencyProof{}, err
	}
	if first == 0 || (second != 0 && first > second) {
		return domain.ConsistencyProof{}, usererr.New(usererr.InvalidArgument, "INVALID_TREE_SIZE", "first_size must be in 1..second_size")
	}
	size, _, err := s.resolveSize(ctx, second)
	if err != nil {
		return domain.ConsistencyProof{}, err
	}
	if first > size {
		return domain.ConsistencyProof{}, usererr.Newf(usererr.InvalidArgument, "INVALID_TREE_SIZE", "first_size %d is beyond %d", first, size)
	}
	nodes, err := proof.Consistency(first, size)
	hashes, err := s.proofHashes(ctx, nodes, err)
	if err != nil {
		return domain.ConsistencyProof{}, err
	}
	return domain.ConsistencyProof{FirstSize: first, SecondSize: size, Hashes: hashes}, nil
}

// treeAt rebuilds the Merkle tree as it was at size leaves (its compact range) from kept hashes.
func (s *Service) treeAt(ctx context.Context, size uint64) (*tlog.Tree, error) {
	hashes, err := s.log.NodeHashes(ctx, tlog.CompactNodes(size))
	if err != nil {
		return nil, err
	}
	return tlog.TreeFromState(size, hashes)
}

// proofHashes reads the hashes an RFC 6962 proof names and folds them into the proof; nodesErr
// is the error of computing the proof's nodes (a size or index the tree cannot have).
func (s *Service) proofHashes(ctx context.Context, nodes proof.Nodes, nodesErr error) ([][]byte, error) {
	if nodesErr != nil {
		return nil, usererr.Newf(usererr.InvalidArgument, "INVALID_PROOF_REQUEST", "%v", nodesErr)
	}
	hashes, err := s.log.NodeHashes(ctx, nodes.IDs)
	if err != nil {
		return nil, err
	}
	return nodes.Rehash(hashes, tlog.NodeHash)
}

// The tlog package (shared with securemsgctl's offline verifier) signs, verifies and exports in
// the securemsg.audit.v1 shapes; these convert at that boundary.

// checkpointProto is c as tlog verifies it.
func checkpointProto(c domain.Checkpoint) *auditv1.Checkpoint {
	return &auditv1.Checkpoint{TreeSize: c.TreeSize, RootHash: c.Root, Signature: c.Signature, KeyId: c.KeyID,
		CreateTime: timestamppb.New(c.CreatedAt), SignedBody: c.SignedBody}
}

// checkpointOf is a checkpoint tlog signed or verified, as it is stored.
func checkpointOf(c *auditv1.Checkpoint) domain.Checkpoint {
	return domain.Checkpoint{TreeSize: c.GetTreeSize(), Root: c.GetRootHash(), Signature: c.GetSignature(), KeyID: c.GetKeyId(),
		SignedBody: c.GetSignedBody(), CreatedAt: c.GetCreateTime().AsTime()}
}

// verificationOf is a tlog verifier's result.
func verificationOf(r *auditv1.VerifyRangeResponse) domain.Verification {
	v := domain.Verification{Ok: r.GetOk(), VerifiedCount: r.GetVerifiedCount(), FirstFailingSequence: r.GetFirstFailingSequence(),
		Failure: domain.VerifyFailure(r.GetFailure()), Detail: r.GetDetail(), ToSequence: r.GetToSequence()}
	if r.GetCheckpoint() != nil {
		cp := checkpointOf(r.GetCheckpoint())
		v.Checkpoint = &cp
	}
	return v
}

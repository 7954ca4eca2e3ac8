// Package tlog holds the audit log's tamper-evidence primitives, shared by the audit service
// (which builds the log) and securemsgctl (which verifies exports offline):
//
//   - LeafHash = SHA-256(0x00 || record_bytes), an RFC 6962 leaf hash, and ChainHash =
//     SHA-256(prev_chain_hash || leaf_hash) starting from 32 zero bytes (see the package comment
//     of securemsg.audit.v1);
//   - Tree, an RFC 6962 / RFC 9162 Merkle tree kept as a compact range (github.com/
//     transparency-dev/merkle), so appending costs O(1) amortised hashes and the state that must
//     be persisted is at most 64 hashes;
//   - signed checkpoints: a text note stating the log, tree size, root and time, signed with
//     Ed25519, with a key id derived from the public key;
//   - Verifier, which re-checks a run of entries (sequence continuity, leaf hashes, the chain,
//     and the Merkle root against checkpoints) and reports the first bad sequence.
//
// Proof generation and verification use github.com/transparency-dev/merkle/proof directly.
package tlog

import (
	"crypto/sha256"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
)

// HashSize is the size of every hash in the log.
const HashSize = sha256.Size

// Hasher is the RFC 6962 SHA-256 tree hasher, for proof.VerifyInclusion and friends.
var Hasher = rfc6962.DefaultHasher

// ZeroHash returns the chain hash before the first record: 32 zero bytes.
func ZeroHash() []byte { return make([]byte, HashSize) }

// LeafHash is SHA-256(0x00 || recordBytes).
func LeafHash(recordBytes []byte) []byte {
	h := sha256.New()
	h.Write([]byte{rfc6962.RFC6962LeafHashPrefix})
	h.Write(recordBytes)
	return h.Sum(make([]byte, 0, HashSize))
}

// ChainHash is SHA-256(prev || leaf).
func ChainHash(prev, leaf []byte) []byte {
	var buf [2 * HashSize]byte
	copy(buf[:HashSize], prev)
	copy(buf[HashSize:], leaf)
	sum := sha256.Sum256(buf[:])
	return sum[:]
}

// NodeHash is the RFC 6962 interior node hash SHA-256(0x01 || left || right).
func NodeHash(left, right []byte) []byte {
	var buf [1 + 2*HashSize]byte
	buf[0] = rfc6962.RFC6962NodeHashPrefix
	copy(buf[1:], left)
	copy(buf[1+HashSize:], right)
	sum := sha256.Sum256(buf[:])
	return sum[:]
}

var factory = &compact.RangeFactory{Hash: NodeHash}

// Tree is the log's Merkle tree as a compact range over leaves [0, Size()). It is not safe for
// concurrent use.
type Tree struct {
	r *compact.Range
}

// NewTree returns an empty tree.
func NewTree() *Tree { return &Tree{r: factory.NewEmptyRange(0)} }

// TreeFromState rebuilds a tree of size leaves from the hashes State returned (the perfect
// subtrees covering [0, size), left to right), so a restart does not rehash the log.
func TreeFromState(size uint64, hashes [][]byte) (*Tree, error) {
	r, err := factory.NewRange(0, size, hashes)
	if err != nil {
		return nil, fmt.Errorf("tlog: tree state of size %d: %w", size, err)
	}
	return &Tree{r: r}, nil
}

// Visit is told about every node an Append completes (leaves included, at level 0).
type Visit func(level uint, index uint64, hash []byte)

// Append adds a leaf hash. visit may be nil.
func (t *Tree) Append(leaf []byte, visit Visit) {
	var fn compact.VisitFn
	if visit != nil {
		fn = func(id compact.NodeID, hash []byte) { visit(id.Level, id.Index, hash) }
	}
	// Append fails only for a range not starting at 0, which a Tree never is.
	if err := t.r.Append(leaf, fn); err != nil {
		panic(fmt.Sprintf("tlog: append: %v", err))
	}
}

// Size is the number of leaves.
func (t *Tree) Size() uint64 { return t.r.End() }

// State returns the compact range's hashes; persist them with Size to resume with TreeFromState.
func (t *Tree) State() [][]byte { return t.r.Hashes() }

// Root returns the RFC 6962 root hash (the hash of the empty string for an empty tree).
func (t *Tree) Root() []byte {
	if t.r.End() == 0 {
		return Hasher.EmptyRoot()
	}
	root, err := t.r.GetRootHash(nil)
	if err != nil {
		panic(fmt.Sprintf("tlog: root: %v", err))
	}
	return root
}

// Clone returns an independent copy.
func (t *Tree) Clone() *Tree {
	hs := t.r.Hashes()
	cp := make([][]byte, len(hs))
	copy(cp, hs)
	nt, _ := TreeFromState(t.r.End(), cp)
	return nt
}

// PerfectRoot folds 2^k hashes (the nodes of one level under a perfect subtree, left to right)
// into the subtree's root.
func PerfectRoot(hashes [][]byte) ([]byte, error) {
	n := len(hashes)
	if n == 0 || n&(n-1) != 0 {
		return nil, fmt.Errorf("tlog: %d hashes do not form a perfect subtree", n)
	}
	level := make([][]byte, n)
	copy(level, hashes)
	for len(level) > 1 {
		for i := 0; i < len(level)/2; i++ {
			level[i] = NodeHash(level[2*i], level[2*i+1])
		}
		level = level[:len(level)/2]
	}
	return level[0], nil
}

// CompactNodes lists the perfect subtrees (level, index) whose hashes make up the compact range
// [0, size): the state a Tree of that size keeps.
func CompactNodes(size uint64) []compact.NodeID { return compact.RangeNodes(0, size, nil) }

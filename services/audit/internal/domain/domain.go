// Package domain holds the audit log's types and rules, without I/O: what an ingested record
// must look like, how an append extends the hash chain and the Merkle tree, the projection of a
// record into filterable columns, query filters, the FHIR rendering of exports, the anomaly
// rules, the refusals (usererr values) and the repository interfaces the use cases need
// (repository.go), which adapters/pgstore and adapters/memstore implement. The hashing itself
// lives in platform/auditlog/tlog, shared with securemsgctl's offline verifier.
package domain

import (
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog/tlog"
	"github.com/securemsg/securemsg/services/internal/platform/protoenum"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// Incoming is a record received for appending: its exact bytes and their decoding.
type Incoming struct {
	EventID string
	Bytes   []byte
	Record  *eventsv1.AuditRecord
}

// ParseIncoming decodes and validates a received record. Records that fail here can never be
// appended and are terminated, not retried; the error names fields, never values.
func ParseIncoming(b []byte) (Incoming, error) {
	rec := &eventsv1.AuditRecord{}
	if err := proto.Unmarshal(b, rec); err != nil {
		return Incoming{}, fmt.Errorf("%w: %v", ErrUndecodable, err)
	}
	if err := auditlog.Validate(rec); err != nil {
		return Incoming{}, fmt.Errorf("%w: %v", ErrUndecodable, err)
	}
	return Incoming{EventID: rec.GetMeta().GetEventId(), Bytes: b, Record: rec}, nil
}

// Projection is the set of record fields copied into columns for filtering.
type Projection struct {
	EventID      string
	OccurredAt   time.Time
	Producer     int16
	ActorSubject string
	ActorRole    int16
	ActorOrg     string
	OnBehalfOf   string
	Action       int16
	Outcome      int16
	Severity     int16
	RecordType   int16
	RecordID     string
	PatientID    string
	PoolID       string
	Sensitivity  int16
	Purpose      int16
}

// Project copies rec's filterable fields.
func Project(rec *eventsv1.AuditRecord) Projection {
	return Projection{
		EventID:      rec.GetMeta().GetEventId(),
		OccurredAt:   rec.GetMeta().GetOccurredAt().AsTime().UTC(),
		Producer:     EnumCode(rec.GetMeta().GetProducer()),
		ActorSubject: rec.GetActor().GetSubject(),
		ActorRole:    EnumCode(rec.GetActor().GetRole()),
		ActorOrg:     rec.GetActor().GetOrganisationId(),
		OnBehalfOf:   rec.GetActor().GetOnBehalfOf(),
		Action:       EnumCode(rec.GetAction()),
		Outcome:      EnumCode(rec.GetOutcome()),
		Severity:     EnumCode(rec.GetSeverity()),
		RecordType:   EnumCode(rec.GetRecordType()),
		RecordID:     rec.GetRecordId(),
		PatientID:    rec.GetPatientId(),
		PoolID:       rec.GetPoolId(),
		Sensitivity:  EnumCode(rec.GetSensitivity()),
		Purpose:      EnumCode(rec.GetPurposeOfUse()),
	}
}

// EnumCode is the number of a proto enum value as the projection (and the log's smallint
// columns) keep it. The projected enums (components, roles, actions, outcomes, severities,
// record types, sensitivities, purposes) number their values far below 2^15; a number no int16
// holds, which a producer could send since proto3 keeps unknown values, is kept as 0
// (UNSPECIFIED) rather than wrapped onto a real action or outcome.
func EnumCode[E ~int32](e E) int16 { return protoenum.Code(e, 0) }

// Equal reports whether two projections agree (times compared as instants at microsecond
// precision, which is what Postgres keeps).
func (p Projection) Equal(o Projection) bool {
	a, b := p, o
	a.OccurredAt, b.OccurredAt = time.Time{}, time.Time{}
	return a == b && p.OccurredAt.Truncate(time.Microsecond).Equal(o.OccurredAt.Truncate(time.Microsecond))
}

// Entry is one stored log entry.
type Entry struct {
	Sequence   uint64
	AppendedAt time.Time
	Bytes      []byte
	Leaf       []byte
	PrevChain  []byte
	Chain      []byte
	Projection Projection
}

// Record decodes the entry's record bytes. The error names the sequence, never content.
func (e Entry) Record() (*eventsv1.AuditRecord, error) {
	rec := &eventsv1.AuditRecord{}
	if err := proto.Unmarshal(e.Bytes, rec); err != nil {
		return nil, fmt.Errorf("entry %d: record does not decode", e.Sequence)
	}
	return rec, nil
}

// Filter selects entries; zero fields match everything.
type Filter struct {
	ActorSubject string
	PatientID    string
	RecordType   eventsv1.RecordType
	RecordID     string
	Actions      []eventsv1.Action
	Outcomes     []eventsv1.Outcome
	Start, End   time.Time
	FromSeq      uint64
	ToSeq        uint64
	MinSeverity  eventsv1.Severity
	// ExcludeRoles and ExcludeSensitivity serve the access report (not part of the public API).
	ExcludeRoles       []commonv1.Role
	ExcludeSensitivity []commonv1.Sensitivity
}

// Validate rejects inverted ranges.
func (f Filter) Validate() error {
	if !f.Start.IsZero() && !f.End.IsZero() && !f.Start.Before(f.End) {
		return usererr.New(usererr.InvalidArgument, "INVALID_TIME_RANGE", "start_time must be before end_time")
	}
	if f.FromSeq != 0 && f.ToSeq != 0 && f.FromSeq > f.ToSeq {
		return usererr.New(usererr.InvalidArgument, "INVALID_SEQUENCE_RANGE", "from_sequence is after to_sequence")
	}
	return nil
}

// Page asks for one page of a query in keyset order.
type Page struct {
	// After is the last sequence of the previous page (0 for the first page).
	After uint64
	// Desc orders newest first.
	Desc bool
	// Limit is the page size.
	Limit int
}

// Head is the log's current end: its size, last chain hash, Merkle tree (compact range) and the
// first sequence retention has kept.
type Head struct {
	Size          uint64
	Chain         []byte
	Tree          *tlog.Tree
	FirstSequence uint64
}

// EmptyHead is the head of a log nothing was appended to.
func EmptyHead() Head {
	return Head{Chain: tlog.ZeroHash(), Tree: tlog.NewTree(), FirstSequence: 1}
}

// Clone returns a copy of h that Extend can change without changing h.
func (h Head) Clone() Head {
	h.Chain = slices.Clone(h.Chain)
	h.Tree = h.Tree.Clone()
	return h
}

// Extend appends to h the records of recs whose event ids seen does not hold, in order, as
// appended at now, and returns their entries: each takes the next sequence, the leaf hash of
// its exact bytes, the chain hash linking it to the entry before, and the next leaf of the
// Merkle tree. seen gains the ids appended (so a record repeated within recs is appended once).
// visit, when not nil, sees every tree node the appends complete. h changes in place; a caller
// that may roll back extends a Clone.
func (h *Head) Extend(recs []Incoming, seen map[string]bool, now time.Time, visit tlog.Visit) []Entry {
	now = now.UTC().Truncate(time.Microsecond) // the precision Postgres keeps
	var out []Entry
	for _, r := range recs {
		if seen[r.EventID] {
			continue
		}
		seen[r.EventID] = true
		leaf := tlog.LeafHash(r.Bytes)
		next := tlog.ChainHash(h.Chain, leaf)
		h.Tree.Append(leaf, visit)
		h.Size++
		out = append(out, Entry{Sequence: h.Size, AppendedAt: now, Bytes: r.Bytes, Leaf: leaf, PrevChain: h.Chain, Chain: next,
			Projection: Project(r.Record)})
		h.Chain = next
	}
	return out
}

// TreeNodeStride is the level spacing of the tree nodes a log keeps beside its leaves: levels
// 8, 16, 24, ... are kept, so any perfect subtree hash is computed from at most 2^8 kept hashes,
// and the nodes outlive retention of the leaves under them.
const TreeNodeStride = 8

// KeepsTreeNode reports whether a log keeps the tree node at level (see TreeNodeStride).
func KeepsTreeNode(level uint) bool { return level > 0 && level%TreeNodeStride == 0 }

// SubtreeSpan names the kept hashes the perfect subtree (level, index) is computed from: width
// consecutive hashes from index lo at level kept (kept 0 means leaves, whose index i is the
// entry of sequence i+1).
func SubtreeSpan(level uint, index uint64) (kept uint, lo, width uint64) {
	kept = (level / TreeNodeStride) * TreeNodeStride
	return kept, index << (level - kept), uint64(1) << (level - kept)
}

// Checkpoint is a stored signed checkpoint.
type Checkpoint struct {
	TreeSize   uint64
	Root       []byte
	Signature  []byte
	KeyID      string
	SignedBody []byte
	CreatedAt  time.Time
}

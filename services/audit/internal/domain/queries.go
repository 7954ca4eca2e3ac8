package domain

import (
	"time"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
)

// What the use cases take and return: the audit API's requests and answers as plain values
// (ports map them to and from securemsg.audit.v1). The enums VerifyFailure and ExportFormat are
// numbered as their securemsg.audit.v1 counterparts, so ports convert them by value (a ports
// test holds the two in step).

// LoggedRecord is a stored entry with its record decoded.
type LoggedRecord struct {
	Entry
	Record *eventsv1.AuditRecord
}

// QueryRequest asks for one page of the entries matching Filter.
type QueryRequest struct {
	Filter Filter
	// PageSize is the page's size (0: 100; at most 1,000; negative is refused).
	PageSize    int32
	PageToken   string
	NewestFirst bool
}

// QueryPage is one page of a query; NextPageToken is empty on the last page.
type QueryPage struct {
	Entries       []LoggedRecord
	NextPageToken string
}

// ExportFormat is the file format of an export.
type ExportFormat int32

// The export formats (numbered as securemsg.audit.v1.ExportFormat).
const (
	ExportUnspecified ExportFormat = 0
	// ExportJSONL is one tlog entry per line, verifiable offline (securemsgctl audit verify).
	ExportJSONL ExportFormat = 1
	// ExportFHIRAuditEvent is one FHIR R4 AuditEvent resource per line (FHIRAuditEventJSON).
	ExportFHIRAuditEvent ExportFormat = 2
)

// ExportRequest asks for every entry matching Filter in Format.
type ExportRequest struct {
	Filter Filter
	Format ExportFormat
}

// ExportSummary closes an export: what it held, its SHA-256 and the latest checkpoint at the
// start of the export (nil when none was signed yet).
type ExportSummary struct {
	RecordCount   uint64
	FirstSequence uint64
	LastSequence  uint64
	SHA256        []byte
	Checkpoint    *Checkpoint
}

// VerifyFailure says what a verification found wrong.
type VerifyFailure int32

// The failures (numbered as securemsg.audit.v1.VerifyFailure).
const (
	VerifyOK                         VerifyFailure = 0
	VerifyLeafHashMismatch           VerifyFailure = 1
	VerifyChainBroken                VerifyFailure = 2
	VerifySequenceGap                VerifyFailure = 3
	VerifyCheckpointRootMismatch     VerifyFailure = 4
	VerifyCheckpointSignatureInvalid VerifyFailure = 5
	VerifyRecordUndecodable          VerifyFailure = 6
)

// Verification is the result of re-checking a range of the log.
type Verification struct {
	Ok                   bool
	VerifiedCount        uint64
	FirstFailingSequence uint64
	Failure              VerifyFailure
	// Detail explains a failure by sequences and hashes, never record content.
	Detail string
	// Checkpoint is the last checkpoint the range reached (nil when none).
	Checkpoint *Checkpoint
	// ToSequence is the range's end as resolved (0 in the request means the log's end).
	ToSequence uint64
}

// InclusionProof is the RFC 6962 audit path of one leaf in a tree of TreeSize leaves.
type InclusionProof struct {
	LeafIndex uint64
	TreeSize  uint64
	LeafHash  []byte
	Hashes    [][]byte
	// Checkpoint is the checkpoint of TreeSize, when one was signed.
	Checkpoint *Checkpoint
}

// ConsistencyProof is the RFC 6962 proof that the tree of FirstSize is a prefix of the tree of
// SecondSize.
type ConsistencyProof struct {
	FirstSize  uint64
	SecondSize uint64
	Hashes     [][]byte
}

// AccessReportRequest asks "who accessed the records of PatientID" between Start and End
// (zero: unbounded).
type AccessReportRequest struct {
	PatientID  string
	Start, End time.Time
	// PageSize is the page's size (0: 50; at most 500; negative is refused).
	PageSize  int32
	PageToken string
}

// AccessReportEntry is one access to a patient's records, as the patient may see it.
type AccessReportEntry struct {
	AccessTime       time.Time
	ActorRole        commonv1.Role
	OrganisationID   string
	OrganisationName string
	Action           eventsv1.Action
	RecordType       eventsv1.RecordType
	RecordID         string
	PurposeOfUse     commonv1.PurposeOfUse
	// ActorDisplayName is set only when configuration lets reports name staff.
	ActorDisplayName string
}

// AccessReportPage is one page of an access report, newest first.
type AccessReportPage struct {
	Entries       []AccessReportEntry
	NextPageToken string
}

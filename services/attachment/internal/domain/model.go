package domain

import (
	"time"

	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// State is where an attachment is in its life. Only StateClean attachments are bound or served.
type State string

// The states. An upload starts Uploading (invisible: the row exists only so a crash leaves
// something the cleanup job can find) and ends Pending, Clean or Infected; Failed when the
// scanner refused it; Deleted when the uploader deleted a draft (the row is kept as a tombstone
// without its key, so a second delete succeeds).
const (
	StateUploading State = "uploading"
	StatePending   State = "pending"
	StateClean     State = "clean"
	StateInfected  State = "infected"
	StateFailed    State = "failed"
	StateDeleted   State = "deleted"
)

// Visible reports whether the attachment is reported to callers at all.
func (s State) Visible() bool {
	return s == StatePending || s == StateClean || s == StateInfected || s == StateFailed
}

// Attachment is a stored file's metadata. FileNameSealed is the sealed file name; the plaintext
// name (PHI) exists only transiently in FileName, filled in by the use cases when a caller may
// see it.
type Attachment struct {
	ID              string
	UploaderSubject string
	ClientRequestID string
	// AADThreadID is the thread the object's ciphertext is bound to: the thread given at upload
	// ("" for a draft). It never changes, so binding a draft later does not re-encrypt it.
	AADThreadID string
	ThreadID    string
	MessageID   string
	PatientID   string
	PoolID      string
	State       State
	// ObjectName is the random name of the ciphertext object; it carries no PHI.
	ObjectName        string
	WrappedDEK        string
	FileNameSealed    []byte
	FileName          string
	DeclaredMediaType string
	MediaType         string
	SizeBytes         int64
	// ObjectSize is the ciphertext size (crypto.CiphertextSize(SizeBytes)).
	ObjectSize    int64
	SHA256        []byte
	SignatureName string
	ScanAttempts  int
	ScanTime      time.Time
	CreateTime    time.Time
	BindTime      time.Time
	DeleteTime    time.Time
}

// Bound reports whether the attachment is bound to a message.
func (a *Attachment) Bound() bool { return a.MessageID != "" }

// Shred drops the wrapped key and the sealed file name (crypto-shredding): whatever ciphertext
// is left anywhere can no longer be read.
func (a *Attachment) Shred() {
	a.WrappedDEK, a.FileNameSealed = "", nil
}

// MarkDeleted turns a into a tombstone at time at: no key, no name, no hash. The row stays so
// that deleting it again succeeds; its object is removed by the caller.
func (a *Attachment) MarkDeleted(at time.Time) {
	a.State, a.SHA256, a.DeleteTime = StateDeleted, nil, at
	a.Shred()
}

// BindTo binds a to message messageID of thread threadID at time at.
func (a *Attachment) BindTo(threadID, messageID string, at time.Time) {
	a.ThreadID, a.MessageID, a.BindTime = threadID, messageID, at
}

// RecordScan records a scan's outcome: state (clean, infected or failed), the signature found,
// when, and the attempts made so far. An infected or failed attachment is shredded: it can
// never be served, and its object is deleted.
func (a *Attachment) RecordScan(state State, signature string, at time.Time, attempts int) {
	a.State, a.SignatureName, a.ScanTime, a.ScanAttempts = state, signature, at, attempts
	if state == StateInfected || state == StateFailed {
		a.Shred()
	}
}

// Verdict is a malware scan's outcome.
type Verdict struct {
	// Infected is true when malware was found; Signature names it (a signature, not content).
	Infected  bool
	Signature string
}

// Limits are the upload limits.
type Limits struct {
	// MaxFileBytes is the largest file accepted (default 25 MiB).
	MaxFileBytes int64
	// MaxPerMessage is how many attachments one message may carry (default 5).
	MaxPerMessage int
	// QuotaBytes is how many plaintext bytes one uploader may keep stored (drafts and bound
	// files, pending and clean), including uploads in progress. It is enforced by the upload's
	// row insert (AttachmentRepository.InsertUploading), where it can be checked and claimed atomically.
	QuotaBytes int64
	// ScanMaxBytes is the largest stream the scanner accepts (clamd's StreamMaxLength). Files
	// above it are refused: a file that cannot be scanned is never stored.
	ScanMaxBytes int64
}

// DefaultLimits are the limits the service starts with.
func DefaultLimits() Limits {
	return Limits{MaxFileBytes: 25 << 20, MaxPerMessage: 5, QuotaBytes: 1 << 30, ScanMaxBytes: 100 << 20}
}

// CheckDeclaredSize refuses a declared size the limits do not allow.
func (l Limits) CheckDeclaredSize(size int64) error {
	switch {
	case size <= 0:
		return usererr.New(usererr.InvalidArgument, "INVALID_SIZE", "declared_size_bytes must be positive")
	case size > l.MaxFileBytes:
		return usererr.New(usererr.ResourceExhausted, "FILE_TOO_LARGE", "declared_size_bytes exceeds the file size limit")
	case l.ScanMaxBytes > 0 && size > l.ScanMaxBytes:
		return usererr.New(usererr.ResourceExhausted, "FILE_TOO_LARGE_TO_SCAN", "declared_size_bytes exceeds what the malware scanner accepts")
	}
	return nil
}

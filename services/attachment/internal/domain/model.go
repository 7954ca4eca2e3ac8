// Package domain holds the attachment service's types and rules: attachments and their scan
// and lifecycle states, file-name neutralisation, the media-type allow-list, upload limits, the
// refusals the service returns, and the small interfaces the use cases need from the world (the
// attachment repository and the outbox, object storage, the scanner, the messaging service's
// access decisions, the key ring). It does no I/O.
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
}

// Bound reports whether the attachment is bound to a message.
func (a *Attachment) Bound() bool { return a.MessageID != "" }

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
	// row insert (pgstore.InsertWithinQuota), where it can be checked and claimed atomically.
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

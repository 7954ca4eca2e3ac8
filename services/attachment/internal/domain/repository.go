package domain

import (
	"context"
	"time"

	"github.com/securemsg/securemsg/services/internal/platform/outbox"
)

// The repository hides Postgres and its transactions from the use cases (the wild-workouts
// shape): a change to an attachment is a function the repository runs on the row it loaded
// under lock, and the outbox rows (audit records, events) a change must commit with are passed
// as values and written in the same commit. adapters/pgstore implements it over Postgres,
// adapters/memstore in memory for fast tests; the contract tests in adapters/repotest hold
// both to the same behaviour.
//
// Methods return ErrAttachmentNotFound where they name a row that does not exist, an
// Unavailable usererr when the database cannot be reached, and any other error for an internal
// failure.

// AttachmentRepository stores attachments' metadata.
type AttachmentRepository interface {
	// Attachment loads the attachment with id, in any state.
	Attachment(ctx context.Context, id string) (*Attachment, error)
	// AttachmentByRequest returns uploader's attachment made with client request id requestID,
	// or nil when there is none.
	AttachmentByRequest(ctx context.Context, uploader, requestID string) (*Attachment, error)
	// InsertUploading adds a (in state Uploading) and sets a.CreateTime, unless the bytes its
	// uploader holds — uploads in progress at their declared size, pending and clean files —
	// plus a.SizeBytes would exceed quota (quota <= 0: no quota), which is a ResourceExhausted
	// refusal. A client request id the uploader used before is an AlreadyExists refusal.
	// Concurrent inserts of one uploader are serialised, so that together they cannot overrun
	// the quota. It is one round trip: it runs beside the upload's stream.
	InsertUploading(ctx context.Context, a *Attachment, quota int64) error
	// CompleteUpload stores a finished upload — its content facts (media type, sizes, SHA-256),
	// sealed file name, key, scan outcome and create time (a session's is when it finished;
	// the zero time keeps the row's) — and rows, all or nothing, in one statement (one
	// round trip). A row that is gone (removed by the clean-up meanwhile) is
	// ErrAttachmentNotFound, and no row is written.
	CompleteUpload(ctx context.Context, a *Attachment, rows []outbox.Event) error
	// UpdateAttachment loads attachment id under lock and lets change decide: the attachment is
	// written back when change reports it Changed, and the Effects' rows are written, in one
	// commit. An error from change rolls everything back and is returned as it is.
	UpdateAttachment(ctx context.Context, id string, change func(a *Attachment) (Effects, error)) error
	// BindAttachment is UpdateAttachment for binding attachment id to message messageID: change
	// also learns how many attachments are bound to that message already.
	BindAttachment(ctx context.Context, id, messageID string, change func(a *Attachment, bound int) (Effects, error)) error
	// DeleteAttachment removes attachment id's row and writes rows, in one commit. A row that
	// is gone already is not an error, and rows are written all the same.
	DeleteAttachment(ctx context.Context, id string, rows []outbox.Event) error
	// SetScanAttempts records how many scans of pending attachment id failed so far.
	SetScanAttempts(ctx context.Context, id string, attempts int) error
	// AttachmentsOfThreads returns every attachment bound to, or uploaded for, one of the
	// threads, tombstones included, ordered by id.
	AttachmentsOfThreads(ctx context.Context, threadIDs []string) ([]*Attachment, error)
	// PendingAttachments returns up to limit pending attachments, oldest first.
	PendingAttachments(ctx context.Context, limit int) ([]*Attachment, error)
	// StaleAttachments returns up to limit attachments to clean up, oldest first: drafts (never
	// bound, in any state but Uploading) created before draftCutoff, and streamed uploads stuck
	// in Uploading since before uploadCutoff (their process died). An Uploading row with an
	// upload session is not one: the session's own expiry decides (UploadSessionRepository).
	StaleAttachments(ctx context.Context, draftCutoff, uploadCutoff time.Time, limit int) ([]*Attachment, error)
}

// Effects are what a change made with AttachmentRepository.UpdateAttachment commits: the
// attachment itself when Changed, and Rows (audit records, events) in any case.
type Effects struct {
	Changed bool
	Rows    []outbox.Event
}

// AuditWriter writes outbox rows that accompany no change: the audit records of reads,
// downloads and denials. They commit on their own, in one statement.
type AuditWriter interface {
	WriteAudit(ctx context.Context, rows []outbox.Event) error
}

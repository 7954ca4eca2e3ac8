package domain

import "context"

// BoundAttachment is what the attachment service confirms when it binds an upload.
type BoundAttachment struct {
	ID              string
	ThreadID        string
	MessageID       string
	UploaderSubject string
	// Clean is true when the malware scan finished and found nothing.
	Clean bool
}

// Attachments is what messaging needs from the attachment service. Implementations map the
// service's answers to domain errors: NotFound for a missing or foreign attachment,
// FailedPrecondition for an infected, failed or elsewhere-bound one, Unavailable when it cannot
// be reached.
type Attachments interface {
	// Bind binds an uploaded attachment to a message; binding again to the same message is a
	// no-op. uploader is the sender, who must be the attachment's uploader.
	Bind(ctx context.Context, attachmentID, threadID, messageID, uploader string) (BoundAttachment, error)
	// Purge deletes every attachment of the threads (crypto-shredding them) and returns how many
	// it deleted.
	Purge(ctx context.Context, threadIDs []string, reasonCode string) (int64, error)
}

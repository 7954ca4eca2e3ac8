package domain

import (
	"context"

	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/keys"
	"github.com/securemsg/securemsg/services/internal/platform/policy"
)

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
// service's answers to refusals: NotFound for a missing or foreign attachment,
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

// DEKs creates and unwraps per-thread data-encryption keys; *keys.Keyring implements it. Its
// errors are the keyring's (keys.IsUnavailable, keys.ErrKeyVersionRetired), which the use
// cases turn into refusals.
type DEKs interface {
	NewDEK(ctx context.Context, keyName string) (keys.DEK, error)
	OpenDEK(ctx context.Context, keyName, wrapped string) ([]byte, error)
	Forget(keyName, wrapped string)
}

// Evaluator answers record-level policy questions without recording them; *policy.Engine
// implements it. The use cases record every decision themselves, with the record's pool,
// patient and sensitivity, in the commit of the change or read they decided.
type Evaluator interface {
	Evaluate(p *auth.Principal, action string, res policy.Resource, rc policy.Context) policy.Decision
}

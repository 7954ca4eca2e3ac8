package domain

import "github.com/securemsg/securemsg/services/internal/platform/usererr"

// The refusals below are returned from more than one place, so they are written once. Each is a
// usererr value (services/internal/platform/usererr): its kind decides the gRPC code, its reason
// is the stable ErrorInfo reason clients branch on, and its message is written for the caller
// and never holds PHI — no file name, no file bytes; only ids, sizes and rules. A refusal made
// in one place only is written there, with usererr.New.

// ErrAttachmentNotFound is returned when the attachment does not exist or is hidden from the
// caller: someone else's draft, an upload still in progress, a deleted draft.
var ErrAttachmentNotFound = usererr.New(usererr.NotFound, "ATTACHMENT_NOT_FOUND", "attachment not found")

// ErrThreadNotFound is returned when messaging does not know the upload's thread, or hides it
// from the caller.
var ErrThreadNotFound = usererr.New(usererr.NotFound, "THREAD_NOT_FOUND", "thread not found")

// NotRecorded is returned when an action's audit record or event could not be written: the
// action does not happen (fail closed). The cause is kept for the server's logs.
func NotRecorded(cause error) error {
	return usererr.Wrap(usererr.Unavailable, "ACTION_NOT_RECORDED", "the action could not be recorded; try again later", cause)
}

// NotAuthentic is returned when a stored object or its sealed file name failed authentication
// (tampered, truncated, reordered, or under the wrong key).
func NotAuthentic(msg string, cause error) error {
	return usererr.Wrap(usererr.DataLoss, "STORED_ATTACHMENT_NOT_AUTHENTIC", msg, cause)
}

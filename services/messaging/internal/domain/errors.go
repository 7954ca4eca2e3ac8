package domain

import (
	"errors"

	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// The refusals more than one use case or adapter returns. Each is a usererr value, so the gRPC
// edge sends its kind's code, its message and its reason (google.rpc.ErrorInfo) without a
// mapping of its own; match them with errors.Is.
var (
	// ErrThreadNotFound: no thread has the id, or its existence is hidden from the caller.
	ErrThreadNotFound = usererr.New(usererr.NotFound, "THREAD_NOT_FOUND", "thread not found")
	// ErrMessageNotFound: the thread holds no message with the id.
	ErrMessageNotFound = usererr.New(usererr.NotFound, "MESSAGE_NOT_FOUND", "message not found in thread")
	// ErrThreadClosed: the thread is closed, so nothing may be added to it.
	ErrThreadClosed = usererr.New(usererr.FailedPrecondition, "THREAD_CLOSED", "thread is closed")
	// ErrAlreadyRetracted: the message was retracted before.
	ErrAlreadyRetracted = usererr.New(usererr.FailedPrecondition, "MESSAGE_ALREADY_RETRACTED", "message is already retracted")
	// ErrRequestReused: a client request id was used before for a different request.
	ErrRequestReused = usererr.New(usererr.AlreadyExists, "REQUEST_ID_REUSED", "client_request_id was already used for a different request")
	// ErrSettingsChanged: another writer changed a pool's settings between read and write.
	ErrSettingsChanged = usererr.New(usererr.Aborted, "SETTINGS_CHANGED", "the settings changed concurrently; re-read and retry")
	// ErrPurgeRunning: another retention purge holds the purge lock.
	ErrPurgeRunning = usererr.New(usererr.Aborted, "PURGE_RUNNING", "another retention purge is running")
	// ErrServiceCallersOnly: an rpc meant for other securemsg services was called by a person.
	ErrServiceCallersOnly = usererr.New(usererr.PermissionDenied, "SERVICE_CALLERS_ONLY", "permission denied: service callers only")
)

// Signals between a repository and the use cases; they never reach a caller.
var (
	// ErrThreadChanged: ThreadRepository.AppendMessageIfUnchanged found the thread closed,
	// deleted or changed since it was loaded, and wrote nothing.
	ErrThreadChanged = errors.New("thread changed since it was loaded")
	// ErrRequestConflict: a concurrent request with the same client request id (or the same
	// derived thread or message id) committed first; the use case answers as that one did.
	ErrRequestConflict = errors.New("client request id used concurrently")
)

// DatabaseUnavailable is what a repository returns when the database cannot be reached; the
// cause is kept for the server's log.
func DatabaseUnavailable(cause error) error {
	return usererr.Wrap(usererr.Unavailable, "DATABASE_UNAVAILABLE", "database unavailable; try again later", cause)
}

// NotRecorded is what a repository returns when the outbox rows (events, audit records) of a
// change could not be written, so the change did not happen either (fail closed).
func NotRecorded(cause error) error {
	return usererr.Wrap(usererr.Unavailable, "NOT_RECORDED", "the action could not be recorded; try again later", cause)
}

// invalid is an InvalidArgument refusal about a request field; the message names the field,
// never its content.
func invalid(reason, format string, args ...any) error {
	return usererr.Newf(usererr.InvalidArgument, reason, format, args...)
}

// Package domain holds the messaging service's types and rules: threads, messages, their
// lifecycle and limits, retention, and the small interfaces the use cases need from the world
// (the attachment service). It does no I/O.
package domain

import (
	"fmt"

	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// Kind and Error are the platform's caller-facing error (services/internal/platform/usererr):
// a kind the gRPC edge maps to one code, a message without PHI, a cause kept for logs.
type (
	Kind  = usererr.Kind
	Error = usererr.Error
)

// The kinds of domain error this service returns.
const (
	KindInvalidArgument    = usererr.InvalidArgument
	KindNotFound           = usererr.NotFound
	KindPermissionDenied   = usererr.PermissionDenied
	KindFailedPrecondition = usererr.FailedPrecondition
	KindAlreadyExists      = usererr.AlreadyExists
	KindAborted            = usererr.Aborted
	KindUnavailable        = usererr.Unavailable
	KindDataLoss           = usererr.DataLoss
)

// Sentinels to match with errors.Is; use the constructors to make errors with a message.
var (
	// ErrInvalidArgument: the request is malformed or breaks a limit.
	ErrInvalidArgument = &Error{Kind: KindInvalidArgument}
	// ErrNotFound: the record does not exist or is hidden from the caller.
	ErrNotFound = &Error{Kind: KindNotFound}
	// ErrPermissionDenied: policy refused the action (the denial has been audited).
	ErrPermissionDenied = &Error{Kind: KindPermissionDenied}
	// ErrFailedPrecondition: the record's state forbids the action (closed thread, ...).
	ErrFailedPrecondition = &Error{Kind: KindFailedPrecondition}
	// ErrAlreadyExists: a client request id was reused for a different request.
	ErrAlreadyExists = &Error{Kind: KindAlreadyExists}
	// ErrAborted: a concurrent change won (etag mismatch, purge already running).
	ErrAborted = &Error{Kind: KindAborted}
	// ErrUnavailable: a dependency (key service, attachment service, audit outbox) is down.
	ErrUnavailable = &Error{Kind: KindUnavailable}
	// ErrDataLoss: stored ciphertext failed authentication.
	ErrDataLoss = &Error{Kind: KindDataLoss}
)

func newErr(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

// Invalid returns an InvalidArgument error.
func Invalid(format string, args ...any) error { return newErr(KindInvalidArgument, format, args...) }

// NotFound returns a NotFound error.
func NotFound(format string, args ...any) error { return newErr(KindNotFound, format, args...) }

// Denied returns a PermissionDenied error.
func Denied(format string, args ...any) error { return newErr(KindPermissionDenied, format, args...) }

// Precondition returns a FailedPrecondition error.
func Precondition(format string, args ...any) error {
	return newErr(KindFailedPrecondition, format, args...)
}

// Exists returns an AlreadyExists error.
func Exists(format string, args ...any) error { return newErr(KindAlreadyExists, format, args...) }

// Aborted returns an Aborted error.
func Aborted(format string, args ...any) error { return newErr(KindAborted, format, args...) }

// Unavailable returns an Unavailable error wrapping cause (kept for logs, never shown).
func Unavailable(msg string, cause error) error {
	return &Error{Kind: KindUnavailable, Msg: msg, Err: cause}
}

// KindOf returns the kind and message of a domain error in err's chain, or 0 and "".
func KindOf(err error) (Kind, string) { return usererr.KindOf(err) }

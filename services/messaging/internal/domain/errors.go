// Package domain holds the messaging service's types and rules: threads, messages, their
// lifecycle and limits, retention, and the small interfaces the use cases need from the world
// (the attachment service). It does no I/O.
package domain

import (
	"errors"
	"fmt"
)

// Kind classifies a domain error; ports map each kind to one gRPC code.
type Kind int

// The kinds of domain error.
const (
	KindInvalidArgument Kind = iota + 1
	KindNotFound
	KindPermissionDenied
	KindFailedPrecondition
	KindAlreadyExists
	KindAborted
	KindUnavailable
	KindDataLoss
)

// Error is a domain error: a kind and a message the caller may see. Messages never contain
// PHI (no subject, body, file name or free-text reason), only ids and rules.
type Error struct {
	Kind Kind
	Msg  string
	// Err is the cause, when there is one; it is not shown to callers.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Is matches the sentinel of the same kind, so errors.Is(err, ErrNotFound) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Msg == "" && t.Kind == e.Kind
}

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

// KindOf returns the kind of a domain error in err's chain, or 0.
func KindOf(err error) (Kind, string) {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind, e.Msg
	}
	return 0, ""
}

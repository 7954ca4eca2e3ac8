// Package usererr is the error a use case returns when the caller did something the service
// refuses, or a dependency is down: a Kind the gRPC edge maps to exactly one status code, and a
// message written for the caller. The message never holds PHI (no subject, body, file name or
// free-text reason) — only ids and rules. The cause, when there is one, is kept for the server's
// logs and never shown (the split Vault's errutil.UserError draws). Anything that is not a
// usererr.Error is an internal failure, which the edge masks.
package usererr

import (
	"errors"

	"google.golang.org/grpc/codes"
)

// Kind classifies an Error; Code maps each kind to its gRPC code.
type Kind int

// The kinds, named after the gRPC codes they become.
const (
	InvalidArgument Kind = iota + 1
	NotFound
	PermissionDenied
	FailedPrecondition
	AlreadyExists
	Aborted
	ResourceExhausted
	OutOfRange
	Unavailable
	DataLoss
	Canceled
)

var codeOf = map[Kind]codes.Code{
	InvalidArgument:    codes.InvalidArgument,
	NotFound:           codes.NotFound,
	PermissionDenied:   codes.PermissionDenied,
	FailedPrecondition: codes.FailedPrecondition,
	AlreadyExists:      codes.AlreadyExists,
	Aborted:            codes.Aborted,
	ResourceExhausted:  codes.ResourceExhausted,
	OutOfRange:         codes.OutOfRange,
	Unavailable:        codes.Unavailable,
	DataLoss:           codes.DataLoss,
	Canceled:           codes.Canceled,
}

// Code is the gRPC code of kind k (codes.Unknown for a kind that is not one of the above).
func Code(k Kind) codes.Code {
	if c, ok := codeOf[k]; ok {
		return c
	}
	return codes.Unknown
}

// Error is a kind, a caller-facing message and an optional cause.
type Error struct {
	Kind Kind
	Msg  string
	// Err is the cause, when there is one; it is logged by the edge, never shown to callers.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is matches a sentinel of the same kind (an Error with no message), so errors.Is(err,
// ErrNotFound) works for any NotFound error.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Msg == "" && t.Kind == e.Kind
}

// KindOf returns the kind and message of the first Error in err's chain, or 0 and "".
func KindOf(err error) (Kind, string) {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind, e.Msg
	}
	return 0, ""
}

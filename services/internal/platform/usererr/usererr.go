// Package usererr is the error a use case returns when the caller did something the service
// refuses, or a dependency is down: a Kind the gRPC edge maps to exactly one status code, and a
// message written for the caller. The message never holds PHI (no subject, body, file name or
// free-text reason) — only ids and rules. The cause, when there is one, is kept for the server's
// logs and never shown (the split Vault's errutil.UserError draws). Anything that is not a
// usererr.Error is an internal failure, which the edge masks.
package usererr

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Domain is the ErrorInfo domain of every securemsg error: reasons are unique within it.
const Domain = "securemsg"

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
	// Unauthenticated: the caller's credentials are missing, invalid or expired.
	Unauthenticated
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
	Unauthenticated:    codes.Unauthenticated,
}

// Code is the gRPC code of kind k (codes.Unknown for a kind that is not one of the above).
func Code(k Kind) codes.Code {
	if c, ok := codeOf[k]; ok {
		return c
	}
	return codes.Unknown
}

// Error is a kind, a stable reason, a caller-facing message and an optional cause.
type Error struct {
	Kind Kind
	// Reason is a stable UPPER_SNAKE_CASE identifier of the refusal ("THREAD_CLOSED"), sent to
	// the caller in google.rpc.ErrorInfo so that clients branch on it rather than on the
	// message; empty means the kind's own code name ("NOT_FOUND").
	Reason string
	Msg    string
	// Metadata are facts a client acts on without another call (an upload's expected offset, a
	// file's size), sent in ErrorInfo's metadata: ids and numbers only, never PHI.
	Metadata map[string]string
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

// Sentinels to match with errors.Is: each matches every Error of its kind.
var (
	// ErrInvalidArgument: the request is malformed or breaks a limit.
	ErrInvalidArgument = &Error{Kind: InvalidArgument}
	// ErrNotFound: the record does not exist or is hidden from the caller.
	ErrNotFound = &Error{Kind: NotFound}
	// ErrPermissionDenied: policy refused the action (the denial has been audited).
	ErrPermissionDenied = &Error{Kind: PermissionDenied}
	// ErrFailedPrecondition: the record's state forbids the action.
	ErrFailedPrecondition = &Error{Kind: FailedPrecondition}
	// ErrAlreadyExists: a client request id was reused for a different request.
	ErrAlreadyExists = &Error{Kind: AlreadyExists}
	// ErrAborted: a concurrent change won; the caller may re-read and try again.
	ErrAborted = &Error{Kind: Aborted}
	// ErrResourceExhausted: a size, count, quota or rate limit is exceeded.
	ErrResourceExhausted = &Error{Kind: ResourceExhausted}
	// ErrOutOfRange: an offset or page is past the end.
	ErrOutOfRange = &Error{Kind: OutOfRange}
	// ErrUnavailable: a dependency is down; the same request may be retried.
	ErrUnavailable = &Error{Kind: Unavailable}
	// ErrDataLoss: stored data failed an integrity check; retrying will not help.
	ErrDataLoss = &Error{Kind: DataLoss}
	// ErrCanceled: the caller went away; nothing was kept.
	ErrCanceled = &Error{Kind: Canceled}
	// ErrUnauthenticated: the caller must sign in (again).
	ErrUnauthenticated = &Error{Kind: Unauthenticated}
)

// New returns an Error of kind k with a stable reason and a caller-facing message.
func New(k Kind, reason, msg string) *Error { return &Error{Kind: k, Reason: reason, Msg: msg} }

// Newf is New with a formatted message. Format only ids, counts and rules into it, never PHI.
func Newf(k Kind, reason, format string, args ...any) *Error {
	return &Error{Kind: k, Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// Wrap is New with a cause, which the server logs and the caller never sees.
func Wrap(k Kind, reason, msg string, cause error) *Error {
	return &Error{Kind: k, Reason: reason, Msg: msg, Err: cause}
}

// With returns e with metadata key = value added (e itself is not changed).
func (e *Error) With(key, value string) *Error {
	c := *e
	c.Metadata = make(map[string]string, len(e.Metadata)+1)
	for k, v := range e.Metadata {
		c.Metadata[k] = v
	}
	c.Metadata[key] = value
	return &c
}

// ReasonOf returns the reason e is sent with: its own, or its kind's code name.
func (e *Error) ReasonOf() string {
	if e.Reason != "" {
		return e.Reason
	}
	return codeName(Code(e.Kind))
}

// GRPCStatus is the status every protocol edge (grpc-go, connect, vanguard) sends for e: the
// kind's code, the message, and a google.rpc.ErrorInfo with the stable reason. The cause is
// not part of it.
func (e *Error) GRPCStatus() *status.Status {
	st := status.New(Code(e.Kind), e.Msg)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: e.ReasonOf(), Domain: Domain, Metadata: e.Metadata}); err == nil {
		return d
	}
	return st
}

// codeName is a code's name in the UPPER_SNAKE_CASE the google.rpc.Code enum uses.
func codeName(c codes.Code) string {
	name := c.String()
	var b strings.Builder
	for i, r := range name {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

// KindOf returns the kind and message of the first Error in err's chain, or 0 and "".
func KindOf(err error) (Kind, string) {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind, e.Msg
	}
	return 0, ""
}

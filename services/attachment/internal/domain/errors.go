// Package domain holds the attachment service's types and rules: attachments and their scan
// and lifecycle states, file-name neutralisation, the media-type allow-list, upload limits, and
// the small interfaces the use cases need from the world (object storage, the scanner, the
// messaging service's access decisions, the key ring, the repository). It does no I/O.
package domain

import "github.com/securemsg/securemsg/services/internal/platform/usererr"

// Kind and Error are the platform's caller-facing error (services/internal/platform/usererr):
// a kind the gRPC edge maps to one code, a message without PHI (no file name, no file bytes;
// only ids, sizes and rules), a cause kept for logs.
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
	KindResourceExhausted  = usererr.ResourceExhausted
	KindOutOfRange         = usererr.OutOfRange
	KindUnavailable        = usererr.Unavailable
	KindDataLoss           = usererr.DataLoss
	KindCanceled           = usererr.Canceled
)

// Sentinels to match with errors.Is; use the constructors to make errors with a message.
var (
	// ErrInvalidArgument: the request is malformed, or the file's content is refused (type not
	// allowed, type differs from the declared one, size differs from the declared one, malware).
	ErrInvalidArgument = &Error{Kind: KindInvalidArgument}
	// ErrNotFound: the attachment does not exist or is hidden from the caller.
	ErrNotFound = &Error{Kind: KindNotFound}
	// ErrPermissionDenied: the caller may not perform the action (the denial has been audited).
	ErrPermissionDenied = &Error{Kind: KindPermissionDenied}
	// ErrFailedPrecondition: the attachment's state forbids the action (not clean, bound).
	ErrFailedPrecondition = &Error{Kind: KindFailedPrecondition}
	// ErrAlreadyExists: a client request id was reused for a different upload.
	ErrAlreadyExists = &Error{Kind: KindAlreadyExists}
	// ErrResourceExhausted: a size, count or quota limit is exceeded.
	ErrResourceExhausted = &Error{Kind: KindResourceExhausted}
	// ErrOutOfRange: a download offset is at or beyond the end of the file.
	ErrOutOfRange = &Error{Kind: KindOutOfRange}
	// ErrUnavailable: a dependency (Postgres, object storage, Vault, messaging) is down; retry.
	ErrUnavailable = &Error{Kind: KindUnavailable}
	// ErrDataLoss: the stored object failed authentication (tampered, truncated, reordered).
	ErrDataLoss = &Error{Kind: KindDataLoss}
	// ErrCanceled: the client aborted the upload; nothing was kept.
	ErrCanceled = &Error{Kind: KindCanceled}
)

// Invalid returns an ErrInvalidArgument with msg.
func Invalid(msg string) error { return &Error{Kind: KindInvalidArgument, Msg: msg} }

// NotFound returns an ErrNotFound with msg.
func NotFound(msg string) error { return &Error{Kind: KindNotFound, Msg: msg} }

// Denied returns an ErrPermissionDenied with msg.
func Denied(msg string) error { return &Error{Kind: KindPermissionDenied, Msg: msg} }

// Precondition returns an ErrFailedPrecondition with msg.
func Precondition(msg string) error { return &Error{Kind: KindFailedPrecondition, Msg: msg} }

// Exists returns an ErrAlreadyExists with msg.
func Exists(msg string) error { return &Error{Kind: KindAlreadyExists, Msg: msg} }

// Exhausted returns an ErrResourceExhausted with msg.
func Exhausted(msg string) error { return &Error{Kind: KindResourceExhausted, Msg: msg} }

// OutOfRange returns an ErrOutOfRange with msg.
func OutOfRange(msg string) error { return &Error{Kind: KindOutOfRange, Msg: msg} }

// Unavailable returns an ErrUnavailable with msg, wrapping the cause (never shown to callers).
func Unavailable(msg string, cause error) error {
	return &Error{Kind: KindUnavailable, Msg: msg, Err: cause}
}

// DataLoss returns an ErrDataLoss with msg, wrapping the cause.
func DataLoss(msg string, cause error) error {
	return &Error{Kind: KindDataLoss, Msg: msg, Err: cause}
}

// Canceled returns an ErrCanceled with msg.
func Canceled(msg string, cause error) error {
	return &Error{Kind: KindCanceled, Msg: msg, Err: cause}
}

// KindOf returns the kind of the first domain error in err's chain, or 0.
func KindOf(err error) Kind {
	k, _ := usererr.KindOf(err)
	return k
}

package domain

import (
	"context"
	"io"
	"time"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/keys"
)

// ObjectStore keeps ciphertext objects under random names. Implementations return errors
// wrapping ErrUnavailable when the store cannot be reached.
type ObjectStore interface {
	// Put stores size bytes read from r as object name. r returning an error aborts the upload
	// (a multipart upload is aborted, nothing becomes visible).
	Put(ctx context.Context, name string, r io.Reader, size int64) error
	// Open returns a random-access reader over the object and its stored size. hint says what
	// the caller expects, so the store can fetch it in as few round trips as possible; a wrong
	// hint costs time, never correctness.
	Open(ctx context.Context, name string, hint ReadHint) (Object, error)
	// Remove deletes the object; a missing object is not an error.
	Remove(ctx context.Context, name string) error
	// RemovePrefix deletes every object whose name starts with prefix (an upload session's
	// staged chunks) and returns how many it deleted.
	RemovePrefix(ctx context.Context, prefix string) (int, error)
	// RemoveIncompleteUploads aborts multipart uploads started more than olderThan ago and
	// returns how many it aborted.
	RemoveIncompleteUploads(ctx context.Context, olderThan time.Duration) (int, error)
}

// ReadHint describes the reads an opened object is about to serve.
type ReadHint struct {
	// Size is the object's expected stored size, 0 when unknown.
	Size int64
	// Tail is how many bytes at the end of the object the reader wants right after its first
	// bytes: a stream reader reads the header, then authenticates the last segment before it
	// reads from the start. With Size known, the store fetches them concurrently with the
	// start instead of one round trip later.
	Tail int64
}

// Object is a stored object opened for range reads.
type Object interface {
	io.ReaderAt
	io.Closer
	// Size is the object's stored size in bytes.
	Size() int64
}

// Scanner scans a byte stream for malware.
type Scanner interface {
	// Scan reads r to its end and returns the verdict. An error means no verdict (scanner down,
	// stream refused): the caller keeps the file pending and never serves it. Scan must keep
	// reading r until EOF or until it fails, so a writer feeding r through a pipe is released.
	Scan(ctx context.Context, r io.Reader) (Verdict, error)
}

// AccessAction is what a person wants to do with a message's or thread's attachments.
type AccessAction int

// The actions messaging is asked about.
const (
	AccessRead AccessAction = iota + 1
	AccessDownload
	AccessAttach
)

// AccessTarget names a message (preferred) or a thread.
type AccessTarget struct {
	MessageID string
	ThreadID  string
	Action    AccessAction
}

// Access is messaging's answer, with the ids the audit record needs.
type Access struct {
	Allowed     bool
	ReasonCode  string
	ThreadID    string
	PoolID      string
	PatientID   string
	Sensitivity commonv1.Sensitivity
	BreakGlass  bool
}

// AccessChecker asks the messaging service whether p may act on a message or thread
// (adapters/messagingclient). A denial is an answer (Allowed false), not an error; a target
// messaging does not know is a NotFound error, messaging unreachable an Unavailable one.
type AccessChecker interface {
	CheckAccess(ctx context.Context, p *auth.Principal, t AccessTarget) (Access, error)
}

// DEKs makes and opens per-object data-encryption keys; *keys.Keyring and *keys.DEKPool
// implement it. Its errors are the keyring's (keys.IsUnavailable, keys.ErrKeyVersionRetired,
// keys.ErrInvalidWrappedKey), which the use cases turn into refusals.
type DEKs interface {
	NewDEK(ctx context.Context, keyName string) (keys.DEK, error)
	OpenDEK(ctx context.Context, keyName, wrapped string) ([]byte, error)
}

package domain

import (
	"context"
	"strconv"
	"time"

	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// An upload session is the resumable upload a browser can send: it cannot open a client
// stream, so it creates a session with the upload's metadata (the attachment row, Uploading and
// invisible, claims the quota and the client request id at once), sends the bytes as chunks at
// explicit offsets in as many unary calls as it likes, possibly to different replicas, and
// finishes it. Each chunk is sealed (segmented AEAD under the attachment's own DEK, bound to
// its upload and offset) into a staged object of its own as it arrives; Finish streams the
// staged chunks, decrypted in order, through the very pipeline a streamed upload goes through
// (sniff, hash, scan, encrypt into the attachment's object) and removes them. Everything a
// replica needs to take the next call is in Postgres (the session, its chunks) and the object
// store (the staged chunks); nothing lives only in one process's memory.

// MaxSessionChunkBytes is the largest chunk a session accepts: 2 MiB keeps a chunk, with its
// encoding overhead (base64 in Connect/REST JSON), under the servers' 4 MiB message limit, and
// holds a request's memory to a few MiB whatever the file size.
const MaxSessionChunkBytes = 2 << 20

// SessionState is where an upload session is.
type SessionState string

// The states. A session is Open while it takes chunks; Finishing while one Finish runs its
// pipeline (a second Finish is refused, an append too); Closed once it was finished, cancelled,
// refused or abandoned: only its staged objects are left, for the clean-up to remove with the
// row.
const (
	SessionOpen      SessionState = "open"
	SessionFinishing SessionState = "finishing"
	SessionClosed    SessionState = "closed"
)

// UploadSession is a resumable upload in progress. Its ID is the id of the attachment it
// becomes; the attachment row (Uploading) holds the upload's metadata, sealed file name and
// wrapped DEK.
type UploadSession struct {
	ID              string
	UploaderSubject string
	State           SessionState
	// NextOffset is how many bytes were received: the offset the next chunk must start at.
	NextOffset int64
	// StagePrefix is the object-name prefix of the session's staged chunks (random, no PHI).
	StagePrefix string
	CreateTime  time.Time
	// UpdateTime is when the session last changed (a chunk, a finish claimed); an open session
	// idle for the session TTL is abandoned.
	UpdateTime time.Time
}

// Chunk is a received chunk: where it lies in the file, its SHA-256 (so a duplicate is
// recognised) and the staged object that holds it sealed.
type Chunk struct {
	Offset     int64
	Length     int64
	SHA256     []byte
	ObjectName string
}

// ErrUploadNotFound is returned for an upload session that does not exist or is not the
// caller's (only its uploader may use it).
var ErrUploadNotFound = usererr.New(usererr.NotFound, "UPLOAD_NOT_FOUND", "upload session not found")

// ErrorInfo metadata keys a client reads to act on a refusal without another call.
const (
	// MetadataExpectedOffset is where an upload session's next chunk must start.
	MetadataExpectedOffset = "expected_offset"
	// MetadataSizeBytes is the size of a file whose range was not satisfiable.
	MetadataSizeBytes = "size_bytes"
)

// OffsetMismatchError refuses a chunk sent at another offset than the session's next one (and
// not a duplicate of a chunk already received). Expected is where the next chunk must start; the
// gRPC edge also sends it as ErrorInfo metadata "expected_offset", so a client resumes from it
// without another call.
type OffsetMismatchError struct {
	Expected int64
	err      *usererr.Error
}

// NewOffsetMismatch returns the refusal of a chunk at offset when expected is the next one.
func NewOffsetMismatch(offset, expected int64) *OffsetMismatchError {
	return &OffsetMismatchError{Expected: expected, err: usererr.Newf(usererr.Aborted, "UPLOAD_OFFSET_MISMATCH",
		"chunk offset %d is not the upload's next offset %d", offset, expected).With(MetadataExpectedOffset, strconv.FormatInt(expected, 10))}
}

func (e *OffsetMismatchError) Error() string { return e.err.Error() }

// Unwrap returns the usererr value (kind Aborted), so errors.Is(err, usererr.ErrAborted) holds.
func (e *OffsetMismatchError) Unwrap() error { return e.err }

// UserError is the refusal as a usererr value.
func (e *OffsetMismatchError) UserError() *usererr.Error { return e.err }

// RangeNotSatisfiableError refuses a byte range that starts at or beyond the end of a file.
// Size is the file's size, which an HTTP 416 answer states (Content-Range: bytes */Size); the
// gRPC edge sends it as ErrorInfo metadata "size_bytes".
type RangeNotSatisfiableError struct {
	Size int64
	err  *usererr.Error
}

// NewRangeNotSatisfiable returns the refusal of a range outside a file of size bytes.
func NewRangeNotSatisfiable(size int64) *RangeNotSatisfiableError {
	return &RangeNotSatisfiableError{Size: size, err: usererr.New(usererr.OutOfRange, "OFFSET_OUT_OF_RANGE",
		"offset is at or beyond the end of the file").With(MetadataSizeBytes, strconv.FormatInt(size, 10))}
}

func (e *RangeNotSatisfiableError) Error() string { return e.err.Error() }

// Unwrap returns the usererr value (kind OutOfRange).
func (e *RangeNotSatisfiableError) Unwrap() error { return e.err }

// UserError is the refusal as a usererr value.
func (e *RangeNotSatisfiableError) UserError() *usererr.Error { return e.err }

// ByteRange is the part of a file a download asks for: Length bytes from Offset (Length 0: to
// the end), or, when Suffix is positive, the last Suffix bytes (HTTP's "bytes=-N").
type ByteRange struct {
	Offset, Length, Suffix int64
}

// Check refuses a range no file could satisfy the asking of: negative numbers, or a suffix
// given with an offset or a length.
func (r ByteRange) Check() error {
	if r.Offset < 0 || r.Length < 0 || r.Suffix < 0 {
		return usererr.New(usererr.InvalidArgument, "INVALID_RANGE", "offset and length must not be negative")
	}
	if r.Suffix > 0 && (r.Offset != 0 || r.Length != 0) {
		return usererr.New(usererr.InvalidArgument, "INVALID_RANGE", "suffix_length stands alone: offset and length must be 0")
	}
	return nil
}

// Resolve turns r into the offset and length it means in a file of size bytes. A range running
// past the end is cut at the end; one starting at or beyond it is a RangeNotSatisfiableError; a
// suffix longer than the file is the whole file.
func (r ByteRange) Resolve(size int64) (offset, length int64, err error) {
	if err := r.Check(); err != nil {
		return 0, 0, err
	}
	if r.Suffix > 0 {
		n := min(r.Suffix, size)
		return size - n, n, nil
	}
	if r.Offset >= size {
		return 0, 0, NewRangeNotSatisfiable(size)
	}
	if r.Length == 0 || r.Length > size-r.Offset {
		return r.Offset, size - r.Offset, nil
	}
	return r.Offset, r.Length, nil
}

// CheckChunk refuses a chunk of n bytes at offset that a session of a size-byte file cannot
// take: one past the declared size, or a first chunk too short to sniff the file's type from
// (it must hold the first SniffBytes bytes, or the whole file when smaller). The request's
// shape — an offset not negative, 1 byte to MaxSessionChunkBytes — is declared in the proto and
// checked by the validation interceptor before any use case runs.
func CheckChunk(offset int64, n int, size int64) error {
	switch {
	case offset+int64(n) > size:
		return usererr.Newf(usererr.InvalidArgument, "CHUNK_BEYOND_DECLARED_SIZE", "the chunk ends at %d, past the declared %d bytes", offset+int64(n), size)
	case offset == 0 && int64(n) < min(size, SniffBytes):
		return usererr.Newf(usererr.InvalidArgument, "FIRST_CHUNK_TOO_SHORT", "the first chunk must hold the first %d bytes of the file", min(size, SniffBytes))
	}
	return nil
}

// UploadSessionRepository stores upload sessions and their chunks. Its errors follow the
// AttachmentRepository's (repository.go).
type UploadSessionRepository interface {
	// CreateSession inserts attachment a (state Uploading, with its sealed file name), within
	// its uploader's quota as InsertUploading does, and its open session s, in one commit; it
	// sets a.CreateTime and s's times. A client request id the uploader used before is an
	// AlreadyExists refusal, an exceeded quota a ResourceExhausted one.
	CreateSession(ctx context.Context, a *Attachment, s *UploadSession, quota int64) error
	// Session loads session id; ErrUploadNotFound when there is none.
	Session(ctx context.Context, id string) (*UploadSession, error)
	// ChunkAt returns session id's chunk starting at offset, nil when there is none.
	ChunkAt(ctx context.Context, id string, offset int64) (*Chunk, error)
	// Chunks returns session id's chunks in offset order.
	Chunks(ctx context.Context, id string) ([]Chunk, error)
	// AppendChunk records c as session id's next chunk, advancing its next offset by c.Length
	// and its update time to at, if and only if the session is open and c.Offset is its next
	// offset; false when it is not (a concurrent append won, or the session was closed).
	AppendChunk(ctx context.Context, id string, c Chunk, at time.Time) (bool, error)
	// ClaimFinish moves session id from open — or from finishing when that claim is older than
	// staleBefore (its process died) — to finishing at time at; false when the state is another.
	ClaimFinish(ctx context.Context, id string, at, staleBefore time.Time) (bool, error)
	// ReleaseFinish moves session id from finishing back to open, after a finish failed in a way
	// a retry may mend.
	ReleaseFinish(ctx context.Context, id string) error
	// CloseSession moves session id to closed: nothing more is appended or finished. With
	// idleBefore set it does so only if the session is closed already or was not updated since
	// then (the clean-up job's test for an abandoned session, made again under the row's lock),
	// and reports whether the session is closed now. A missing session is closed.
	CloseSession(ctx context.Context, id string, idleBefore time.Time) (bool, error)
	// DeleteSession removes session id and its chunks' rows; a missing session is not an error.
	DeleteSession(ctx context.Context, id string) error
	// StaleSessions returns up to limit sessions to clean up, oldest first: closed ones, and
	// open or finishing ones not updated since idleCutoff (abandoned).
	StaleSessions(ctx context.Context, idleCutoff time.Time, limit int) ([]*UploadSession, error)
}

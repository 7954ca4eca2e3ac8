package domain

import (
	"errors"

	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// ErrUndecodable marks a NATS payload that is not a valid AuditRecord. It is never retried:
// the bytes will not change. It is not a caller's error (no rpc returns it).
var ErrUndecodable = errors.New("payload is not an audit record")

// ErrNoCheckpoint is returned by the checkpoint store, and by the rpcs that need a checkpoint,
// while none has been signed yet.
var ErrNoCheckpoint = usererr.New(usererr.NotFound, "NO_CHECKPOINT", "no checkpoint yet")

// ReasonRecordsPruned is the reason of a Pruned refusal.
const ReasonRecordsPruned = "RECORDS_PRUNED"

// Pruned is the refusal of a proof or tree that needs the hashes of records retention has
// already dropped. The detail (format, args) names sequences and tree nodes only.
func Pruned(format string, args ...any) error {
	return usererr.Newf(usererr.FailedPrecondition, ReasonRecordsPruned, "records needed were removed by retention: "+format, args...)
}

// IsPruned reports whether err is, or wraps, a Pruned refusal.
func IsPruned(err error) bool {
	var e *usererr.Error
	return errors.As(err, &e) && e.Reason == ReasonRecordsPruned
}

// ErrAlertNotFound is returned when no alert has the id asked for.
var ErrAlertNotFound = usererr.New(usererr.NotFound, "ALERT_NOT_FOUND", "alert not found")

package domain

import (
	"errors"

	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// The refusals of the notification use cases. Each is a usererr.Error: its kind decides the
// gRPC code, its reason is the stable google.rpc.ErrorInfo reason clients branch on, and its
// message names fields and rules only, never a value (a contact point is PHI). The platform's
// error interceptor sends them as they are; nothing in the service maps errors to statuses.
var (
	// ErrPermissionDenied is returned when policy refused the caller (the denial is audited by
	// the policy engine), or when someone other than a person calls a person's rpc.
	ErrPermissionDenied = usererr.New(usererr.PermissionDenied, "PERMISSION_DENIED", "permission denied")
	// ErrStale is returned when the etag a caller sent is not the stored version.
	ErrStale = usererr.New(usererr.Aborted, "ETAG_MISMATCH", "etag does not match the stored version; read and retry")
	// ErrNotPoolMember is returned when pool_subscriptions names a pool the caller does not
	// belong to.
	ErrNotPoolMember = usererr.New(usererr.FailedPrecondition, "NOT_POOL_MEMBER", "pool_subscriptions names a pool you are not a member of")
)

// Reasons of the refusals built per call (the messages name the field or rule that failed).
const (
	ReasonInvalidPreferences  = "INVALID_PREFERENCES"
	ReasonTemplateRejected    = "TEMPLATE_REJECTED"
	ReasonChannelNeedsAddress = "CHANNEL_WITHOUT_ADDRESS"
)

// ErrChannelNeedsAddress is returned when ch is enabled but has no contact point.
func ErrChannelNeedsAddress(ch Channel) error {
	return usererr.Newf(usererr.FailedPrecondition, ReasonChannelNeedsAddress, "channel enabled without an address: %s", ch)
}

// ErrAccessNotRecorded is returned when policy allowed a read of contact points but the access
// could not be audited: the read is refused (fail closed) and may be retried.
func ErrAccessNotRecorded(cause error) error {
	return usererr.Wrap(usererr.Unavailable, "ACCESS_NOT_RECORDED", "access could not be recorded; try again later", cause)
}

// ErrKeyServiceUnavailable is returned when Vault Transit cannot open or make a person's key.
func ErrKeyServiceUnavailable(cause error) error {
	return usererr.Wrap(usererr.Unavailable, "KEY_SERVICE_UNAVAILABLE", "key service unavailable; retry later", cause)
}

// ErrKeyVersionRetired is returned when contact points are sealed under a Transit key version
// that may no longer be used to open them.
func ErrKeyVersionRetired(cause error) error {
	return usererr.Wrap(usererr.FailedPrecondition, "KEY_VERSION_RETIRED", "contact points are sealed under a retired key version", cause)
}

// ErrContactPointNotAuthentic is returned when a stored contact point fails authentication
// (tampered with, or moved to another person or channel).
func ErrContactPointNotAuthentic(cause error) error {
	return usererr.Wrap(usererr.DataLoss, "CONTACT_POINT_NOT_AUTHENTIC", "stored contact point failed authentication", cause)
}

// ErrDatabaseUnavailable is returned when Postgres cannot be reached.
func ErrDatabaseUnavailable(cause error) error {
	return usererr.Wrap(usererr.Unavailable, "DATABASE_UNAVAILABLE", "database unavailable; retry later", cause)
}

// ErrMalformedEvent is returned for a message event that can never be processed (missing or
// malformed ids); the consumer terminates it instead of retrying. It is not a caller's error:
// events have no caller to answer.
var ErrMalformedEvent = errors.New("malformed event")

// ErrNotClaimed is returned by DeliveryRepository.FinishAttempt when the delivery is no longer
// claimed (its lease expired and RecoverStaleClaims settled it).
var ErrNotClaimed = errors.New("delivery is no longer claimed")

// HasReason reports whether err is a usererr.Error with reason.
func HasReason(err error, reason string) bool {
	var e *usererr.Error
	return errors.As(err, &e) && e.ReasonOf() == reason
}

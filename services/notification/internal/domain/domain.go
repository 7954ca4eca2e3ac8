// Package domain holds the notification service's types and rules: channels, delivery states,
// preferences with quiet hours and digests, retry backoff, idempotency keys, template linting
// and rendering, and the PHI-free payloads sent to providers. It does no I/O.
//
// Alerts are PHI-free by construction: the only values that can reach an alert's text are the
// three allow-listed template fields (TemplateData), and provider payloads carry opaque ids only.
package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"regexp"
	"strconv"
	"time"

	"github.com/securemsg/securemsg/services/internal/platform/backoff"
)

// Channel is a way to reach a person. The values equal notification.v1.Channel.
type Channel int16

// The channels.
const (
	ChannelUnspecified Channel = 0
	ChannelEmail       Channel = 1
	ChannelSMS         Channel = 2
	ChannelPush        Channel = 3
	ChannelWebhook     Channel = 4
)

// Channels lists the real channels in a stable order.
var Channels = []Channel{ChannelEmail, ChannelSMS, ChannelPush, ChannelWebhook}

// String is the channel's lower-case code, used in template file names, audit codes and logs.
func (c Channel) String() string {
	switch c {
	case ChannelEmail:
		return "email"
	case ChannelSMS:
		return "sms"
	case ChannelPush:
		return "push"
	case ChannelWebhook:
		return "webhook"
	}
	return "none"
}

// ParseChannel is the inverse of Channel.String.
func ParseChannel(s string) (Channel, bool) {
	for _, c := range Channels {
		if c.String() == s {
			return c, true
		}
	}
	return ChannelUnspecified, false
}

// Kind is why an alert is sent. The values equal notification.v1.NotificationKind.
type Kind int16

// The kinds.
const (
	KindUnspecified    Kind = 0
	KindNewMessage     Kind = 1
	KindDigest         Kind = 2
	KindUnreadReminder Kind = 3
)

// Kinds lists the kinds in a stable order.
var Kinds = []Kind{KindNewMessage, KindDigest, KindUnreadReminder}

// String is the kind's lower-case code.
func (k Kind) String() string {
	switch k {
	case KindNewMessage:
		return "new_message"
	case KindDigest:
		return "digest"
	case KindUnreadReminder:
		return "unread_reminder"
	}
	return "none"
}

// ParseKind is the inverse of Kind.String.
func ParseKind(s string) (Kind, bool) {
	for _, k := range Kinds {
		if k.String() == s {
			return k, true
		}
	}
	return KindUnspecified, false
}

// Status is a delivery's state. The public values equal notification.v1.DeliveryStatus;
// StatusSending is internal (a worker has claimed the delivery and may be talking to the
// provider) and is shown as PENDING.
type Status int16

// The delivery states. Transitions: PENDING → SENDING → SENT | RETRYING | FAILED;
// RETRYING → SENDING; PENDING/RETRYING → SUPPRESSED (read before sending, channel turned off).
const (
	StatusPending    Status = 1
	StatusSent       Status = 2
	StatusRetrying   Status = 3
	StatusFailed     Status = 4
	StatusSuppressed Status = 5
	StatusSending    Status = 100
)

// Suppression codes (Delivery.suppression_code).
const (
	SuppressChannelDisabled = "channel_disabled"
	SuppressNoConsent       = "no_consent"
	SuppressNoAddress       = "no_address"
	SuppressAlreadyRead     = "already_read"
	SuppressDigested        = "digested"
)

// Role is the role a person last acted in towards this service, as far as recipient
// resolution cares.
type Role string

// Roles recipient resolution distinguishes.
const (
	RolePatient   Role = "patient"
	RoleProxy     Role = "proxy"
	RoleClinician Role = "clinician"
	RoleStaff     Role = "staff"
	RoleOther     Role = ""
)

// IdempotencyKey is the key that makes an alert's effect happen once per (source event,
// recipient, channel): deliveries carry it under a unique constraint, so a redelivered event
// finds its deliveries already there.
func IdempotencyKey(source, recipient string, ch Channel) string {
	h := sha256.New()
	for _, p := range []string{source, recipient, strconv.Itoa(int(ch))} {
		h.Write([]byte(strconv.Itoa(len(p))))
		h.Write([]byte{':'})
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// RetryPolicy says how failed sends are retried.
type RetryPolicy struct {
	// Base is the delay after the first failed attempt; it doubles per attempt.
	Base time.Duration
	// Max caps the delay.
	Max time.Duration
	// MaxAttempts is the number of attempts after which a delivery is dead-lettered (FAILED).
	MaxAttempts int
}

// DefaultRetryPolicy retries for about an hour: 30s, 1m, 2m, 4m, 8m, 16m, then gives up.
var DefaultRetryPolicy = RetryPolicy{Base: 30 * time.Second, Max: 30 * time.Minute, MaxAttempts: 7}

// Backoff returns the delay before the attempt after attempt (1-based): Base·2^(attempt-1),
// capped at Max, plus up to 10 % jitter so a provider outage does not end in a stampede. It is
// the suite's one retry schedule (platform/backoff), stateless because the attempt count lives
// in the delivery row.
func (p RetryPolicy) Backoff(attempt int) time.Duration {
	return backoff.Exponential{Floor: p.Base, Ceiling: p.Max, Jitter: 0.1}.Delay(attempt)
}

// Exhausted reports whether no attempt may follow attempt.
func (p RetryPolicy) Exhausted(attempt int) bool { return attempt >= p.MaxAttempts }

// SendError is how a channel adapter reports a failed send: a code safe to store and show
// (never the provider's free text, which may echo the address) and whether retrying can help.
type SendError struct {
	Code      string
	Permanent bool
}

func (e *SendError) Error() string { return "send failed: " + e.Code }

// AsSendError returns err as a *SendError, wrapping unknown errors as a retryable "internal".
func AsSendError(err error) *SendError {
	var se *SendError
	if errors.As(err, &se) {
		return se
	}
	return &SendError{Code: "internal"}
}

// uuidPattern is the only shape of thread, message, delivery and event ids copied into provider
// payloads (all are server-assigned UUIDs): an id field holding anything else (a producer bug
// putting text there) is refused, so no id can smuggle content out.
var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// IsUUID reports whether s is a canonical lower-case UUID.
func IsUUID(s string) bool { return uuidPattern.MatchString(s) }

// poolPattern is the shape of pool ids (they are NATS subject tokens too).
var poolPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$`)

// IsPoolID reports whether s is a well-formed pool id.
func IsPoolID(s string) bool { return poolPattern.MatchString(s) }

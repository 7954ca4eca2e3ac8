package domain

import (
	"context"
	"time"

	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/policy"
)

// The repositories the use cases need. Each hides its transactions: a method that must change
// several rows, or rows and their audit records, does so in one commit of its own, and a
// read-modify-write takes a function that sees the current value under lock (the
// wild-workouts UpdateTraining style). Rows to commit with a change (audit records) are given
// as outbox events. adapters/pgstore implements them over Postgres, adapters/memstore in
// memory; adapters/repotest holds the contract both pass.

// Identity is what a person's token says about how to reach them as a recipient, recorded each
// time they read or change their preferences.
type Identity struct {
	Subject string
	// Role is the role they acted in.
	Role Role
	// NotifyGrants are, for a proxy, the patients whose grants include the notifications
	// scope, with each grant's expiry; they replace the stored ones. Nil leaves the stored
	// grants alone (the caller is not a proxy).
	NotifyGrants map[string]time.Time
}

// PreferencesRepository keeps people's alert preferences, with contact points sealed at rest,
// and the proxy notification grants recipients are resolved with.
type PreferencesRepository interface {
	// OwnPreferences records who's identity and returns their preferences with contact points
	// opened (a person who never saved any gets DefaultPreferences with the version of the row
	// recording their identity).
	OwnPreferences(ctx context.Context, who Identity) (Preferences, error)
	// UpdatePreferences records who's identity, loads their preferences (contact points opened)
	// under lock, lets update change them, and stores the result with a new version and
	// update time, together with the audit records update returns, in one commit. An error from
	// update is returned and nothing is stored.
	UpdatePreferences(ctx context.Context, who Identity, update func(*Preferences) ([]outbox.Event, error)) (Preferences, error)
	// Preferences returns subject's preferences without opening contact points
	// (ChannelSetting.HasAddress says which are stored); DefaultPreferences when none are.
	Preferences(ctx context.Context, subject string) (Preferences, error)
	// PreferencesOf returns the stored preferences of those subjects that have any, without
	// opening contact points.
	PreferencesOf(ctx context.Context, subjects []string) (map[string]Preferences, error)
	// ContactPoint opens subject's contact point for ch; "" when none is stored.
	ContactPoint(ctx context.Context, subject string, ch Channel) (string, error)
	// PoolSubscribers lists the people subscribed to pool's alerts.
	PoolSubscribers(ctx context.Context, pool string) ([]string, error)
	// NotifyProxies lists the proxies whose notification grant for patient is active at at.
	NotifyProxies(ctx context.Context, patient string, at time.Time) ([]string, error)
}

// Fanout is what one source (a message event, a fired reminder) adds: deliveries, digest
// entries and reminders. A repository adds a fanout in one commit; a delivery whose
// idempotency key is already stored, and a reminder for a recipient and message that already
// has one, are skipped, so adding the same fanout twice changes nothing. Deliveries without an
// ID are given one.
type Fanout struct {
	Deliveries []Delivery
	Digests    []DigestEntry
	Reminders  []Reminder
}

// Empty reports whether f adds nothing.
func (f Fanout) Empty() bool {
	return len(f.Deliveries) == 0 && len(f.Digests) == 0 && len(f.Reminders) == 0
}

// DigestEntry folds one message into its recipient's digest for the thread and channel. Marker
// (SUPPRESSED "digested", under the message's own idempotency key) is added first; only when
// it is new (a redelivered event folds nothing twice) is the message folded into the open
// digest (still PENDING, same recipient, channel and thread): its count grows by one and it
// names the latest message. When there is no open digest, Open (PENDING, due when the digest
// window ends) starts one.
type DigestEntry struct {
	Marker Delivery
	Open   Delivery
}

// DeliveryCursor is a keyset position in the delivery log (newest first): the last delivery
// of the previous page.
type DeliveryCursor struct {
	CreatedAt time.Time
	ID        string
}

// DeliveryRepository keeps deliveries with their attempt log, and reminders.
type DeliveryRepository interface {
	// AddFanout adds f in one commit (see Fanout).
	AddFanout(ctx context.Context, f Fanout) error
	// ClaimDue claims up to limit due deliveries (PENDING or RETRYING, next attempt at or
	// before now), oldest due first: they move to SENDING with the attempt counted and a lease
	// of lease, so no other worker or replica takes them.
	ClaimDue(ctx context.Context, limit int, lease time.Duration) ([]Delivery, error)
	// Release returns a claimed delivery to PENDING, due at at, without counting the attempt
	// (quiet hours).
	Release(ctx context.Context, id string, at time.Time) error
	// Suppress marks a delivery SUPPRESSED with code.
	Suppress(ctx context.Context, id, code string) error
	// FinishAttempt records attempt a of claimed delivery id and moves it to a.Status
	// (RETRYING due at a.NextAttempt, SENT or FAILED), with audit, in one commit. It returns
	// ErrNotClaimed when the delivery is no longer claimed.
	FinishAttempt(ctx context.Context, id string, a Attempt, audit []outbox.Event) error
	// RecoverStaleClaims takes up to limit claimed deliveries whose lease ran out (their worker
	// died between claiming and recording), and for each records the attempt settle decides,
	// with its audit records, all in one commit. It returns how many it settled.
	RecoverStaleClaims(ctx context.Context, limit int, settle func(Delivery) (Attempt, []outbox.Event, error)) (int, error)
	// ListDeliveries returns up to limit deliveries matching f after after (nil: from the
	// newest), newest first, each with its attempts in order.
	ListDeliveries(ctx context.Context, f DeliveryFilter, after *DeliveryCursor, limit int) ([]Delivery, error)
	// MessageTime returns when message was written as far as this service saw it (from a
	// reminder or a delivery of reader's); ok is false when it saw nothing.
	MessageTime(ctx context.Context, reader, messageID string) (t time.Time, ok bool, err error)
	// CancelForRead cancels reader's pending reminders and suppresses their unsent deliveries
	// (PENDING, RETRYING) in thread as SuppressAlreadyRead, for messages written at or before
	// cutoff, in one commit. It returns how many of each it changed.
	CancelForRead(ctx context.Context, reader, thread string, cutoff time.Time) (reminders, deliveries int, err error)
	// FireDueReminders takes up to limit pending reminders due now, marks them fired, and adds
	// the fanout plan returns for them, in one commit. plan is given the reminders and the
	// stored preferences of their recipients (contact points not opened). It returns how many
	// fired.
	FireDueReminders(ctx context.Context, limit int, plan func([]Reminder, map[string]Preferences) (Fanout, error)) (int, error)
}

// TemplateRepository keeps administrators' overrides of the shipped templates.
type TemplateRepository interface {
	// Template returns the stored override for kind, ch and locale; ok is false when there is
	// none.
	Template(ctx context.Context, kind Kind, ch Channel, locale string) (t Template, ok bool, err error)
	// Templates returns every stored override.
	Templates(ctx context.Context) ([]Template, error)
	// UpdateTemplate loads the override for key's kind, channel and locale under lock (Version
	// 0 when there is none), lets update change its texts and author, and stores it with the
	// next version and a new update time, together with the audit records update returns, in
	// one commit.
	UpdateTemplate(ctx context.Context, key Template, update func(*Template) ([]outbox.Event, error)) (Template, error)
}

// Authorizer answers the record-level policy questions (platform/policy.Engine). It records
// every denial and every allowed PHI read itself, and refuses an allowed read it could not
// record with policy.ErrNotRecorded.
type Authorizer interface {
	Authorize(ctx context.Context, p *auth.Principal, action string, res policy.Resource, rc policy.Context) (policy.Decision, error)
}

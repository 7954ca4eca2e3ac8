package domain

import "time"

// ChangeKind is what happened to a thread, as a watcher hears of it (values match
// messagingv1.InboxChangeKind).
type ChangeKind int32

// The changes a watch reports, one per domain event messaging publishes about a thread.
const (
	ChangeThreadCreated     ChangeKind = 1
	ChangeMessageCreated    ChangeKind = 2
	ChangeMessageRead       ChangeKind = 3
	ChangeMessageRetracted  ChangeKind = 4
	ChangeThreadAssigned    ChangeKind = 5
	ChangeThreadTransferred ChangeKind = 6
	ChangeThreadClosed      ChangeKind = 7
	ChangeThreadReopened    ChangeKind = 8
)

// InboxChange is one committed change to a thread, read from the domain event that reported
// it. It holds ids only, so it may be sent to any watcher allowed to open the thread (and
// logged).
type InboxChange struct {
	// EventID is the reporting event's id (EventMeta.event_id, the Nats-Msg-Id).
	EventID  string
	ThreadID string
	Kind     ChangeKind
	// MessageID is the message concerned, for message changes; empty otherwise.
	MessageID string
	// OnlyFor, when set, is the one subject the change concerns: a read mark moves only the
	// reader's own unread count, so nobody else hears of it.
	OnlyFor string
	// FromPoolID, for a transfer, is the pool the thread left: its members are told too, so a
	// queue they show drops the thread at once instead of keeping it until its next re-read.
	FromPoolID string
	OccurredAt time.Time
}

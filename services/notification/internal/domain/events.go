package domain

import (
	"time"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
)

// SensitivityAdolescentConfidential is the sensitivity (common.v1.Sensitivity) of threads a
// proxy never hears of.
const SensitivityAdolescentConfidential = int16(commonv1.Sensitivity_SENSITIVITY_ADOLESCENT_CONFIDENTIAL)

// MessageCreated is what recipient resolution reads from a messaging MessageCreated event:
// ids, the recipients and the sensitivity. No content of the message reaches this service.
type MessageCreated struct {
	EventID       string
	ThreadID      string
	MessageID     string
	PoolID        string
	PatientID     string
	SenderSubject string
	Recipients    []string
	Sensitivity   int16
	// AutoReply marks the pool's automatic reply, which is never alerted on its own.
	AutoReply bool
	// OccurredAt is when the message was written; zero when the event does not say.
	OccurredAt time.Time
}

// Check returns ErrMalformedEvent for an event that can never be processed (missing or
// malformed ids). It is pure: the consumer runs it before any I/O.
func (ev MessageCreated) Check() error {
	if !IsUUID(ev.EventID) || !IsUUID(ev.ThreadID) || !IsUUID(ev.MessageID) || (ev.PoolID != "" && !IsPoolID(ev.PoolID)) {
		return ErrMalformedEvent
	}
	return nil
}

// MessageRead is what a messaging MessageRead event says: reader read thread up to a message.
type MessageRead struct {
	EventID       string
	ThreadID      string
	UpToMessageID string
	ReaderSubject string
	// UnreadCount is what the reader has left unread in the thread; 0 means all read.
	UnreadCount int
	// OccurredAt is when they read.
	OccurredAt time.Time
}

// Check returns ErrMalformedEvent for an event that can never be processed.
func (ev MessageRead) Check() error {
	if !IsUUID(ev.EventID) || !IsUUID(ev.ThreadID) || ev.ReaderSubject == "" {
		return ErrMalformedEvent
	}
	return nil
}

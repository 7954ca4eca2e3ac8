package domain

import "time"

// Delivery is one alert to one person on one channel. It names the message by id only: no
// address, no content.
type Delivery struct {
	ID               string
	IdempotencyKey   string
	EventID          string
	RecipientSubject string
	Channel          Channel
	Kind             Kind
	MessageID        string
	ThreadID         string
	PoolID           string
	PatientID        string
	Sensitivity      int16
	MessageTime      time.Time
	Count            int
	Status           Status
	SuppressionCode  string
	Attempts         int
	NextAttemptAt    time.Time
	CreatedAt        time.Time
	UpdatedAt        time.Time
	Log              []Attempt
	// TraceParent is the W3C trace context of the event that asked for the delivery ("" when
	// untraced): its send continues that trace.
	TraceParent string
}

// Attempt is one try at sending a delivery.
type Attempt struct {
	Attempt     int
	Status      Status
	StartTime   time.Time
	FinishTime  time.Time
	ErrorCode   string
	NextAttempt time.Time
}

// Reminder is a pending reminder about a message a person has not read.
type Reminder struct {
	ID               string
	RecipientSubject string
	ThreadID         string
	MessageID        string
	PoolID           string
	PatientID        string
	Sensitivity      int16
	MessageTime      time.Time
	DueAt            time.Time
}

// DeliveryFilter selects deliveries for the delivery log.
type DeliveryFilter struct {
	Recipient string
	Channel   Channel
	Status    Status
	MessageID string
	Start     time.Time
	End       time.Time
}

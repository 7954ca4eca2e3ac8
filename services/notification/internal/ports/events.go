package ports

import (
	"context"
	"errors"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/internal/platform/natsx"
	"github.com/securemsg/securemsg/services/notification/internal/app"
	"github.com/securemsg/securemsg/services/notification/internal/domain"
)

// Events handles message events from JetStream (natsx.Consume): it decodes the payload by
// subject into a domain value and hands it to the use case; the message is acknowledged only
// after the use case's commit.
type Events struct {
	app *app.Service
	// eventsSubject is the topology's events prefix ("securemsg.events").
	eventsSubject string
}

// NewEvents returns the handler of message events published under eventsSubject.
func NewEvents(svc *app.Service, eventsSubject string) *Events {
	return &Events{app: svc, eventsSubject: eventsSubject}
}

// FilterSubjects are the subjects the consumer reads: message events only. Handle still
// acknowledges any other event it is given without acting on it.
func (e *Events) FilterSubjects() []string { return []string{e.eventsSubject + ".message.>"} }

// Handle implements natsx.Handler.
func (e *Events) Handle(ctx context.Context, msg jetstream.Msg) error {
	ev, err := decodeEvent(e.eventsSubject, msg.Subject(), msg.Data())
	if err != nil {
		return natsx.Permanent(err)
	}
	switch ev := ev.(type) {
	case domain.MessageCreated:
		err = e.app.MessageCreated(ctx, ev)
	case domain.MessageRead:
		err = e.app.MessageRead(ctx, ev)
	default:
		return nil
	}
	if errors.Is(err, domain.ErrMalformedEvent) {
		return natsx.Permanent(err)
	}
	return err
}

// decodeEvent is the pure decode-and-validate step of Handle: it picks the event type by
// subject, decodes data into a domain.MessageCreated or domain.MessageRead and checks it. It
// returns (nil, nil) for a subject it does not act on, and an error (never retried) for a
// payload that is undecodable or malformed; the errors name the event type only, never payload
// values.
func decodeEvent(eventsSubject, subject string, data []byte) (any, error) {
	rest := strings.TrimPrefix(subject, eventsSubject+".")
	switch {
	case strings.HasPrefix(rest, "message.created."):
		pb := &eventsv1.MessageCreated{}
		if err := proto.Unmarshal(data, pb); err != nil {
			return nil, errors.New("undecodable MessageCreated")
		}
		ev, err := messageCreated(pb)
		if err == nil {
			err = ev.Check()
		}
		if err != nil {
			return nil, err
		}
		return ev, nil
	case strings.HasPrefix(rest, "message.read."):
		pb := &eventsv1.MessageRead{}
		if err := proto.Unmarshal(data, pb); err != nil {
			return nil, errors.New("undecodable MessageRead")
		}
		ev := messageRead(pb)
		if err := ev.Check(); err != nil {
			return nil, err
		}
		return ev, nil
	}
	return nil, nil
}

// messageCreated is pb as a domain value. A sensitivity no int16 holds is not one the suite
// defines: the event is malformed (never alerted, rather than alerted to the wrong people).
func messageCreated(pb *eventsv1.MessageCreated) (domain.MessageCreated, error) {
	sensitivity := code16(pb.GetSensitivity())
	if sensitivity == noCode {
		return domain.MessageCreated{}, domain.ErrMalformedEvent
	}
	ev := domain.MessageCreated{
		EventID: pb.GetMeta().GetEventId(), ThreadID: pb.GetThreadId(), MessageID: pb.GetMessageId(),
		PoolID: pb.GetPoolId(), PatientID: pb.GetPatientId(), SenderSubject: pb.GetSenderSubject(),
		Recipients: pb.GetRecipientSubjects(), Sensitivity: sensitivity, AutoReply: pb.GetAutoReply(),
	}
	if at := pb.GetMeta().GetOccurredAt(); at != nil {
		ev.OccurredAt = at.AsTime()
	}
	return ev, nil
}

func messageRead(pb *eventsv1.MessageRead) domain.MessageRead {
	return domain.MessageRead{
		EventID: pb.GetMeta().GetEventId(), ThreadID: pb.GetThreadId(), UpToMessageID: pb.GetUpToMessageId(),
		ReaderSubject: pb.GetReaderSubject(), UnreadCount: int(pb.GetUnreadCount()),
		// A read event without a time cuts off at the epoch, as the proto's zero time does.
		OccurredAt: pb.GetMeta().GetOccurredAt().AsTime(),
	}
}

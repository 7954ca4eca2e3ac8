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
)

// Events handles message events from JetStream (natsx.Consume): it decodes the payload by
// subject and hands it to the use case; the message is acknowledged only after the use case's
// transaction committed.
type Events struct {
	App *app.Service
	// EventsSubject is the topology's events prefix ("securemsg.events").
	EventsSubject string
}

// FilterSubjects are the subjects the consumer reads: message events only. Handle still
// acknowledges any other event it is given without acting on it.
func (e Events) FilterSubjects() []string { return []string{e.EventsSubject + ".message.>"} }

// Handle implements natsx.Handler.
func (e Events) Handle(ctx context.Context, msg jetstream.Msg) error {
	ev, err := decodeEvent(e.EventsSubject, msg.Subject(), msg.Data())
	if err != nil {
		return natsx.Permanent(err)
	}
	switch ev := ev.(type) {
	case *eventsv1.MessageCreated:
		err = e.App.MessageCreated(ctx, ev)
	case *eventsv1.MessageRead:
		err = e.App.MessageRead(ctx, ev)
	default:
		return nil
	}
	if errors.Is(err, app.ErrMalformedEvent) {
		return natsx.Permanent(err)
	}
	return err
}

// decodeEvent is the pure decode-and-validate step of Handle: it picks the event type by
// subject, decodes data and checks it. It returns (nil, nil) for a subject it does not act on,
// and an error (never retried) for a payload that is undecodable or malformed; the errors name
// the event type only, never payload values.
func decodeEvent(eventsSubject, subject string, data []byte) (proto.Message, error) {
	rest := strings.TrimPrefix(subject, eventsSubject+".")
	switch {
	case strings.HasPrefix(rest, "message.created."):
		ev := &eventsv1.MessageCreated{}
		if err := proto.Unmarshal(data, ev); err != nil {
			return nil, errors.New("undecodable MessageCreated")
		}
		if err := app.CheckMessageCreated(ev); err != nil {
			return nil, err
		}
		return ev, nil
	case strings.HasPrefix(rest, "message.read."):
		ev := &eventsv1.MessageRead{}
		if err := proto.Unmarshal(data, ev); err != nil {
			return nil, errors.New("undecodable MessageRead")
		}
		if err := app.CheckMessageRead(ev); err != nil {
			return nil, err
		}
		return ev, nil
	}
	return nil, nil
}

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
	rest := strings.TrimPrefix(msg.Subject(), e.EventsSubject+".")
	var err error
	switch {
	case strings.HasPrefix(rest, "message.created."):
		ev := &eventsv1.MessageCreated{}
		if perr := proto.Unmarshal(msg.Data(), ev); perr != nil {
			return natsx.Permanent(errors.New("undecodable MessageCreated"))
		}
		err = e.App.MessageCreated(ctx, ev)
	case strings.HasPrefix(rest, "message.read."):
		ev := &eventsv1.MessageRead{}
		if perr := proto.Unmarshal(msg.Data(), ev); perr != nil {
			return natsx.Permanent(errors.New("undecodable MessageRead"))
		}
		err = e.App.MessageRead(ctx, ev)
	default:
		return nil
	}
	if errors.Is(err, app.ErrMalformedEvent) {
		return natsx.Permanent(err)
	}
	return err
}

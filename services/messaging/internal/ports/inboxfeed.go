package ports

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/internal/platform/backoff"
	"github.com/securemsg/securemsg/services/messaging/internal/app"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// InboxFeed follows the thread and message events messaging publishes (through its outbox) and
// hands each, as a domain.InboxChange, to the replica's open watches. Every replica runs its
// own feed on an ordered consumer — ephemeral, unacknowledged, delivering only what is
// published after it starts — because every replica must see every event for the watchers
// connected to it: a shared durable consumer would split the events between replicas.
type InboxFeed struct {
	JS jetstream.JetStream
	// Stream and Subject are the topology's events stream and subject prefix.
	Stream, Subject string
	Service         *app.Service
	Logger          *slog.Logger
}

// maxFeedBatch bounds the changes handed to the service at once (one thread load each). It is
// no larger than a watch's default buffer (app.WatchSettings.Buffer), so a watcher that keeps
// up between batches never overflows because a burst arrived as one.
const maxFeedBatch = 64

// feedRetry spaces out attempts to (re)create the consumer while NATS is unreachable.
var feedRetry = backoff.Exponential{Floor: 200 * time.Millisecond, Ceiling: 10 * time.Second, Jitter: 0.2}

// Run follows the stream until ctx ends. The ordered consumer recovers from NATS restarts on
// its own; should it give up, the feed starts a new one where the old one stopped (after the
// last stream sequence it handled), so no change is skipped.
//
// The consumer's callback only decodes and queues; one goroutine hands the service whatever
// has queued up, in order, as one batch, so a burst of events costs one thread load per batch
// instead of one per event. The queue is bounded: when it is full the callback waits, and the
// consumer's own bounded buffer holds the rest.
func (f *InboxFeed) Run(ctx context.Context) error {
	queue := make(chan domain.InboxChange, maxFeedBatch)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.deliver(ctx, queue)
	}()
	defer func() { <-done }()
	var last uint64
	for attempt := 1; ; attempt++ {
		err := f.follow(ctx, &last, queue)
		if ctx.Err() != nil {
			return nil
		}
		f.Logger.WarnContext(ctx, "inbox feed interrupted; following again", slog.String("error", err.Error()), slog.Uint64("after_stream_seq", last))
		if last > 0 {
			attempt = 1 // it had been running: retry promptly
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(feedRetry.Delay(attempt)):
		}
	}
}

// deliver hands queued changes to the service in batches until ctx ends.
func (f *InboxFeed) deliver(ctx context.Context, queue <-chan domain.InboxChange) {
	batch := make([]domain.InboxChange, 0, maxFeedBatch)
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-queue:
			batch = append(batch[:0], c)
		}
	more:
		for len(batch) < maxFeedBatch {
			select {
			case c := <-queue:
				batch = append(batch, c)
			default:
				break more
			}
		}
		f.Service.DeliverChanges(ctx, batch)
	}
}

// follow consumes from after stream sequence *last (from new messages when it is 0) until ctx
// ends or the consumer stops, updating *last as it goes and queueing each change.
func (f *InboxFeed) follow(ctx context.Context, last *uint64, queue chan<- domain.InboxChange) error {
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{f.Subject + ".message.>", f.Subject + ".thread.>"},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	}
	if *last > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, *last+1
	}
	cons, err := f.JS.OrderedConsumer(ctx, f.Stream, cfg)
	if err != nil {
		return fmt.Errorf("ordered consumer on %s: %w", f.Stream, err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		if md, err := msg.Metadata(); err == nil {
			*last = md.Sequence.Stream
		}
		c, ok, err := decodeInboxChange(f.Subject, msg.Subject(), msg.Data())
		if err != nil {
			// Events carry ids only, but the payload is not logged anyway: the subject says
			// which producer to look at.
			f.Logger.WarnContext(ctx, "inbox feed: undecodable event skipped", slog.String("subject", msg.Subject()), slog.String("error", err.Error()))
			return
		}
		if ok {
			select {
			case queue <- c:
			case <-ctx.Done():
			}
		}
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		// Missed heartbeats while NATS restarts land here; the ordered consumer resets itself.
		f.Logger.DebugContext(ctx, "inbox feed: consume error", slog.String("error", err.Error()))
	}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", f.Stream, err)
	}
	f.Service.InboxFeedLive()
	select {
	case <-ctx.Done():
		cc.Stop()
		<-cc.Closed()
		return nil
	case <-cc.Closed():
		return errors.New("ordered consumer stopped")
	}
}

// inboxEvent is what every thread and message event has.
type inboxEvent interface {
	proto.Message
	GetMeta() *eventsv1.EventMeta
	GetThreadId() string
}

// inboxEvents maps an event's kind (its subject after the prefix, without the pool) to the
// change it reports and how to read its message id, for a read mark its one reader, and for a
// transfer the pool the thread left.
var inboxEvents = map[string]struct {
	kind     domain.ChangeKind
	decode   func([]byte) (inboxEvent, error)
	message  func(inboxEvent) string
	onlyFor  func(inboxEvent) string
	fromPool func(inboxEvent) string
}{
	"thread.created": {kind: domain.ChangeThreadCreated, decode: decodeAs[*eventsv1.ThreadCreated],
		message: func(e inboxEvent) string { return e.(*eventsv1.ThreadCreated).GetFirstMessageId() }},
	"message.created": {kind: domain.ChangeMessageCreated, decode: decodeAs[*eventsv1.MessageCreated],
		message: func(e inboxEvent) string { return e.(*eventsv1.MessageCreated).GetMessageId() }},
	"message.read": {kind: domain.ChangeMessageRead, decode: decodeAs[*eventsv1.MessageRead],
		message: func(e inboxEvent) string { return e.(*eventsv1.MessageRead).GetUpToMessageId() },
		onlyFor: func(e inboxEvent) string { return e.(*eventsv1.MessageRead).GetReaderSubject() }},
	"message.retracted": {kind: domain.ChangeMessageRetracted, decode: decodeAs[*eventsv1.MessageRetracted],
		message: func(e inboxEvent) string { return e.(*eventsv1.MessageRetracted).GetMessageId() }},
	"thread.assigned": {kind: domain.ChangeThreadAssigned, decode: decodeAs[*eventsv1.ThreadAssigned]},
	"thread.transferred": {kind: domain.ChangeThreadTransferred, decode: decodeAs[*eventsv1.ThreadTransferred],
		fromPool: func(e inboxEvent) string { return e.(*eventsv1.ThreadTransferred).GetFromPoolId() }},
	"thread.closed":   {kind: domain.ChangeThreadClosed, decode: decodeAs[*eventsv1.ThreadClosed]},
	"thread.reopened": {kind: domain.ChangeThreadReopened, decode: decodeAs[*eventsv1.ThreadReopened]},
}

// decodeAs decodes data as the event type E.
func decodeAs[E interface {
	inboxEvent
	*T
}, T any](data []byte) (inboxEvent, error) {
	e := E(new(T))
	if err := proto.Unmarshal(data, e); err != nil {
		return nil, err
	}
	return e, nil
}

// decodeInboxChange reads the change an event on subject reports; ok is false for events
// that report no thread change (an unknown kind, say from a newer producer).
func decodeInboxChange(prefix, subject string, data []byte) (c domain.InboxChange, ok bool, err error) {
	rest, found := strings.CutPrefix(subject, prefix+".")
	if !found {
		return c, false, nil
	}
	parts := strings.SplitN(rest, ".", 3)
	if len(parts) < 2 {
		return c, false, nil
	}
	spec, known := inboxEvents[parts[0]+"."+parts[1]]
	if !known {
		return c, false, nil
	}
	e, err := spec.decode(data)
	if err != nil {
		return c, false, fmt.Errorf("decode %s: %w", parts[0]+"."+parts[1], err)
	}
	if e.GetThreadId() == "" || e.GetMeta().GetEventId() == "" {
		return c, false, errors.New("event without thread or event id")
	}
	c = domain.InboxChange{EventID: e.GetMeta().GetEventId(), ThreadID: e.GetThreadId(), Kind: spec.kind}
	if at := e.GetMeta().GetOccurredAt(); at != nil {
		c.OccurredAt = at.AsTime()
	}
	if spec.message != nil {
		c.MessageID = spec.message(e)
	}
	if spec.fromPool != nil {
		c.FromPoolID = spec.fromPool(e)
	}
	if spec.onlyFor != nil {
		if c.OnlyFor = spec.onlyFor(e); c.OnlyFor == "" {
			return c, false, errors.New("read mark without a reader")
		}
	}
	return c, true, nil
}

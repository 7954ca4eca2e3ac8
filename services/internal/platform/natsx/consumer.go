package natsx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Handler processes one message. Returning nil acknowledges it; returning an error asks for
// redelivery (after the configured backoff) until MaxDeliver is reached; returning an error
// wrapped with Permanent terminates it (no redelivery). Handlers must be idempotent: JetStream
// delivers at least once, so the same event can arrive twice (e.g. after an ack was lost).
type Handler func(ctx context.Context, msg jetstream.Msg) error

// permanentError marks an error that redelivery cannot fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return "permanent: " + e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent wraps err so that the consumer terminates the message instead of asking for
// redelivery: use it for messages that can never be processed (undecodable payload, unknown
// version). The message stays in the stream for inspection.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err: err}
}

// IsPermanent reports whether err was wrapped with Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// ConsumerConfig describes a durable pull consumer.
type ConsumerConfig struct {
	// Stream the consumer reads from. Required.
	Stream string
	// Durable is the consumer's name; replicas of a service share it and so share the work.
	Durable string
	// FilterSubjects restricts the subjects delivered (empty: the whole stream).
	FilterSubjects []string
	// AckWait is how long the server waits for an ack before redelivering (default 30s). Make
	// it longer than the slowest handler call.
	AckWait time.Duration
	// MaxDeliver caps deliveries of one message (default 10); after that JetStream stops
	// redelivering it and publishes a MAX_DELIVERIES advisory.
	MaxDeliver int
	// BackOff are the delays before redelivery after a failed handler call, per attempt; the
	// last one repeats (default 1s, 5s, 30s, 2m). Also applied by the server to messages whose
	// ack wait expired.
	BackOff []time.Duration
	// MaxAckPending bounds messages in flight across all replicas (default 256).
	MaxAckPending int
	// DeliverPolicy for a new consumer (default: all).
	DeliverPolicy jetstream.DeliverPolicy
	// BatchSize is how many messages one pull asks for (default 64).
	BatchSize int
	// Logger receives handler failures (error text only); nil means slog.Default().
	Logger *slog.Logger
}

// DefaultBackOff is the redelivery schedule used when ConsumerConfig.BackOff is empty.
var DefaultBackOff = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute}

func (c ConsumerConfig) jetstream() (jetstream.ConsumerConfig, error) {
	if c.Stream == "" || c.Durable == "" {
		return jetstream.ConsumerConfig{}, errors.New("natsx: consumer needs Stream and Durable")
	}
	backoff := c.BackOff
	if len(backoff) == 0 {
		backoff = DefaultBackOff
	}
	maxDeliver := orDefault(c.MaxDeliver, 10)
	// The server insists on MaxDeliver > len(BackOff); trim the schedule rather than fail.
	if maxDeliver > 0 && len(backoff) >= maxDeliver {
		backoff = backoff[:maxDeliver-1]
	}
	cfg := jetstream.ConsumerConfig{
		Durable:        c.Durable,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        orDefault(c.AckWait, 30*time.Second),
		MaxDeliver:     maxDeliver,
		BackOff:        backoff,
		MaxAckPending:  orDefault(c.MaxAckPending, 256),
		DeliverPolicy:  c.DeliverPolicy,
		FilterSubjects: c.FilterSubjects,
	}
	if len(c.FilterSubjects) == 1 {
		// One filter goes in FilterSubject, which every JetStream server version understands.
		cfg.FilterSubject, cfg.FilterSubjects = c.FilterSubjects[0], nil
	}
	if len(cfg.BackOff) == 0 {
		cfg.BackOff = nil
	}
	return cfg, nil
}

// Consume creates or updates the durable consumer and feeds its messages to h, one at a time,
// until ctx is cancelled; then it stops pulling, lets the message in hand finish and returns
// nil. A message is acknowledged (and the server's confirmation awaited) only after h returned
// nil; on error it is negatively acknowledged with the backoff delay for its delivery count.
func Consume(ctx context.Context, js jetstream.JetStream, cfg ConsumerConfig, h Handler) error {
	jcfg, err := cfg.jetstream()
	if err != nil {
		return err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "nats-consumer", "stream", cfg.Stream, "consumer", cfg.Durable)
	cons, err := js.CreateOrUpdateConsumer(ctx, cfg.Stream, jcfg)
	if err != nil {
		return fmt.Errorf("natsx: consumer %s on %s: %w", cfg.Durable, cfg.Stream, err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		msgCtx, span := StartProcessSpan(ctx, msg, cfg.Stream, cfg.Durable)
		EndProcessSpan(span, handle(msgCtx, log, jcfg.BackOff, msg, h))
	},
		jetstream.PullMaxMessages(orDefault(cfg.BatchSize, 64)),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			// Missed heartbeats while NATS restarts land here; the pull resumes by itself.
			log.Warn("consume error", "error", err)
		}),
	)
	if err != nil {
		return fmt.Errorf("natsx: consume %s on %s: %w", cfg.Durable, cfg.Stream, err)
	}
	<-ctx.Done()
	// Stop, not Drain: buffered but unhandled messages are simply redelivered later (they were
	// never acked), and a shutdown should not wait for a whole batch of handler calls.
	cc.Stop()
	<-cc.Closed()
	return nil
}

// handle runs h on msg and acknowledges, terminates or redelivers it; it returns h's error.
func handle(ctx context.Context, log *slog.Logger, backoff []time.Duration, msg jetstream.Msg, h Handler) error {
	var delivered uint64
	var seq uint64
	if md, err := msg.Metadata(); err == nil {
		delivered, seq = md.NumDelivered, md.Sequence.Stream
	}
	err := safeCall(ctx, h, msg)
	switch {
	case err == nil:
		// DoubleAck waits for the server's confirmation, so "acked" really means the server
		// will not redeliver. If the confirmation is lost, the message comes back and the
		// idempotent handler sees it again.
		ackCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if aerr := msg.DoubleAck(ackCtx); aerr != nil {
			log.Warn("ack failed; the message will be redelivered", "subject", msg.Subject(), "stream_seq", seq, "error", aerr)
		}
	case IsPermanent(err):
		log.Error("handler rejected message permanently; terminating it", "subject", msg.Subject(), "stream_seq", seq, "delivered", delivered, "error", err)
		if terr := msg.Term(); terr != nil {
			log.Warn("term failed", "subject", msg.Subject(), "stream_seq", seq, "error", terr)
		}
	default:
		delay := redeliveryDelay(backoff, delivered)
		log.Warn("handler failed; message will be redelivered", "subject", msg.Subject(), "stream_seq", seq, "delivered", delivered, "retry_in", delay, "error", err)
		if nerr := msg.NakWithDelay(delay); nerr != nil {
			log.Warn("nak failed; the message will be redelivered after ack wait", "subject", msg.Subject(), "stream_seq", seq, "error", nerr)
		}
	}
	return err
}

// safeCall turns a handler panic into an error so one bad message cannot kill the consumer.
func safeCall(ctx context.Context, h Handler, msg jetstream.Msg) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked (%T); panic value not logged, it may hold message data", r)
		}
	}()
	return h(ctx, msg)
}

// redeliveryDelay picks the backoff for the n-th delivery (1-based); the last entry repeats.
func redeliveryDelay(backoff []time.Duration, delivered uint64) time.Duration {
	if len(backoff) == 0 {
		return 0
	}
	last := len(backoff) - 1
	switch {
	case delivered <= 1:
		return backoff[0]
	case delivered > uint64(last)+1: //nolint:gosec // G115: last is a slice index, never negative
		return backoff[last]
	}
	return backoff[delivered-1]
}

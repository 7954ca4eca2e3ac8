// Package natsx connects the services to NATS and JetStream: one connection per process that
// reconnects forever with capped exponential backoff, the suite's streams declared in code
// (created or updated at start-up), and a durable pull-consumer loop that acknowledges a
// message only after its handler succeeded.
//
// Nothing here logs message data or headers: connection events carry the server URL and the
// error only, consumer events carry stream, consumer, subject, sequence and delivery count.
package natsx

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/securemsg/securemsg/services/internal/platform/backoff"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ConnConfig says how to reach NATS.
type ConnConfig struct {
	// URL is one or more comma-separated nats:// or tls:// URLs.
	URL string
	// Name identifies the client in the server's monitoring (e.g. "securemsg-messaging").
	Name string
	// ReconnectWait is the first reconnect delay (default 250ms); it doubles per failed attempt
	// up to MaxReconnectWait (default 10s), with up to 20 % jitter so replicas do not stampede.
	ReconnectWait    time.Duration
	MaxReconnectWait time.Duration
	// ConnectTimeout bounds each dial (default 5s).
	ConnectTimeout time.Duration
	// WaitForServer makes Connect succeed even when no server answers yet, retrying in the
	// background; publishes and requests fail until the first connection is up. Services set
	// it so that start-up order does not matter.
	WaitForServer bool
	// Options are appended last (TLS, credentials, …) and may override the above.
	Options []nats.Option
	// Logger receives connection events; nil means slog.Default().
	Logger *slog.Logger
}

// Connect opens a NATS connection that never gives up reconnecting. Close or Drain it on
// shutdown.
func Connect(cfg ConnConfig) (*nats.Conn, error) {
	if cfg.URL == "" {
		return nil, errors.New("natsx: URL is required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "nats", "client", cfg.Name)
	first := orDefault(cfg.ReconnectWait, 250*time.Millisecond)
	ceiling := orDefault(cfg.MaxReconnectWait, 10*time.Second)
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.Timeout(orDefault(cfg.ConnectTimeout, 5*time.Second)),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(func(attempts int) time.Duration {
			return ReconnectDelay(attempts, first, ceiling)
		}),
		nats.RetryOnFailedConnect(cfg.WaitForServer),
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.Info("nats connected", "server", nc.ConnectedUrlRedacted())
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			if err := nc.LastError(); err != nil {
				log.Warn("nats connection closed", "error", err)
				return
			}
			log.Info("nats connection closed")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			attrs := []any{"error", err}
			if sub != nil {
				attrs = append(attrs, "subscription", sub.Subject)
			}
			log.Error("nats async error", attrs...)
		}),
	}
	opts = append(opts, cfg.Options...)
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("natsx: connect: %w", err)
	}
	return nc, nil
}

// JetStream wraps nc in the jetstream API (github.com/nats-io/nats.go/jetstream).
func JetStream(nc *nats.Conn, opts ...jetstream.JetStreamOpt) (jetstream.JetStream, error) {
	js, err := jetstream.New(nc, opts...)
	if err != nil {
		return nil, fmt.Errorf("natsx: jetstream: %w", err)
	}
	return js, nil
}

// ReconnectDelay is the capped exponential backoff used between reconnect attempts:
// first·2^(attempts-1), at most ceiling, plus up to 20 % jitter.
func ReconnectDelay(attempts int, first, ceiling time.Duration) time.Duration {
	return backoff.Exponential{Floor: first, Ceiling: ceiling, Jitter: 0.2}.Delay(attempts)
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Package server wires the notification service by hand, in one place: the keyring and
// sealer over Vault Transit, the Postgres store, the use cases, the gRPC handlers, the durable
// JetStream consumer of message events and the dispatcher. main and the end-to-end tests both
// call Register, so the tests run exactly the production wiring.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	notificationv1 "github.com/securemsg/securemsg/gen/securemsg/notification/v1"
	"github.com/securemsg/securemsg/services/internal/platform/daemon"
	"github.com/securemsg/securemsg/services/internal/platform/keys"
	"github.com/securemsg/securemsg/services/internal/platform/natsx"
	"github.com/securemsg/securemsg/services/notification/internal/adapters/pgstore"
	"github.com/securemsg/securemsg/services/notification/internal/adapters/sealer"
	"github.com/securemsg/securemsg/services/notification/internal/app"
	"github.com/securemsg/securemsg/services/notification/internal/domain"
	"github.com/securemsg/securemsg/services/notification/internal/ports"
	"github.com/securemsg/securemsg/services/notification/templates"
)

// DefaultTransitKey is the Transit key that wraps the per-person DEKs.
const DefaultTransitKey = "securemsg-notification"

// Options are the service's own settings (beyond daemon.Base).
type Options struct {
	// Vault reaches Transit; TransitKey names the key (created at start if missing).
	Vault      keys.Config
	TransitKey string
	// Senders by channel (see smtpsender, httpsender).
	Senders          map[domain.Channel]domain.Sender
	OrganisationName string
	PortalLink       string
	Retry            domain.RetryPolicy
	Workers          int
	PollInterval     time.Duration
	Lease            time.Duration
	SendTimeout      time.Duration
	// Consumer is the durable consumer name (default "notification"); replicas share it.
	Consumer string
	// AckWait for the consumer (default 30s).
	AckWait time.Duration
}

// Register builds the service on proc: gRPC handlers, the event consumer and the dispatcher
// as background work. It returns the use-case service (tests poke it directly).
func Register(ctx context.Context, proc *daemon.Process, o Options) (*app.Service, error) {
	if o.TransitKey == "" {
		o.TransitKey = DefaultTransitKey
	}
	if o.Consumer == "" {
		o.Consumer = "notification"
	}
	if o.OrganisationName == "" || o.PortalLink == "" {
		return nil, errors.New("notification: organisation name and portal link are required")
	}
	defaults, err := templates.Defaults()
	if err != nil {
		return nil, err
	}
	transit, err := keys.OpenTransit(ctx, o.Vault, o.TransitKey)
	if err != nil {
		return nil, fmt.Errorf("notification: %w", err)
	}
	keyring, err := keys.NewKeyring(transit, keys.KeyringOptions{})
	if err != nil {
		return nil, err
	}
	log := proc.Logger.With(slog.String("component", "notification"))
	svc := app.New(app.Deps{
		Store:            pgstore.New(proc.Pool, sealer.New(keyring, o.TransitKey)),
		Audit:            proc.Audit,
		Policy:           proc.Policy,
		Senders:          o.Senders,
		Defaults:         defaults,
		OrganisationName: o.OrganisationName,
		PortalLink:       o.PortalLink,
		Retry:            o.Retry,
		Workers:          o.Workers,
		Lease:            o.Lease,
		SendTimeout:      o.SendTimeout,
		PollInterval:     o.PollInterval,
		Logger:           log,
	})
	notificationv1.RegisterNotificationServiceServer(proc.Server.GRPC(), &ports.GRPC{App: svc})
	events := ports.Events{App: svc, EventsSubject: proc.Topology().EventsSubject}
	proc.Go(func(ctx context.Context) error {
		return natsx.Consume(ctx, proc.JS, natsx.ConsumerConfig{
			Stream:         proc.Topology().EventsStream,
			Durable:        o.Consumer,
			FilterSubjects: events.FilterSubjects(),
			AckWait:        o.AckWait,
			BackOff:        []time.Duration{200 * time.Millisecond, time.Second, 5 * time.Second, 30 * time.Second},
			MaxDeliver:     1000, // ~8 hours at the last backoff: keep retrying while Postgres or Vault is down
			Logger:         log,
		}, events.Handle)
	})
	proc.Go(svc.RunDispatcher)
	return svc, nil
}

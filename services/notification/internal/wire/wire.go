// Package wire builds the notification service from its configuration, by hand and in one
// place: the Transit client, the DEK keyring and contact-point sealer, the Postgres store, the
// channel senders, the use cases, the gRPC handler, the durable JetStream consumer of message
// events and the dispatcher, on top of a started daemon.Process. main and the wire tests both
// call it, so the tests run exactly the production wiring.
package wire

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	notificationv1 "github.com/securemsg/securemsg/gen/securemsg/notification/v1"
	"github.com/securemsg/securemsg/services/internal/platform/daemon"
	"github.com/securemsg/securemsg/services/internal/platform/keys"
	"github.com/securemsg/securemsg/services/internal/platform/natsx"
	"github.com/securemsg/securemsg/services/notification/internal/adapters/httpsender"
	"github.com/securemsg/securemsg/services/notification/internal/adapters/pgstore"
	"github.com/securemsg/securemsg/services/notification/internal/adapters/sealer"
	"github.com/securemsg/securemsg/services/notification/internal/adapters/smtpsender"
	"github.com/securemsg/securemsg/services/notification/internal/app"
	"github.com/securemsg/securemsg/services/notification/internal/domain"
	"github.com/securemsg/securemsg/services/notification/internal/ports"
	"github.com/securemsg/securemsg/services/notification/migrations"
	"github.com/securemsg/securemsg/services/notification/templates"
)

// Consumer is the durable JetStream consumer of message events; replicas share it.
const Consumer = "notification"

// Spec is the daemon spec of the notification service.
func Spec() daemon.Spec {
	return daemon.Spec{Name: "notification", Schema: "notification", Component: commonv1.Component_COMPONENT_NOTIFICATION, Migrations: migrations.FS}
}

// Deps are the service's outside collaborators, built from configuration by Build or by tests.
type Deps struct {
	// Transit wraps the per-person DEKs under Settings.TransitKey.
	Transit *keys.Transit
	// Senders by channel (see smtpsender, httpsender); a channel without one dead-letters.
	Senders map[domain.Channel]domain.Sender
}

// Build connects to Vault (ensuring the service's Transit key exists) and builds the channel
// senders, then registers the service on proc.
func Build(ctx context.Context, cfg Config, proc *daemon.Process) (*app.Service, error) {
	s := cfg.Notification
	senders, err := buildSenders(s)
	if err != nil {
		return nil, err
	}
	transit, err := keys.OpenTransit(ctx, keys.ConfigFrom(cfg.Vault), s.TransitKey)
	if err != nil {
		return nil, fmt.Errorf("notification: %w", err)
	}
	return Register(proc, s, Deps{Transit: transit, Senders: senders})
}

// Register builds the store, the use cases and the ports over proc and deps, registers the
// gRPC handler and adds the event consumer and the dispatcher as background work. It returns
// the use-case service.
func Register(proc *daemon.Process, s Settings, deps Deps) (*app.Service, error) {
	defaults, err := templates.Defaults()
	if err != nil {
		return nil, err
	}
	keyring, err := keys.NewKeyring(deps.Transit, keys.KeyringOptions{Registerer: proc.Server.MetricsRegistry()})
	if err != nil {
		return nil, err
	}
	log := proc.Logger.With(slog.String("component", "notification"))
	store := pgstore.New(proc.Pool, sealer.New(keyring, s.TransitKey))
	svc, err := app.New(app.Config{
		OrganisationName: s.OrganisationName,
		PortalLink:       s.PortalLink,
		DefaultTemplates: defaults,
		Retry:            domain.RetryPolicy{Base: s.RetryBase, Max: s.RetryMax, MaxAttempts: s.MaxAttempts},
		Workers:          s.Workers,
		Lease:            s.ClaimLease,
		SendTimeout:      s.SendTimeout,
		PollInterval:     s.PollInterval,
	}, app.Deps{
		Preferences: store, Deliveries: store, Templates: store,
		Senders: deps.Senders, Policy: proc.Policy, Audit: proc.Audit, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	notificationv1.RegisterNotificationServiceServer(proc.Server.GRPC(), ports.NewGRPC(svc))
	events := ports.NewEvents(svc, proc.Topology().EventsSubject)
	consumer := natsx.ConsumerRef{Stream: proc.Topology().EventsStream, Durable: Consumer}
	if err := registerMetrics(proc.Server.MetricsRegistry(), svc, consumer, natsx.NewConsumerLagCollector(proc.JS, 0, consumer)); err != nil {
		return nil, err
	}
	proc.Go(func(ctx context.Context) error {
		return natsx.Consume(ctx, proc.JS, natsx.ConsumerConfig{
			Stream:         proc.Topology().EventsStream,
			Durable:        Consumer,
			FilterSubjects: events.FilterSubjects(),
			BackOff:        []time.Duration{200 * time.Millisecond, time.Second, 5 * time.Second, 30 * time.Second},
			MaxDeliver:     1000, // ~8 hours at the last backoff: keep retrying while Postgres or Vault is down
			Logger:         log,
		}, events.Handle)
	})
	proc.Go(svc.RunDispatcher)
	return svc, nil
}

// buildSenders makes the sender of every configured channel: email always, SMS and push when
// their gateway URL is set, webhooks when some host is allowed.
func buildSenders(n Settings) (map[domain.Channel]domain.Sender, error) {
	out := map[domain.Channel]domain.Sender{}
	email, err := smtpsender.New(smtpsender.Config{Addr: n.SMTPAddr, From: n.SMTPFrom, Mode: smtpsender.TLSMode(n.SMTPTLS),
		Username: n.SMTPUsername, Password: n.SMTPPassword.Reveal(), CAFile: n.SMTPCAFile, ServerName: n.SMTPServerName})
	if err != nil {
		return nil, err
	}
	out[domain.ChannelEmail] = email
	client := &http.Client{Timeout: 10 * time.Second}
	if n.ProviderCAFile != "" {
		pem, err := os.ReadFile(n.ProviderCAFile)
		if err != nil {
			return nil, fmt.Errorf("provider CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("provider CA file holds no certificate")
		}
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	add := func(ch domain.Channel, c httpsender.Config) error {
		s, err := httpsender.New(c)
		if err != nil {
			return err
		}
		out[ch] = s
		return nil
	}
	if n.SMSURL != "" {
		if err := add(domain.ChannelSMS, httpsender.Config{Kind: httpsender.SMS, URL: n.SMSURL, Secret: []byte(n.SMSSecret.Reveal()), Client: client}); err != nil {
			return nil, err
		}
	}
	if n.PushURL != "" {
		if err := add(domain.ChannelPush, httpsender.Config{Kind: httpsender.Push, URL: n.PushURL, Secret: []byte(n.PushSecret.Reveal()), Client: client}); err != nil {
			return nil, err
		}
	}
	if len(n.WebhookAllowedHosts) > 0 {
		if err := add(domain.ChannelWebhook, httpsender.Config{Kind: httpsender.Webhook, Secret: []byte(n.WebhookSecret.Reveal()),
			AllowedHosts: n.WebhookAllowedHosts, Client: client}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

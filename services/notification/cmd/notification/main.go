// Command notification runs the securemsg notification service: PHI-free alerts that ask people to log in.
// Configuration comes from SECUREMSG_* environment variables (see README.md, Configuration).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	"github.com/securemsg/securemsg/services/internal/platform/config"
	"github.com/securemsg/securemsg/services/internal/platform/daemon"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver"
	"github.com/securemsg/securemsg/services/internal/platform/keys"
	"github.com/securemsg/securemsg/services/notification/internal/adapters/httpsender"
	"github.com/securemsg/securemsg/services/notification/internal/adapters/smtpsender"
	"github.com/securemsg/securemsg/services/notification/internal/domain"
	"github.com/securemsg/securemsg/services/notification/internal/server"
	"github.com/securemsg/securemsg/services/notification/migrations"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "notification:", err)
		os.Exit(1)
	}
}

func run() error {
	var cfg Config
	if err := config.Load(&cfg, config.WithDefault("SECUREMSG_GRPC_ADDR", "127.0.0.1:7003")); err != nil {
		return err
	}
	senders, err := buildSenders(cfg.Notify)
	if err != nil {
		return err
	}
	ctx, stop := grpcserver.SignalContext(context.Background())
	defer stop()
	proc, err := daemon.Start(ctx, daemon.Spec{Name: "notification", Schema: "notification",
		Component: commonv1.Component_COMPONENT_NOTIFICATION, Migrations: migrations.FS}, cfg.Base)
	if err != nil {
		return err
	}
	n := cfg.Notify
	_, err = server.Register(ctx, proc, server.Options{
		Vault:            keys.ConfigFrom(cfg.Vault),
		TransitKey:       n.TransitKey,
		Senders:          senders,
		OrganisationName: n.OrganisationName,
		PortalLink:       n.PortalLink,
		Retry:            domain.RetryPolicy{Base: n.RetryBase, Max: n.RetryMax, MaxAttempts: n.MaxAttempts},
		Workers:          n.Workers,
		PollInterval:     n.PollInterval,
	})
	if err != nil {
		return err
	}
	return proc.Run(ctx)
}

func buildSenders(n Notify) (map[domain.Channel]domain.Sender, error) {
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

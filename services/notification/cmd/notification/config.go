package main

import (
	"errors"
	"net/url"
	"time"

	"github.com/securemsg/securemsg/services/internal/platform/config"
	"github.com/securemsg/securemsg/services/internal/platform/daemon"
)

// Config is the notification service's configuration.
type Config struct {
	Base   daemon.Base
	Vault  config.Vault
	Notify Notify
}

// Notify holds the notification service's own settings (SECUREMSG_*).
type Notify struct {
	// TransitKey wraps the per-person DEKs sealing contact points.
	TransitKey string `env:"NOTIFY_TRANSIT_KEY" envDefault:"securemsg-notification"`
	// OrganisationName and PortalLink are the only values templates can show besides a count.
	OrganisationName string `env:"NOTIFY_ORGANISATION_NAME" envDefault:"Securemsg Health"`
	PortalLink       string `env:"NOTIFY_PORTAL_LINK" envDefault:"https://portal.example.org/messages"`

	// SMTP: address, envelope sender, TLS mode (starttls | opportunistic | tls | none; none only
	// for a loopback sink), optional PLAIN auth, CA bundle and server name.
	SMTPAddr       string        `env:"SMTP_ADDR" envDefault:"127.0.0.1:1025"`
	SMTPFrom       string        `env:"SMTP_FROM" envDefault:"no-reply@securemsg.local"`
	SMTPTLS        string        `env:"SMTP_TLS" envDefault:"starttls"`
	SMTPUsername   string        `env:"SMTP_USERNAME"`
	SMTPPassword   config.Secret `env:"SMTP_PASSWORD"`
	SMTPCAFile     string        `env:"SMTP_CA_FILE"`
	SMTPServerName string        `env:"SMTP_SERVER_NAME"`

	// HTTPS providers: gateway URLs and HMAC secrets; an unset URL disables the channel.
	SMSURL              string        `env:"SMS_URL"`
	SMSSecret           config.Secret `env:"SMS_HMAC_SECRET"`
	PushURL             string        `env:"PUSH_URL"`
	PushSecret          config.Secret `env:"PUSH_HMAC_SECRET"`
	WebhookSecret       config.Secret `env:"WEBHOOK_HMAC_SECRET"`
	WebhookAllowedHosts []string      `env:"WEBHOOK_ALLOWED_HOSTS" envSeparator:","`
	ProviderCAFile      string        `env:"PROVIDER_CA_FILE"`

	// Delivery behaviour.
	RetryBase    time.Duration `env:"NOTIFY_RETRY_BASE" envDefault:"30s"`
	RetryMax     time.Duration `env:"NOTIFY_RETRY_MAX" envDefault:"30m"`
	MaxAttempts  int           `env:"NOTIFY_MAX_ATTEMPTS" envDefault:"7"`
	Workers      int           `env:"NOTIFY_WORKERS" envDefault:"8"`
	PollInterval time.Duration `env:"NOTIFY_POLL_INTERVAL" envDefault:"1s"`
}

// Validate reports every problem at once, naming variables, never secret values.
func (n Notify) Validate() error {
	var errs []error
	if n.OrganisationName == "" {
		errs = append(errs, errors.New("SECUREMSG_NOTIFY_ORGANISATION_NAME is required"))
	}
	if u, err := url.Parse(n.PortalLink); err != nil || u.Scheme != "https" || u.Host == "" {
		errs = append(errs, errors.New("SECUREMSG_NOTIFY_PORTAL_LINK must be an https:// URL"))
	}
	switch n.SMTPTLS {
	case "starttls", "opportunistic", "tls", "none":
	default:
		errs = append(errs, errors.New("SECUREMSG_SMTP_TLS must be starttls, opportunistic, tls or none"))
	}
	if n.SMSURL != "" && len(n.SMSSecret.Reveal()) < 16 {
		errs = append(errs, errors.New("SECUREMSG_SMS_HMAC_SECRET must be at least 16 bytes when SECUREMSG_SMS_URL is set"))
	}
	if n.PushURL != "" && len(n.PushSecret.Reveal()) < 16 {
		errs = append(errs, errors.New("SECUREMSG_PUSH_HMAC_SECRET must be at least 16 bytes when SECUREMSG_PUSH_URL is set"))
	}
	if len(n.WebhookAllowedHosts) > 0 && len(n.WebhookSecret.Reveal()) < 16 {
		errs = append(errs, errors.New("SECUREMSG_WEBHOOK_HMAC_SECRET must be at least 16 bytes when SECUREMSG_WEBHOOK_ALLOWED_HOSTS is set"))
	}
	if n.MaxAttempts < 1 || n.Workers < 1 || n.RetryBase <= 0 || n.RetryMax < n.RetryBase || n.PollInterval <= 0 {
		errs = append(errs, errors.New("SECUREMSG_NOTIFY_MAX_ATTEMPTS, _WORKERS, _RETRY_BASE, _RETRY_MAX and _POLL_INTERVAL must be positive (RETRY_MAX >= RETRY_BASE)"))
	}
	return errors.Join(errs...)
}

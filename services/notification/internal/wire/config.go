package wire

import (
	"errors"
	"net/url"
	"time"

	"github.com/securemsg/securemsg/services/internal/platform/config"
	"github.com/securemsg/securemsg/services/internal/platform/daemon"
)

// Config is the notification service's configuration (SECUREMSG_* variables).
type Config struct {
	Base daemon.Base
	// Vault reaches the Transit engine that wraps the per-person DEKs.
	Vault        config.Vault
	Notification Settings
}

// Settings are the notification service's own settings.
type Settings struct {
	// TransitKey wraps the per-person DEKs sealing contact points; created at start when missing.
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

	// Delivery behaviour: the retry schedule (RetryBase doubling up to RetryMax, dead-letter
	// after MaxAttempts), how many sends run at once, how often the dispatcher looks for due
	// work when nothing woke it, how long one provider call may take, and how long a claimed
	// delivery may stay unrecorded before it counts as crashed (longer than SendTimeout).
	RetryBase    time.Duration `env:"NOTIFY_RETRY_BASE" envDefault:"30s"`
	RetryMax     time.Duration `env:"NOTIFY_RETRY_MAX" envDefault:"30m"`
	MaxAttempts  int           `env:"NOTIFY_MAX_ATTEMPTS" envDefault:"7"`
	Workers      int           `env:"NOTIFY_WORKERS" envDefault:"8"`
	PollInterval time.Duration `env:"NOTIFY_POLL_INTERVAL" envDefault:"1s"`
	SendTimeout  time.Duration `env:"NOTIFY_SEND_TIMEOUT" envDefault:"30s"`
	ClaimLease   time.Duration `env:"NOTIFY_CLAIM_LEASE" envDefault:"2m"`
}

// Validate reports every problem at once, naming variables, never secret values.
func (s Settings) Validate() error {
	var errs []error
	if s.TransitKey == "" {
		errs = append(errs, errors.New("SECUREMSG_NOTIFY_TRANSIT_KEY is required"))
	}
	if s.OrganisationName == "" {
		errs = append(errs, errors.New("SECUREMSG_NOTIFY_ORGANISATION_NAME is required"))
	}
	if u, err := url.Parse(s.PortalLink); err != nil || u.Scheme != "https" || u.Host == "" {
		errs = append(errs, errors.New("SECUREMSG_NOTIFY_PORTAL_LINK must be an https:// URL"))
	}
	switch s.SMTPTLS {
	case "starttls", "opportunistic", "tls", "none":
	default:
		errs = append(errs, errors.New("SECUREMSG_SMTP_TLS must be starttls, opportunistic, tls or none"))
	}
	if s.SMSURL != "" && len(s.SMSSecret.Reveal()) < 16 {
		errs = append(errs, errors.New("SECUREMSG_SMS_HMAC_SECRET must be at least 16 bytes when SECUREMSG_SMS_URL is set"))
	}
	if s.PushURL != "" && len(s.PushSecret.Reveal()) < 16 {
		errs = append(errs, errors.New("SECUREMSG_PUSH_HMAC_SECRET must be at least 16 bytes when SECUREMSG_PUSH_URL is set"))
	}
	if len(s.WebhookAllowedHosts) > 0 && len(s.WebhookSecret.Reveal()) < 16 {
		errs = append(errs, errors.New("SECUREMSG_WEBHOOK_HMAC_SECRET must be at least 16 bytes when SECUREMSG_WEBHOOK_ALLOWED_HOSTS is set"))
	}
	if s.MaxAttempts < 1 || s.Workers < 1 || s.RetryBase <= 0 || s.RetryMax < s.RetryBase || s.PollInterval <= 0 {
		errs = append(errs, errors.New("SECUREMSG_NOTIFY_MAX_ATTEMPTS, _WORKERS, _RETRY_BASE, _RETRY_MAX and _POLL_INTERVAL must be positive (RETRY_MAX >= RETRY_BASE)"))
	}
	if s.SendTimeout <= 0 || s.ClaimLease <= s.SendTimeout {
		errs = append(errs, errors.New("SECUREMSG_NOTIFY_SEND_TIMEOUT must be positive and SECUREMSG_NOTIFY_CLAIM_LEASE longer than it"))
	}
	return errors.Join(errs...)
}

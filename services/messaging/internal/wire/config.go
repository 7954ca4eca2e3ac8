package wire

import (
	"errors"
	"fmt"
	"time"

	"github.com/securemsg/securemsg/services/internal/platform/config"
	"github.com/securemsg/securemsg/services/internal/platform/daemon"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// Config is the messaging service's configuration (SECUREMSG_* variables).
type Config struct {
	Base daemon.Base
	// Vault reaches the Transit engine that wraps the thread DEKs.
	Vault config.Vault
	// Attachment reaches the attachment service over mTLS: SECUREMSG_ATTACHMENT_ADDR,
	// SECUREMSG_ATTACHMENT_TLS_CERT_FILE, _TLS_KEY_FILE, _TLS_CA_FILE, _TLS_SERVER_NAME.
	Attachment config.Client `envPrefix:"ATTACHMENT_"`
	Messaging  Settings
}

// Settings are the messaging service's own settings.
type Settings struct {
	// TransitKey is the Transit key that wraps thread DEKs; created at start when missing.
	TransitKey string `env:"MESSAGING_TRANSIT_KEY" envDefault:"securemsg-messaging"`
	// Retention is the retention period per thread category, as CATEGORY:PERIOD pairs (PERIOD a
	// Go duration or whole days such as 2555d). Every category must be listed.
	Retention map[string]string `env:"MESSAGING_RETENTION" envDefault:"GENERAL:2555d,CLINICAL_QUESTION:3650d,PRESCRIPTION:3650d,TEST_RESULTS:3650d,APPOINTMENT:730d,BILLING:2555d,ADMINISTRATIVE:2555d"`
	// PurgeInterval is how often the retention purge job runs; 0 disables it (the
	// RunRetentionPurge rpc still works).
	PurgeInterval time.Duration `env:"MESSAGING_PURGE_INTERVAL" envDefault:"1h"`
	// RetractWindow is how long after sending a sender may retract a message.
	RetractWindow time.Duration `env:"MESSAGING_RETRACT_WINDOW" envDefault:"15m"`
	// DEKCacheEntries and DEKCacheTTL bound the unwrapped-DEK cache (count, age).
	DEKCacheEntries int           `env:"MESSAGING_DEK_CACHE_ENTRIES" envDefault:"10000"`
	DEKCacheTTL     time.Duration `env:"MESSAGING_DEK_CACHE_TTL" envDefault:"10m"`
	// WatchHeartbeat is how long a WatchInbox stream may stay silent before a keep-alive is
	// sent; keep it below the idle timeout of every proxy between the portal and the service.
	WatchHeartbeat time.Duration `env:"MESSAGING_WATCH_HEARTBEAT" envDefault:"15s"`
	// WatchBuffer is how many changes wait for one watcher before it is told to resync (its
	// memory bound).
	WatchBuffer int `env:"MESSAGING_WATCH_BUFFER" envDefault:"64"`
	// DirectoryBootstrap is a JSON file of the client applications, care pools, members,
	// people and proxy grants the directory starts from (domain.DirectorySeed); what it lists
	// is added at start when missing and never overwritten. Empty: nothing is seeded.
	DirectoryBootstrap string `env:"DIRECTORY_BOOTSTRAP"`
	// WatchMaxPerSubject bounds the WatchInbox streams one person holds open on one replica.
	WatchMaxPerSubject int `env:"MESSAGING_WATCH_MAX_PER_SUBJECT" envDefault:"8"`
	// SCIMBaseURL is the SCIM root as the identity provider reaches it
	// ("https://msg-internal.example.org/scim/v2"), for the locations SCIM answers carry;
	// empty gives paths.
	SCIMBaseURL string `env:"MESSAGING_SCIM_BASE_URL"`
}

// Validate reports every problem with the messaging settings.
func (s Settings) Validate() error {
	var errs []error
	if s.TransitKey == "" {
		errs = append(errs, errors.New("SECUREMSG_MESSAGING_TRANSIT_KEY must be set"))
	}
	if _, err := domain.ParseRetention(s.Retention); err != nil {
		errs = append(errs, fmt.Errorf("SECUREMSG_MESSAGING_RETENTION: %w", err))
	}
	if s.PurgeInterval < 0 {
		errs = append(errs, errors.New("SECUREMSG_MESSAGING_PURGE_INTERVAL must not be negative"))
	}
	if s.RetractWindow <= 0 {
		errs = append(errs, errors.New("SECUREMSG_MESSAGING_RETRACT_WINDOW must be positive"))
	}
	if s.DEKCacheEntries < 1 || s.DEKCacheTTL <= 0 {
		errs = append(errs, errors.New("SECUREMSG_MESSAGING_DEK_CACHE_ENTRIES and _TTL must be positive"))
	}
	if s.WatchHeartbeat < 0 || s.WatchBuffer < 0 || s.WatchMaxPerSubject < 0 {
		errs = append(errs, errors.New("SECUREMSG_MESSAGING_WATCH_HEARTBEAT, _BUFFER and _MAX_PER_SUBJECT must not be negative"))
	}
	return errors.Join(errs...)
}

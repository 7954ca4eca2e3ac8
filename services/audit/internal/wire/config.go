package wire

import (
	"errors"
	"time"

	"github.com/securemsg/securemsg/services/internal/platform/daemon"
)

// Config is the audit service's configuration (SECUREMSG_* variables; the shared ones are
// described in README.md, Configuration).
type Config struct {
	Base  daemon.Base
	Audit Settings
}

// Settings are the audit service's own settings (SECUREMSG_AUDIT_*).
type Settings struct {
	// SigningKeyFile holds the Ed25519 checkpoint signing key (PKCS #8 PEM). In dev mode
	// (SECUREMSG_DEV) a missing file is created, with its public key beside it (*.pub.pem).
	SigningKeyFile string `env:"AUDIT_SIGNING_KEY_FILE" envDefault:".tmp/stack/audit/signing-key.pem"`
	// TrustedKeysDir is a folder of trusted checkpoint public keys (*.pem). At start the
	// service writes its current public key there (as <key id>.pub.pem), so after the signing
	// key file is replaced the previous key is still trusted and older checkpoints still
	// verify. Empty disables the folder. When the folder is read-only (a mounted secret), the
	// operator puts the keys there and the write is skipped with a warning.
	TrustedKeysDir string `env:"AUDIT_TRUSTED_KEYS_DIR" envDefault:".tmp/stack/audit/trusted-keys"`
	// TrustedKeys are more trusted public-key files or folders (comma-separated), e.g. the
	// keys of signing keys retired before TrustedKeysDir existed.
	TrustedKeys []string `env:"AUDIT_TRUSTED_KEYS" envSeparator:","`
	// CheckpointEvery and CheckpointInterval: sign after this many records or this long.
	CheckpointEvery    uint64        `env:"AUDIT_CHECKPOINT_EVERY" envDefault:"1000"`
	CheckpointInterval time.Duration `env:"AUDIT_CHECKPOINT_INTERVAL" envDefault:"30s"`
	// Retention: records older than this are dropped, a whole month at a time (six years).
	Retention time.Duration `env:"AUDIT_RETENTION" envDefault:"52608h"`
	// AnomalyRulesFile is a JSON rules file (see services/audit/anomaly-rules.json); empty
	// means the built-in defaults.
	AnomalyRulesFile string `env:"AUDIT_ANOMALY_RULES_FILE"`
	// ShowStaffNames lets access reports name the care team who read a patient's records, by
	// the names messaging publishes in the directory (PersonEntry.staff_display_name).
	ShowStaffNames bool `env:"AUDIT_SHOW_STAFF_NAMES"`
	// IngestBatch is how many records one append transaction takes at most.
	IngestBatch int `env:"AUDIT_INGEST_BATCH" envDefault:"1024"`
}

// Validate reports every problem at once.
func (s Settings) Validate() error {
	var errs []error
	if s.SigningKeyFile == "" {
		errs = append(errs, errors.New("SECUREMSG_AUDIT_SIGNING_KEY_FILE must be set"))
	}
	if s.CheckpointEvery == 0 || s.CheckpointInterval <= 0 {
		errs = append(errs, errors.New("SECUREMSG_AUDIT_CHECKPOINT_EVERY and _INTERVAL must be positive"))
	}
	if s.Retention < 365*24*time.Hour {
		errs = append(errs, errors.New("SECUREMSG_AUDIT_RETENTION must be at least a year"))
	}
	if s.IngestBatch < 1 || s.IngestBatch > 10000 {
		errs = append(errs, errors.New("SECUREMSG_AUDIT_INGEST_BATCH must be in 1..10000"))
	}
	return errors.Join(errs...)
}

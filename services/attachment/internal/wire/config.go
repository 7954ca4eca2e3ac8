package wire

import (
	"errors"
	"fmt"
	"time"

	"github.com/securemsg/securemsg/services/attachment/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/config"
	"github.com/securemsg/securemsg/services/internal/platform/daemon"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
)

// Config is the attachment service's configuration, from SECUREMSG_* variables.
type Config struct {
	Base daemon.Base
	// Vault reaches the Transit engine that wraps the per-object DEKs.
	Vault config.Vault
	// Messaging is the mTLS client for CheckMessageAccess: SECUREMSG_MESSAGING_ADDR,
	// SECUREMSG_MESSAGING_TLS_CERT_FILE, _TLS_KEY_FILE, _TLS_CA_FILE, _TLS_SERVER_NAME.
	Messaging  config.Client `envPrefix:"MESSAGING_"`
	S3         S3
	Clamd      Clamd
	Attachment Settings
}

// S3 is the object store holding the ciphertext.
type S3 struct {
	Endpoint  string        `env:"S3_ENDPOINT" envDefault:"127.0.0.1:9000"`
	AccessKey config.Secret `env:"S3_ACCESS_KEY"`
	SecretKey config.Secret `env:"S3_SECRET_KEY"`
	Bucket    string        `env:"S3_BUCKET" envDefault:"securemsg-attachments"`
	UseTLS    bool          `env:"S3_USE_TLS"`
	// Prefix is put in front of every object name.
	Prefix string `env:"S3_PREFIX"`
	// PartSize is the largest object sent in a single PUT and, above it, the multipart part
	// size; parts stream, so it costs no memory. The default is S3's single-PUT limit (5 GiB):
	// one request per object is faster than parts (no per-part round trip and commit, no
	// completion step) and a failed PUT leaves nothing behind to abort.
	PartSize uint64 `env:"S3_PART_SIZE" envDefault:"5368709120"`
}

// Validate reports every problem.
func (c S3) Validate() error {
	var errs []error
	if c.Endpoint == "" {
		errs = append(errs, errors.New("SECUREMSG_S3_ENDPOINT is required"))
	}
	if c.AccessKey == "" || c.SecretKey == "" {
		errs = append(errs, errors.New("SECUREMSG_S3_ACCESS_KEY and SECUREMSG_S3_SECRET_KEY are required"))
	}
	if c.Bucket == "" {
		errs = append(errs, errors.New("SECUREMSG_S3_BUCKET is required"))
	}
	if c.PartSize < 5<<20 || c.PartSize > 5<<30 {
		errs = append(errs, errors.New("SECUREMSG_S3_PART_SIZE must be between 5 MiB (5242880) and 5 GiB (5368709120)"))
	}
	return errors.Join(errs...)
}

// Clamd is where the malware scanner listens. What is scanned, and how often pending files are
// re-scanned, are Settings.
type Clamd struct {
	Addr    string        `env:"CLAMD_ADDR" envDefault:"127.0.0.1:3310"`
	Timeout time.Duration `env:"CLAMD_TIMEOUT" envDefault:"2m"`
}

// Validate reports every problem.
func (c Clamd) Validate() error {
	if c.Addr == "" {
		return errors.New("SECUREMSG_CLAMD_ADDR is required")
	}
	return nil
}

// Settings are the service's own limits and lifecycle settings: what Register needs.
type Settings struct {
	// Schema is the Postgres schema the service owns; only tests and benchmarks that run the
	// binary beside the dev stack change it.
	Schema        string `env:"ATTACHMENT_PG_SCHEMA" envDefault:"attachment"`
	TransitKey    string `env:"ATTACHMENT_TRANSIT_KEY" envDefault:"securemsg-attachment"`
	MaxFileBytes  int64  `env:"ATTACHMENT_MAX_FILE_BYTES" envDefault:"26214400"`
	MaxPerMessage int    `env:"ATTACHMENT_MAX_PER_MESSAGE" envDefault:"5"`
	QuotaBytes    int64  `env:"ATTACHMENT_QUOTA_BYTES" envDefault:"1073741824"`
	// AllowedTypes are the media types accepted; empty means domain.DefaultAllowedMediaTypes.
	AllowedTypes []string `env:"ATTACHMENT_ALLOWED_TYPES" envSeparator:","`
	// DraftTTL: uploads never bound are deleted after it; UploadTTL: uploads stuck in progress
	// (and aborted multipart uploads) are removed after it.
	DraftTTL        time.Duration `env:"ATTACHMENT_DRAFT_TTL" envDefault:"24h"`
	UploadTTL       time.Duration `env:"ATTACHMENT_UPLOAD_TTL" envDefault:"1h"`
	CleanupInterval time.Duration `env:"ATTACHMENT_CLEANUP_INTERVAL" envDefault:"10m"`
	// SessionTTL: an upload session with no chunk or finish for that long is abandoned, and the
	// clean-up removes it with its staged chunks. FinishLease: how long one FinishUploadSession
	// holds a session before another may take over (its process died); above the longest
	// finish (the file size limit through the scanner).
	SessionTTL  time.Duration `env:"ATTACHMENT_UPLOAD_SESSION_TTL" envDefault:"24h"`
	FinishLease time.Duration `env:"ATTACHMENT_UPLOAD_FINISH_LEASE" envDefault:"15m"`
	// AccessCacheTTL is how long a positive CheckMessageAccess answer is reused.
	AccessCacheTTL  time.Duration `env:"ATTACHMENT_ACCESS_CACHE_TTL" envDefault:"30s"`
	AccessCacheSize int           `env:"ATTACHMENT_ACCESS_CACHE_SIZE" envDefault:"10000"`
	// ScanMaxBytes must not exceed clamd's StreamMaxLength; larger files are refused, since a
	// file that cannot be scanned is never stored.
	ScanMaxBytes int64 `env:"CLAMD_STREAM_MAX_BYTES" envDefault:"104857600"`
	// RescanInterval is how often pending attachments are re-scanned.
	RescanInterval time.Duration `env:"CLAMD_RESCAN_INTERVAL" envDefault:"30s"`
}

// Validate reports every problem.
func (c Settings) Validate() error {
	var errs []error
	if c.ScanMaxBytes <= 0 {
		errs = append(errs, errors.New("SECUREMSG_CLAMD_STREAM_MAX_BYTES must be positive"))
	}
	if c.RescanInterval <= 0 {
		errs = append(errs, errors.New("SECUREMSG_CLAMD_RESCAN_INTERVAL must be positive"))
	}
	if c.MaxFileBytes <= 0 || c.MaxPerMessage <= 0 || c.QuotaBytes <= 0 {
		errs = append(errs, errors.New("SECUREMSG_ATTACHMENT_MAX_FILE_BYTES, _MAX_PER_MESSAGE and _QUOTA_BYTES must be positive"))
	}
	if c.DraftTTL <= 0 || c.UploadTTL <= 0 || c.CleanupInterval <= 0 || c.SessionTTL <= 0 || c.FinishLease <= 0 {
		errs = append(errs, errors.New("SECUREMSG_ATTACHMENT_DRAFT_TTL, _UPLOAD_TTL, _CLEANUP_INTERVAL, _UPLOAD_SESSION_TTL and _UPLOAD_FINISH_LEASE must be positive"))
	}
	if c.AccessCacheTTL < 0 || c.AccessCacheTTL > 5*time.Minute {
		errs = append(errs, errors.New("SECUREMSG_ATTACHMENT_ACCESS_CACHE_TTL must be between 0 and 5m"))
	}
	if err := pg.ValidateSchema(c.Schema); err != nil {
		errs = append(errs, fmt.Errorf("SECUREMSG_ATTACHMENT_PG_SCHEMA: %w", err))
	}
	if c.TransitKey == "" {
		errs = append(errs, errors.New("SECUREMSG_ATTACHMENT_TRANSIT_KEY is required"))
	}
	return errors.Join(errs...)
}

// Limits are the upload limits these settings set.
func (c Settings) Limits() domain.Limits {
	return domain.Limits{
		MaxFileBytes: c.MaxFileBytes, MaxPerMessage: c.MaxPerMessage,
		QuotaBytes: c.QuotaBytes, ScanMaxBytes: c.ScanMaxBytes,
	}
}

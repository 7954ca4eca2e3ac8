package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	"github.com/securemsg/securemsg/services/audit/internal/adapters"
	"github.com/securemsg/securemsg/services/audit/internal/app"
	"github.com/securemsg/securemsg/services/audit/internal/domain"
	"github.com/securemsg/securemsg/services/audit/internal/ports"
	"github.com/securemsg/securemsg/services/audit/migrations"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog/tlog"
	"github.com/securemsg/securemsg/services/internal/platform/daemon"
)

// Config is the audit service's configuration.
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
	// ShowStaffNames lets access reports name staff (no name directory is wired yet).
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

// wire builds the process: the shared daemon parts, then the log, the use cases, the gRPC
// service, the consumer, the checkpointer, maintenance and the reconciliation responder.
func wire(ctx context.Context, cfg Config) (*daemon.Process, error) {
	var rememberErr error
	key, err := tlog.LoadOrCreateKey(cfg.Audit.SigningKeyFile, cfg.Base.Server.Dev)
	if err != nil {
		return nil, err
	}
	signer := tlog.NewSigner(key)
	paths := cfg.Audit.TrustedKeys
	if cfg.Audit.TrustedKeysDir != "" {
		// A failure to remember the key is not fatal (the folder may be a read-only mount);
		// it is reported once the logger exists.
		rememberErr = tlog.RememberPublicKey(cfg.Audit.TrustedKeysDir, signer.Public())
		if _, err := os.Stat(cfg.Audit.TrustedKeysDir); err == nil {
			paths = append([]string{cfg.Audit.TrustedKeysDir}, paths...)
		}
	}
	trusted, err := tlog.LoadPublicKeys(paths...)
	if err != nil {
		return nil, err
	}
	rules, err := domain.LoadAnomalyRules(cfg.Audit.AnomalyRulesFile)
	if err != nil {
		return nil, err
	}
	proc, err := daemon.Start(ctx, daemon.Spec{Name: "audit", Schema: "audit", Component: commonv1.Component_COMPONENT_AUDIT,
		Migrations: migrations.FS}, cfg.Base)
	if err != nil {
		return nil, err
	}
	top := proc.Topology()
	store := adapters.NewStore(proc.Pool)
	if rememberErr != nil {
		proc.Logger.Warn("could not add the signing public key to the trusted keys folder", "error", rememberErr)
	}
	svc, err := app.New(store, signer, proc.Audit, app.Config{
		CheckpointEvery: cfg.Audit.CheckpointEvery, CheckpointInterval: cfg.Audit.CheckpointInterval,
		Retention: cfg.Audit.Retention, AnomalySubject: top.EventsSubject + ".anomaly.raised", Rules: &rules,
		ShowStaffNames: cfg.Audit.ShowStaffNames, TrustedKeys: trusted, Logger: proc.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("audit use cases: %w", err)
	}
	if err := svc.Maintain(ctx); err != nil {
		return nil, fmt.Errorf("audit partitions: %w", err)
	}
	if _, err := svc.RestoreDetector(ctx); err != nil {
		return nil, err
	}
	proc.Logger.Info("checkpoint keys trusted", "key_ids", svc.TrustedKeyIDs(), "signing_key_id", signer.KeyID())
	auditv1.RegisterAuditServiceServer(proc.Server.GRPC(), &ports.GRPC{Svc: svc})
	consumer := &ports.Consumer{JS: proc.JS, Stream: top.AuditStream, Durable: ports.DefaultDurable,
		Batch: cfg.Audit.IngestBatch, Ingester: svc, Log: proc.Logger}
	proc.Go(consumer.Run)
	proc.Go(func(ctx context.Context) error { svc.RunCheckpointer(ctx); return nil })
	proc.Go(func(ctx context.Context) error { svc.RunMaintenance(ctx); return nil })
	proc.Go(func(ctx context.Context) error {
		return ports.ServeReconcile(ctx, proc.NATS, proc.Topology().ReconcileSubject, store, consumer, proc.Logger)
	})
	return proc, nil
}

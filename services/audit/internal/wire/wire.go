// Package wire builds the audit service from its configuration, by hand and in one place: the
// checkpoint signing key and trusted keys, the anomaly rules, the Postgres repositories, the use
// cases, the gRPC handler, the ingest consumer, the reconciliation responder and the checkpoint
// and maintenance jobs, on top of a started daemon.Process.
package wire

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	"github.com/securemsg/securemsg/services/audit/internal/adapters/pgstore"
	"github.com/securemsg/securemsg/services/audit/internal/app"
	"github.com/securemsg/securemsg/services/audit/internal/domain"
	"github.com/securemsg/securemsg/services/audit/internal/ports"
	"github.com/securemsg/securemsg/services/audit/migrations"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog/tlog"
	"github.com/securemsg/securemsg/services/internal/platform/daemon"
	"github.com/securemsg/securemsg/services/internal/platform/natsx"
)

// Spec is the daemon spec of the audit service.
func Spec() daemon.Spec {
	return daemon.Spec{Name: "audit", Schema: "audit", Component: commonv1.Component_COMPONENT_AUDIT, Migrations: migrations.FS}
}

// Deps are the service's outside collaborators, read from files by Build or made by tests.
type Deps struct {
	// Signer signs checkpoints.
	Signer *tlog.Signer
	// TrustedKeys are the public keys of earlier signing keys, whose checkpoints still verify.
	TrustedKeys []ed25519.PublicKey
	// Rules configure anomaly detection.
	Rules domain.AnomalyRules
}

// Build reads the signing key (creating it in dev mode), remembers its public key in the
// trusted-keys folder, loads the trusted keys and the anomaly rules, then registers the service
// on proc.
func Build(_ context.Context, cfg Config, proc *daemon.Process) (*app.Service, error) {
	s := cfg.Audit
	key, err := tlog.LoadOrCreateKey(s.SigningKeyFile, cfg.Base.Server.Dev)
	if err != nil {
		return nil, err
	}
	signer := tlog.NewSigner(key)
	paths := s.TrustedKeys
	if s.TrustedKeysDir != "" {
		// Not fatal: the folder may be a read-only mount the operator fills.
		if err := tlog.RememberPublicKey(s.TrustedKeysDir, signer.Public()); err != nil {
			proc.Logger.Warn("could not add the signing public key to the trusted keys folder", "error", err)
		}
		if _, err := os.Stat(s.TrustedKeysDir); err == nil {
			paths = append([]string{s.TrustedKeysDir}, paths...)
		}
	}
	trusted, err := tlog.LoadPublicKeys(paths...)
	if err != nil {
		return nil, err
	}
	rules, err := loadAnomalyRules(s.AnomalyRulesFile)
	if err != nil {
		return nil, err
	}
	return Register(proc, s, Deps{Signer: signer, TrustedKeys: trusted, Rules: rules})
}

// loadAnomalyRules reads the rules file at path; an empty path means the built-in defaults.
func loadAnomalyRules(path string) (domain.AnomalyRules, error) {
	if path == "" {
		return domain.DefaultAnomalyRules(), nil
	}
	b, err := os.ReadFile(path) //nolint:gosec // G304: the path is the operator's own configuration (SECUREMSG_AUDIT_ANOMALY_RULES_FILE)
	if err != nil {
		return domain.AnomalyRules{}, fmt.Errorf("read anomaly rules: %w", err)
	}
	rules, err := domain.ParseAnomalyRules(b)
	if err != nil {
		return rules, fmt.Errorf("%s: %w", path, err)
	}
	return rules, nil
}

// Register builds the repositories and use cases over proc and deps, prepares the log
// (partitions, retention, the anomaly windows of recent entries), registers the gRPC handler and
// adds the ingest consumer, the reconciliation responder, the checkpointer and the maintenance
// job. It runs before the process does and so without its context: a stop signal that arrives
// during the preparation takes effect when Run begins.
func Register(proc *daemon.Process, s Settings, deps Deps) (*app.Service, error) {
	ctx := context.Background()
	top := proc.Topology()
	store := pgstore.NewStore(proc.Pool)
	rules := deps.Rules
	svc, err := app.New(app.Config{
		CheckpointEvery: s.CheckpointEvery, CheckpointInterval: s.CheckpointInterval, Retention: s.Retention,
		AnomalySubject: top.EventsSubject + ".anomaly.raised", Rules: &rules, ShowStaffNames: s.ShowStaffNames,
		StaffNames:  app.DirectoryNames{People: proc.Directory},
		TrustedKeys: deps.TrustedKeys,
	}, app.Deps{
		Log: store, Checkpoints: store, Marks: store, Alerts: store, Outbox: store, Signer: deps.Signer, Audit: proc.Audit, Logger: proc.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("audit use cases: %w", err)
	}
	if err := svc.Maintain(ctx); err != nil {
		return nil, fmt.Errorf("audit partitions: %w", err)
	}
	proc.Logger.Info("checkpoint keys trusted", "key_ids", svc.TrustedKeyIDs(), "signing_key_id", deps.Signer.KeyID())
	auditv1.RegisterAuditServiceServer(proc.Server.GRPC(), ports.NewGRPC(svc))
	ingest := natsx.ConsumerRef{Stream: top.AuditStream, Durable: ports.DefaultDurable}
	appendLag, err := registerMetrics(proc.Server.MetricsRegistry(), store.LatestCheckpoint,
		natsx.NewConsumerLagCollector(proc.JS, 0, ingest), proc.Logger)
	if err != nil {
		return nil, err
	}
	consumer := &ports.Consumer{JS: proc.JS, Stream: ingest.Stream, Durable: ingest.Durable,
		Batch: s.IngestBatch, Ingester: svc, Log: proc.Logger, AppendLag: appendLag}
	leading := prometheus.NewGauge(prometheus.GaugeOpts{Name: "securemsg_audit_ingest_leader",
		Help: "1 while this replica is the one that appends to the audit log (and runs the anomaly detector), else 0."})
	if err := proc.Server.MetricsRegistry().Register(leading); err != nil {
		return nil, fmt.Errorf("register ingest leader gauge: %w", err)
	}
	// One replica ingests at a time, so one detector sees every record (pgstore.Leader).
	leader := &pgstore.Leader{Pool: proc.Pool, Log: proc.Logger,
		OnAcquire: func(ctx context.Context) error { _, err := svc.RestoreDetector(ctx); return err },
		Leading: func(on bool) {
			if on {
				leading.Set(1)
			} else {
				leading.Set(0)
			}
		}}
	proc.Go(func(ctx context.Context) error { return leader.Run(ctx, consumer.Run) })
	proc.Go(func(ctx context.Context) error { svc.RunCheckpointer(ctx); return nil })
	proc.Go(func(ctx context.Context) error { svc.RunMaintenance(ctx); return nil })
	proc.Go(func(ctx context.Context) error {
		return ports.ServeReconcile(ctx, proc.NATS, top.ReconcileSubject, svc, consumer, proc.Logger)
	})
	return svc, nil
}

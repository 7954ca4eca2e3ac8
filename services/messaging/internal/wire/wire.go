// Package wire is the messaging service's composition root: it builds the service from its
// configuration, by hand and in one place — the Transit client and DEK keyring, the
// attachment-service client, the Postgres repositories, the use cases, the gRPC handler, the
// inbox feed behind live watches and the retention purge job — on top of a started
// daemon.Process.
package wire

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/internal/platform/config"
	"github.com/securemsg/securemsg/services/internal/platform/daemon"
	"github.com/securemsg/securemsg/services/internal/platform/keys"
	"github.com/securemsg/securemsg/services/messaging/internal/adapters/attachmentclient"
	"github.com/securemsg/securemsg/services/messaging/internal/adapters/pgstore"
	"github.com/securemsg/securemsg/services/messaging/internal/app"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
	"github.com/securemsg/securemsg/services/messaging/internal/ports"
	"github.com/securemsg/securemsg/services/messaging/internal/ports/scim"
	"github.com/securemsg/securemsg/services/messaging/migrations"
)

// Spec is the daemon spec of the messaging service.
func Spec() daemon.Spec {
	return daemon.Spec{Name: "messaging", Schema: "messaging", Component: commonv1.Component_COMPONENT_MESSAGING, Migrations: migrations.FS}
}

// Deps are the service's outside collaborators, built from configuration by Build or by tests.
type Deps struct {
	Transit     *keys.Transit
	Attachments domain.Attachments
	// Access are the access settings the guard chain applies (Base.Access): a live watch ends
	// when its token would no longer pass them. The zero value means the verifier's defaults.
	Access config.Access
}

// Build connects to Vault (ensuring the service's Transit key exists) and dials the
// attachment service, then registers the service on proc.
func Build(ctx context.Context, cfg Config, proc *daemon.Process) (*app.Service, error) {
	transit, err := keys.OpenTransit(ctx, keys.ConfigFrom(cfg.Vault), cfg.Messaging.TransitKey)
	if err != nil {
		return nil, err
	}
	att, err := attachmentclient.Dial(cfg.Attachment)
	if err != nil {
		return nil, err
	}
	return Register(proc, cfg.Messaging, Deps{Transit: transit, Attachments: att, Access: cfg.Base.Access})
}

// Register builds the use cases over proc and deps, registers the gRPC handler and adds the
// inbox feed and the retention purge job.
func Register(proc *daemon.Process, s Settings, deps Deps) (*app.Service, error) {
	retention, err := domain.ParseRetention(s.Retention)
	if err != nil {
		return nil, err
	}
	keyring, err := keys.NewKeyring(deps.Transit, keys.KeyringOptions{
		MaxEntries: s.DEKCacheEntries, MaxAge: s.DEKCacheTTL, Registerer: proc.Server.MetricsRegistry(),
	})
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	store := pgstore.New(proc.Pool).WithDirectory(proc.Topology().DirectoryBucket, proc.Directory.Apply)
	if err := seedDirectory(proc, store, s.DirectoryBootstrap); err != nil {
		return nil, err
	}
	svc, err := app.New(app.Config{
		KeyName: s.TransitKey, Retention: retention, PurgeInterval: s.PurgeInterval, RetractWindow: s.RetractWindow,
		EventsSubject: proc.Topology().EventsSubject,
		Watch: app.WatchSettings{
			Heartbeat: s.WatchHeartbeat, Buffer: s.WatchBuffer, MaxPerSubject: s.WatchMaxPerSubject,
			MaxTokenAge: deps.Access.MaxTokenAge, MaxSessionAge: deps.Access.MaxSessionAge,
		},
	}, app.Deps{
		Threads: store, Messages: store, Inbox: store, Settings: store, Pools: store, Apps: store, Grants: store, People: store, Known: proc.Directory, Members: proc.Directory,
		Retention: store, AuditTrail: store,
		Keys: keyring, Policy: proc.Policy, Emitter: proc.Audit, Attachments: deps.Attachments, Logger: proc.Logger,
	})
	if err != nil {
		return nil, err
	}
	messagingv1.RegisterMessagingServiceServer(proc.Server.GRPC(), ports.NewHandler(svc))
	// SCIM provisioning calls the admin rpcs through the gRPC server, so it passes their guards.
	scimHandler, err := scim.NewHandler(ports.SCIMBackend{RPC: proc.Server.GRPC()}, scim.Options{Logger: proc.Logger, BaseURL: s.SCIMBaseURL})
	if err != nil {
		return nil, err
	}
	proc.HandleHTTP(scim.Prefix+"/", scimHandler)
	feed := &ports.InboxFeed{JS: proc.JS, Stream: proc.Topology().EventsStream, Subject: proc.Topology().EventsSubject, Service: svc, Logger: proc.Logger}
	if err := registerWatchMetrics(proc.Server.MetricsRegistry(), svc); err != nil {
		return nil, err
	}
	proc.Go(feed.Run)
	// Watch streams last until their token expires: end them before the graceful stop waits.
	proc.Server.BeforeStop(func(context.Context) { svc.EndWatches() })
	proc.Go(func(ctx context.Context) error { return svc.RunPurgeJob(ctx, s.PurgeInterval) })
	return svc, nil
}

// seedDirectory imports the bootstrap file into the directory, when one is configured; the
// store applies what it added to this process's snapshot at once, and the outbox puts the same
// entries into the bucket for every other process.
func seedDirectory(proc *daemon.Process, store *pgstore.Store, file string) error {
	if file == "" {
		return nil
	}
	b, err := os.ReadFile(file) //nolint:gosec // G304: the operator's own configuration file
	if err != nil {
		return fmt.Errorf("SECUREMSG_DIRECTORY_BOOTSTRAP: %w", err)
	}
	seed, err := domain.ParseDirectorySeed(b)
	if err != nil {
		return fmt.Errorf("SECUREMSG_DIRECTORY_BOOTSTRAP %s: %w", file, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	added, err := store.SeedDirectory(ctx, seed, time.Now())
	if err != nil {
		return fmt.Errorf("seed the directory from %s: %w", file, err)
	}
	// Naming the pools whose settings came from the file tells an operator who edited the seed
	// why the others did not change: stored settings are never overwritten.
	proc.Logger.Info("directory seeded", "file", file, "entries_added", len(added.Entries), "pool_settings_added", added.PoolSettings)
	return nil
}

// registerWatchMetrics exposes the live-watch figures: how many watches are open, and how many
// change notices and resyncs they were sent (a rising resync rate means clients fall behind).
func registerWatchMetrics(reg prometheus.Registerer, svc *app.Service) error {
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "securemsg_messaging_watches_open", Help: "Open WatchInbox streams on this replica."},
			func() float64 { return float64(svc.WatchStats().Open) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "securemsg_messaging_watch_changes_sent_total", Help: "Change notices sent to WatchInbox streams."},
			func() float64 { return float64(svc.WatchStats().ChangesSent) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "securemsg_messaging_watch_resyncs_total", Help: "Resyncs sent to WatchInbox streams that fell behind."},
			func() float64 { return float64(svc.WatchStats().Resyncs) }),
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register watch metrics: %w", err)
		}
	}
	return nil
}

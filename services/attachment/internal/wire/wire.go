// Package wire builds the attachment service from its configuration, by hand and in one place:
// the Transit client, the DEK keyring and its pool of fresh DEKs, the object store, the clamd
// scanner, the messaging client, the Postgres repository, the use cases, the gRPC handler and
// the background jobs, on top of a started daemon.Process. It is the service's only
// composition root.
package wire

import (
	"context"
	"fmt"
	"net/http"

	"google.golang.org/grpc"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	"github.com/securemsg/securemsg/services/attachment/internal/adapters/clamd"
	"github.com/securemsg/securemsg/services/attachment/internal/adapters/messagingclient"
	"github.com/securemsg/securemsg/services/attachment/internal/adapters/pgstore"
	"github.com/securemsg/securemsg/services/attachment/internal/adapters/s3store"
	"github.com/securemsg/securemsg/services/attachment/internal/app"
	"github.com/securemsg/securemsg/services/attachment/internal/domain"
	"github.com/securemsg/securemsg/services/attachment/internal/ports"
	"github.com/securemsg/securemsg/services/attachment/migrations"
	"github.com/securemsg/securemsg/services/internal/platform/daemon"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver"
	"github.com/securemsg/securemsg/services/internal/platform/keys"
)

// Spec is the daemon spec of the attachment service, in its default schema (the binary uses
// Settings.Schema).
func Spec() daemon.Spec {
	return daemon.Spec{Name: "attachment", Schema: "attachment", Component: commonv1.Component_COMPONENT_ATTACHMENT, Migrations: migrations.FS}
}

// ServerOptions are the gRPC server settings the service adds to the platform's: fixed flow-
// control windows instead of the BDP estimator's, which grows each stream's window to 16 MiB
// over a long upload — data the server would hold in memory per upload. A 1 MiB stream window
// (one chunk in flight) and a 4 MiB connection window keep an upload's buffered bytes bounded
// whatever the file size, at no cost in throughput on a low-latency network. The codec moves
// upload and download chunks with fewer copies (ports.ChunkCodec).
func ServerOptions() []grpcserver.Option {
	return []grpcserver.Option{grpcserver.WithServerOptions(
		grpc.InitialWindowSize(1<<20),
		grpc.InitialConnWindowSize(4<<20),
		grpc.ForceServerCodecV2(ports.NewChunkCodec()),
	)}
}

// Deps are the service's outside collaborators, built from configuration by Build or by tests.
type Deps struct {
	Keys    domain.DEKs
	Objects domain.ObjectStore
	Scanner domain.Scanner
	Access  domain.AccessChecker
}

// Build connects to Vault (ensuring the service's Transit key exists), the object store
// (ensuring the bucket exists) and dials messaging, then registers the service on proc.
func Build(ctx context.Context, cfg Config, proc *daemon.Process) (*app.Service, error) {
	transit, err := keys.OpenTransit(ctx, keys.ConfigFrom(cfg.Vault), cfg.Attachment.TransitKey)
	if err != nil {
		return nil, err
	}
	ring, err := keys.NewKeyring(transit, keys.KeyringOptions{Registerer: proc.Server.MetricsRegistry()})
	if err != nil {
		return nil, err
	}
	// Every upload needs a fresh DEK; making a few ahead takes Vault's round trip off the
	// upload's path (one DEK per object still: each pooled key is handed out once).
	pool, err := keys.NewDEKPool(ring, cfg.Attachment.TransitKey, keys.DEKPoolOptions{Registerer: proc.Server.MetricsRegistry()})
	if err != nil {
		return nil, err
	}
	proc.Go(pool.Run)
	store, err := NewStore(ctx, cfg.S3)
	if err != nil {
		return nil, err
	}
	conn, err := grpcserver.Dial(cfg.Messaging)
	if err != nil {
		return nil, fmt.Errorf("dial messaging: %w", err)
	}
	scanner := clamd.New(cfg.Clamd.Addr)
	scanner.Timeout = cfg.Clamd.Timeout
	return Register(proc, cfg.Attachment, Deps{
		Keys: pool, Objects: store, Scanner: scanner,
		Access: messagingclient.New(conn, cfg.Attachment.AccessCacheSize, cfg.Attachment.AccessCacheTTL),
	})
}

// NewStore returns the object store for cfg, creating the bucket when missing.
func NewStore(ctx context.Context, cfg S3) (*s3store.Store, error) {
	store, err := s3store.New(s3store.Config{
		Endpoint: cfg.Endpoint, AccessKey: cfg.AccessKey.Reveal(), SecretKey: cfg.SecretKey.Reveal(),
		Bucket: cfg.Bucket, UseTLS: cfg.UseTLS, Prefix: cfg.Prefix, PartSize: cfg.PartSize,
	})
	if err != nil {
		return nil, err
	}
	if err := store.EnsureBucket(ctx); err != nil {
		return nil, fmt.Errorf("object store: %w", err)
	}
	return store, nil
}

// Register builds the repository over proc's pool and the use cases over it and deps,
// registers the gRPC handler on proc and adds the re-scan and clean-up jobs.
func Register(proc *daemon.Process, s Settings, deps Deps) (*app.Service, error) {
	repo := pgstore.New(proc.Pool)
	scanner, err := instrumentScanner(proc.Server.MetricsRegistry(), proc.Pool, deps.Scanner, proc.Logger)
	if err != nil {
		return nil, err
	}
	svc, err := app.New(app.Config{
		KeyName: s.TransitKey, Limits: s.Limits(), AllowedMediaTypes: s.AllowedTypes,
		EventsSubject: proc.Topology().EventsSubject, DraftTTL: s.DraftTTL, UploadTTL: s.UploadTTL,
		SessionTTL: s.SessionTTL, FinishLease: s.FinishLease,
	}, app.Deps{
		Attachments: repo, Sessions: repo, AuditTrail: repo, Objects: deps.Objects, Scanner: scanner,
		Access: deps.Access, Keys: deps.Keys, Emitter: proc.Audit, Logger: proc.Logger,
	})
	if err != nil {
		return nil, err
	}
	attachmentv1.RegisterAttachmentServiceServer(proc.Server.GRPC(), ports.NewHandler(svc))
	proc.Go(func(ctx context.Context) error { return svc.RunJobs(ctx, s.RescanInterval, s.CleanupInterval) })
	for pattern, h := range HTTPHandlers(proc) {
		proc.HandleHTTP(pattern, h)
	}
	return svc, nil
}

// HTTPHandlers are the service's routes on the HTTP listener beside the transcoded rpcs, by
// net/http pattern: the file download (GET /v1/attachments/{attachment_id}/content), which
// calls the DownloadAttachmentContent rpc through proc's gRPC server and its interceptor chain.
func HTTPHandlers(proc *daemon.Process) map[string]http.Handler {
	return map[string]http.Handler{ports.ContentPattern: ports.NewContentHandler(proc.Server.GRPC())}
}

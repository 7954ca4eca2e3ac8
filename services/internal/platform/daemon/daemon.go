// Package daemon runs what every securemsg service process has in common, so that each
// service's main stays a few lines of configuration and wiring: the structured logger, the
// Postgres pool with the service's schema migrated, the NATS connection with the suite's
// JetStream streams declared, the transactional-outbox relay, the audit emitter, the access
// guards (IP lists, OIDC token verification, rate limits, the Cedar policy engine — in that
// order, so the cheapest refusals come first), the gRPC server, the HTTP edge for browsers when
// SECUREMSG_HTTP_ADDR is set (package httpedge, over the same gRPC server), and an orderly
// shutdown (the HTTP edge finishes its requests, gRPC drains, then background work stops, then
// NATS drains, then the pool closes).
//
// It starts nothing a service did not ask for beyond those shared parts; a service adds its own
// background work (consumers, purge jobs) with Go before calling Run.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/securemsg/securemsg/gen/openapi"
	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/backoff"
	"github.com/securemsg/securemsg/services/internal/platform/config"
	"github.com/securemsg/securemsg/services/internal/platform/directory"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver"
	"github.com/securemsg/securemsg/services/internal/platform/httpedge"
	"github.com/securemsg/securemsg/services/internal/platform/ipfilter"
	"github.com/securemsg/securemsg/services/internal/platform/logging"
	"github.com/securemsg/securemsg/services/internal/platform/migrate"
	"github.com/securemsg/securemsg/services/internal/platform/natsx"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/pg"
	"github.com/securemsg/securemsg/services/internal/platform/policy"
	"github.com/securemsg/securemsg/services/internal/platform/ratelimit"
	"github.com/securemsg/securemsg/services/internal/platform/tracing"
)

// Base is the configuration every service shares; a service embeds it in its own config struct.
type Base struct {
	Server   config.Server
	Log      config.Log
	Postgres config.Postgres
	NATS     config.NATS
	OIDC     config.OIDC
	Access   config.Access
}

// Spec names a service and what it owns.
type Spec struct {
	// Name is the service's short name ("messaging"); it prefixes client names and logs.
	Name string
	// Component identifies the service in audit records (the producer).
	Component commonv1.Component
	// Schema is the Postgres schema the service owns (DESIGN.md: one schema per service).
	Schema string
	// Migrations holds the service's own SQL migrations; nil when it has none yet.
	Migrations fs.FS
	// Topology names the JetStream streams; the zero value means natsx.DefaultTopology().
	Topology natsx.Topology
}

// Process is a started service: its shared dependencies, ready for the service to register its
// gRPC handlers and background work before Run.
type Process struct {
	Logger *slog.Logger
	Pool   *pgxpool.Pool
	NATS   *nats.Conn
	JS     jetstream.JetStream
	Server *grpcserver.Server
	// Audit writes audit records into the service's outbox, in the caller's transaction.
	Audit *auditlog.Emitter
	// Policy answers record-level questions in use cases; the rpc-level check already ran in
	// the guard chain before a handler is called.
	Policy *policy.Engine
	// Directory is this process's copy of the directory bucket, kept current by a watch: the
	// guard chain admits every person against it (auth.Admission).
	Directory *directory.Snapshot

	spec     Spec
	server   config.Server
	listener net.Listener
	// httpListener, when set, serves the HTTP edge instead of server.HTTPAddr (ServeHTTPOn).
	httpListener net.Listener
	// httpRoutes are the service's plain HTTP routes on the edge (HandleHTTP).
	httpRoutes map[string]http.Handler
	topology   natsx.Topology
	tasks      []func(context.Context) error
	// stopWatch ends the directory watch, which runs from Start until the process closes.
	stopWatch context.CancelFunc
	// limiter is the rate-limit guard, closed with the process (its Redis connections).
	limiter *ratelimit.Limiter
}

// Topology is the JetStream layout the process declared: the stream names and the subject
// prefixes events (Topology().EventsSubject + ".message.created.<pool>") and audit records go to.
// Services build subjects from it rather than hard-coding "securemsg.", so tests stay isolated.
func (p *Process) Topology() natsx.Topology { return p.topology }

// Start connects to Postgres (migrating the service's schema), to NATS (declaring the streams)
// and builds the gRPC server with opts. It fails, releasing what it opened, when any part is
// unusable: a service that cannot reach its database must not report itself healthy.
func Start(ctx context.Context, spec Spec, base Base, opts ...grpcserver.Option) (_ *Process, err error) {
	logger := logging.New(os.Stderr, base.Log.Level).With(slog.String(logging.KeyService, spec.Name))
	p := &Process{Logger: logger, spec: spec, server: base.Server}
	defer func() {
		if err != nil {
			p.close()
		}
	}()

	commits := outbox.NewCommitWatch()
	p.Pool, err = pg.NewPool(ctx, pg.Config{
		URL:             base.Postgres.URL.Reveal(),
		Schema:          spec.Schema,
		ApplicationName: "securemsg-" + spec.Name,
		MaxConns:        base.Postgres.MaxConns,
		Tracer:          commits,
	})
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	if err := migrate.Up(ctx, p.Pool, spec.Schema, spec.Migrations, logger); err != nil {
		return nil, fmt.Errorf("migrate schema %s: %w", spec.Schema, err)
	}

	p.NATS, err = natsx.Connect(natsx.ConnConfig{
		URL: base.NATS.URL, Name: "securemsg-" + spec.Name, Options: natsOptions(base.NATS), Logger: logger,
	})
	if err != nil {
		return nil, fmt.Errorf("connect to nats: %w", err)
	}
	if p.JS, err = natsx.JetStream(p.NATS); err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	topology := spec.Topology
	if topology == (natsx.Topology{}) {
		topology = natsx.DefaultTopology()
		topology.Replicas = base.NATS.StreamReplicas
	}
	p.topology = topology
	if err := natsx.EnsureStreams(ctx, p.JS, topology); err != nil {
		return nil, fmt.Errorf("declare jetstream streams: %w", err)
	}

	if err := p.watchDirectory(ctx, topology.DirectoryBucket); err != nil {
		return nil, err
	}
	guards, err := p.accessGuards(ctx, spec, base, topology)
	if err != nil {
		return nil, err
	}
	serverOpts := []grpcserver.Option{grpcserver.WithLogger(logger), grpcserver.WithGuards(guards...)}
	if tracing.Enabled(os.Getenv) {
		serverOpts = append(serverOpts, grpcserver.WithTracing())
	}
	p.Server, err = grpcserver.New(base.Server, append(serverOpts, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("build grpc server: %w", err)
	}
	if err := p.Server.MetricsRegistry().Register(p.limiter); err != nil {
		return nil, fmt.Errorf("register rate-limit metrics: %w", err)
	}

	relay := outbox.NewRelay(p.Pool, p.JS, outbox.Options{Logger: logger, Registerer: p.Server.MetricsRegistry(), Commits: commits})
	p.Go(relay.Run)
	// Producers answer the audit service's gap checks, so an audit record JetStream acknowledged
	// but lost is published again (DESIGN.md, Audit: nothing is silently lost).
	reconciler := auditlog.NewReconciler(p.Pool, p.NATS, p.Audit)
	reconciler.SubjectPrefix, reconciler.Log = topology.ReconcileSubject, logger
	p.Go(func(ctx context.Context) error { reconciler.Run(ctx); return nil })
	return p, nil
}

// accessGuards builds the audit emitter, the policy engine and the guard chain. Every denial and
// every allowed PHI read the guards see is recorded through the service's own outbox.
func (p *Process) accessGuards(ctx context.Context, spec Spec, base Base, topology natsx.Topology) ([]grpcserver.Guard, error) {
	var err error
	if p.Audit, err = auditlog.NewEmitter(spec.Component, auditlog.WithSubjectPrefix(topology.AuditSubject)); err != nil {
		return nil, fmt.Errorf("audit emitter: %w", err)
	}
	recorder := p.Audit.Recorder(p.Pool)
	if p.Policy, err = policy.New(base.Access.PolicyDir, policy.Options{Recorder: recorder, Logger: p.Logger}); err != nil {
		return nil, fmt.Errorf("load policies from %s: %w", base.Access.PolicyDir, err)
	}
	if base.Access.PolicyReloadInterval > 0 {
		p.Go(func(ctx context.Context) error {
			p.Policy.WatchFiles(ctx, base.Access.PolicyReloadInterval)
			return nil
		})
	}
	p.Go(func(ctx context.Context) error { p.Policy.ReloadOnSignal(ctx, syscall.SIGHUP); return nil })

	ips, err := ipfilter.New(base.Access.IPAllow, base.Access.IPDeny, recorder)
	if err != nil {
		return nil, fmt.Errorf("ip lists: %w", err)
	}
	verifier, err := auth.NewVerifier(ctx, auth.VerifierConfig{
		Issuer:      base.OIDC.Issuer,
		Audience:    base.OIDC.Audience,
		ClockSkew:   base.Access.ClockSkew,
		MaxTokenAge: base.Access.MaxTokenAge,
		MaxAuthAge:  base.Access.MaxSessionAge,
	})
	if err != nil {
		return nil, fmt.Errorf("oidc verifier for %s: %w", base.OIDC.Issuer, err)
	}
	// With SECUREMSG_RATE_REDIS_URL the buckets are shared by every replica of this service
	// (Scope); without it each process keeps its own.
	p.limiter, err = ratelimit.New(ratelimit.Config{
		PerPrincipal: ratelimit.Limit{Rate: base.Access.RatePerPrincipal, Burst: base.Access.BurstPerPrincipal},
		PerClient:    ratelimit.Limit{Rate: base.Access.RatePerClient, Burst: base.Access.BurstPerClient},
		Recorder:     recorder,
		RedisURL:     base.Access.RateRedisURL.Reveal(),
		RedisCACert:  base.Access.RateRedisCACert,
		Scope:        spec.Name,
		StoreTimeout: base.Access.RateRedisTimeout,
		Failure:      ratelimit.FailureMode(base.Access.RateRedisFailure),
		Logger:       p.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("rate limits: %w", err)
	}
	return []grpcserver.Guard{
		ips,
		auth.NewGuard(verifier, auth.WithAdmission(p.Directory), auth.WithRecorder(recorder), auth.WithLogger(p.Logger)),
		p.limiter,
		p.Policy.Guard(),
	}, nil
}

// watchDirectory starts the directory watch and waits, at most directory.LoadTimeout, for the
// bucket's current entries: a process that cannot tell who is deactivated must not serve. The
// watch outlives a broken subscription by watching again; meanwhile the snapshot keeps what it
// had.
func (p *Process) watchDirectory(ctx context.Context, bucket string) error {
	p.Directory = directory.NewSnapshot()
	watchCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	p.stopWatch = stop
	loaded := make(chan struct{})
	go func() {
		first := loaded
		rewatch := backoff.Exponential{Floor: 100 * time.Millisecond, Ceiling: 5 * time.Second, Jitter: 0.2}
		for attempt := 1; ; attempt++ {
			err := directory.Watch(watchCtx, p.JS, bucket, p.Directory, first, p.Logger)
			if watchCtx.Err() != nil {
				return
			}
			if p.Directory.Loaded() {
				first = nil
			}
			p.Logger.LogAttrs(watchCtx, slog.LevelWarn, "directory watch ended; watching again", slog.Any("error", err))
			select {
			case <-watchCtx.Done():
				return
			case <-time.After(rewatch.Delay(attempt)):
			}
		}
	}()
	select {
	case <-loaded:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(directory.LoadTimeout):
		return fmt.Errorf("directory bucket %s: not loaded within %s", bucket, directory.LoadTimeout)
	}
}

func natsOptions(c config.NATS) []nats.Option {
	var opts []nats.Option
	if c.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	}
	if c.CACert != "" {
		opts = append(opts, nats.RootCAs(c.CACert))
	}
	return opts
}

// Go adds background work that runs beside the gRPC server until shutdown. The work must return
// when its context is cancelled; an error from it stops the whole process.
func (p *Process) Go(task func(context.Context) error) {
	p.tasks = append(p.tasks, task)
}

// ServeOn makes Run serve gRPC on lis instead of listening on the configured address. Tests
// use it with a listener they opened on port 0, so no other process can take the port between
// choosing it and listening on it.
func (p *Process) ServeOn(lis net.Listener) { p.listener = lis }

// ServeHTTPOn makes Run serve the HTTP edge on lis instead of listening on
// SECUREMSG_HTTP_ADDR (for tests, as ServeOn), even when that address is unset.
func (p *Process) ServeHTTPOn(lis net.Listener) { p.httpListener = lis }

// HandleHTTP mounts a plain HTTP route on the edge beside the transcoded rpcs (net/http
// ServeMux pattern). h must enter the gRPC server's interceptor chain itself
// (grpc.Server.ServeHTTP), so that the route passes the same guards as every rpc. Call it before
// Run; without an HTTP listener the route is not served.
func (p *Process) HandleHTTP(pattern string, h http.Handler) {
	if p.httpRoutes == nil {
		p.httpRoutes = map[string]http.Handler{}
	}
	p.httpRoutes[pattern] = h
}

// Run serves gRPC — and the HTTP edge when SECUREMSG_HTTP_ADDR is set — and runs the background
// work until ctx is cancelled (SIGTERM) or one of them fails, then shuts down in order (the
// edge finishes its requests, then gRPC drains) and releases the connections.
func (p *Process) Run(ctx context.Context) error {
	defer p.close()
	edge, edgeListener, err := p.httpEdge()
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	serveGRPC := func() error { return p.Server.Run(gctx) }
	if p.listener != nil {
		serveGRPC = func() error { return p.Server.Serve(gctx, p.listener) }
	}
	g.Go(func() error {
		err := serveGRPC()
		if edge != nil {
			// Normally done already, before GracefulStop (BeforeStop); this covers a gRPC server
			// that failed to listen, so the edge never outlives it.
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(gctx), p.server.ShutdownTimeout)
			edge.Shutdown(stopCtx)
			cancel()
		}
		return err
	})
	if edge != nil {
		g.Go(func() error { return edge.Serve(edgeListener) })
	}
	for _, task := range p.tasks {
		g.Go(func() error {
			if err := task(gctx); err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		})
	}
	p.Logger.Info("service started")
	err = g.Wait()
	p.Logger.Info("service stopped")
	return err
}

// httpEdge builds the browser edge over the registered services and opens its listener; nil
// when the service has no HTTP surface. It runs in Run because the transcoder learns the
// services once, and they are registered between Start and Run.
func (p *Process) httpEdge() (*httpedge.Edge, net.Listener, error) {
	if p.server.HTTPAddr == "" && p.httpListener == nil {
		return nil, nil, nil
	}
	edge, err := httpedge.New(p.Server.GRPC(), httpedge.Options{
		TLS:                  p.Server.EdgeTLSConfig(),
		AllowedOrigins:       p.server.HTTPAllowedOrigins,
		MaxMessageBytes:      p.server.MaxRecvMsgBytes,
		MaxConcurrentStreams: p.server.MaxConcurrentStreams,
		OpenAPI:              openapi.Document,
		Routes:               p.httpRoutes,
		Logger:               p.Logger,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("http edge: %w", err)
	}
	lis := p.httpListener
	if lis == nil {
		if lis, err = net.Listen("tcp", p.server.HTTPAddr); err != nil {
			return nil, nil, fmt.Errorf("http edge: listen on %s: %w", p.server.HTTPAddr, err)
		}
	}
	p.Server.BeforeStop(edge.Shutdown)
	return edge, lis, nil
}

func (p *Process) close() {
	if p.stopWatch != nil {
		p.stopWatch()
	}
	if p.NATS != nil {
		// Drain flushes pending publishes and acks before closing.
		if err := p.NATS.Drain(); err != nil {
			p.NATS.Close()
		}
	}
	if p.Pool != nil {
		p.Pool.Close()
	}
	if p.limiter != nil {
		_ = p.limiter.Close() // only Redis connections: nothing is lost if closing them fails
	}
}

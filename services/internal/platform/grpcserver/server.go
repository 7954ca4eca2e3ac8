package grpcserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/securemsg/securemsg/services/internal/platform/config"
)

// Limits and timings that are policy rather than deployment settings.
const (
	// maxHeaderListBytes bounds request metadata: a bearer token is a few KB; megabytes of
	// headers are an attack.
	maxHeaderListBytes = 64 << 10
	// handshakeTimeout bounds the TLS handshake so idle half-open connections cannot pile up.
	handshakeTimeout = 10 * time.Second
	// keepaliveMinTime is the most often a client may ping; more often and the server sends
	// GOAWAY (too_many_pings). Dial's clients ping every clientKeepaliveTime, above it.
	keepaliveMinTime = 15 * time.Second
)

// Server is a configured gRPC server. Register services on GRPC() before calling Run or Serve.
type Server struct {
	cfg    config.Server
	log    *slog.Logger
	grpc   *grpc.Server
	health *health.Server
	// stopWatchers ends health Watch streams so GracefulStop need not wait for them.
	stopWatchers context.CancelFunc
	// tls is the gRPC listener's TLS configuration; EdgeTLSConfig derives the HTTP edge's.
	tls *tls.Config
	// beforeStop run after the drain and before GracefulStop (see BeforeStop).
	beforeStop []func(context.Context)
	metrics    *grpcprom.ServerMetrics
	registry   *prometheus.Registry
}

// Option configures New.
type Option func(*options)

type options struct {
	logger        *slog.Logger
	guards        []Guard
	tlsConfig     *tls.Config
	registry      *prometheus.Registry
	serverOptions []grpc.ServerOption
}

// WithLogger sets the logger (default slog.Default()). Build it with logging.New so redaction
// applies.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithGuards appends guards (authentication, policy, rate limits, IP lists) to the chain, run in
// the order given. Health and reflection calls bypass them.
func WithGuards(g ...Guard) Option { return func(o *options) { o.guards = append(o.guards, g...) } }

// WithTLSConfig replaces the certificates from the configuration's files with c (tests, or
// certificates from elsewhere). The minimum version is still raised to TLS 1.2.
func WithTLSConfig(c *tls.Config) Option { return func(o *options) { o.tlsConfig = c } }

// WithMetricsRegistry registers the server's metrics in r instead of a fresh registry (which
// holds the Go and process collectors). MetricsHandler serves r.
func WithMetricsRegistry(r *prometheus.Registry) Option {
	return func(o *options) { o.registry = r }
}

// WithServerOptions appends raw grpc.ServerOptions (WithTracing installs its stats handler
// through it).
func WithServerOptions(so ...grpc.ServerOption) Option {
	return func(o *options) { o.serverOptions = append(o.serverOptions, so...) }
}

// New builds a server from cfg. It loads the TLS material now, so a bad certificate fails at
// start-up rather than on the first handshake.
func New(cfg config.Server, opts ...Option) (*Server, error) {
	o := options{logger: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	tlsConf, err := serverTLSConfig(cfg, o.tlsConfig)
	if err != nil {
		return nil, err
	}
	if cfg.MaxRecvMsgBytes <= 0 || cfg.MaxConcurrentStreams == 0 {
		return nil, errors.New("grpcserver: MaxRecvMsgBytes and MaxConcurrentStreams must be positive")
	}

	s := &Server{cfg: cfg, log: o.logger, health: health.NewServer(), registry: o.registry, tls: tlsConf}
	if s.registry == nil {
		s.registry = prometheus.NewRegistry()
		s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	s.metrics = grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
	panics := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "grpc_server_panics_recovered_total",
		Help: "Panics recovered in gRPC handlers and guards.",
	})
	if err := errors.Join(s.registry.Register(s.metrics), s.registry.Register(panics)); err != nil {
		return nil, fmt.Errorf("grpcserver: register metrics: %w", err)
	}

	addr, err := newClientAddress(cfg)
	if err != nil {
		return nil, err
	}
	unary, stream := buildChain(s.metrics, s.log, addr, o.guards, panics)
	serverOpts := append([]grpc.ServerOption{
		grpc.Creds(credentials.NewTLS(tlsConf)),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             keepaliveMinTime,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: 15 * time.Minute,
			// Recycling connections lets clients re-resolve and spread over new replicas.
			MaxConnectionAge:      30 * time.Minute,
			MaxConnectionAgeGrace: cfg.ShutdownTimeout,
			Time:                  time.Minute,
			Timeout:               20 * time.Second,
		}),
		grpc.MaxRecvMsgSize(cfg.MaxRecvMsgBytes),
		// Bounds concurrent handlers per connection; with grpc-go's own rapid-reset defences this
		// caps what an HTTP/2 RST_STREAM flood can start.
		grpc.MaxConcurrentStreams(cfg.MaxConcurrentStreams),
		grpc.MaxHeaderListSize(maxHeaderListBytes),
		grpc.ConnectionTimeout(handshakeTimeout),
	}, o.serverOptions...)
	s.grpc = grpc.NewServer(serverOpts...)

	watchCtx, stopWatchers := context.WithCancel(context.Background())
	s.stopWatchers = stopWatchers
	healthpb.RegisterHealthServer(s.grpc, &healthService{Server: s.health, stopping: watchCtx})
	if cfg.Dev {
		// Reflection lists every rpc and message; handy with grpcurl, needless in production.
		reflection.Register(s.grpc)
	}
	return s, nil
}

// GRPC returns the underlying server, for registering services.
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// EdgeTLSConfig is the TLS configuration of the HTTP edge (package httpedge): the gRPC
// listener's certificate, rotation and TLS 1.2 floor, but no client certificate is ever asked
// for — a browser would show its user a certificate picker, and the service-to-service rpcs a
// certificate identifies are not on the browser surface. Without a verified chain, no request
// over the edge can pass as a service (auth.PeerService).
func (s *Server) EdgeTLSConfig() *tls.Config {
	c := s.tls.Clone()
	c.ClientAuth, c.ClientCAs, c.VerifyPeerCertificate, c.VerifyConnection = tls.NoClientCert, nil, nil, nil
	c.NextProtos = nil // net/http offers h2 and http/1.1
	return c
}

// BeforeStop registers stop to run during shutdown after the drain and before GracefulStop,
// with a context that ends at the shutdown deadline. The HTTP edge uses it: its requests run
// through this server's ServeHTTP, which GracefulStop cuts off, so the edge must finish its
// requests first. Register before Serve or Run.
func (s *Server) BeforeStop(stop func(ctx context.Context)) {
	s.beforeStop = append(s.beforeStop, stop)
}

// Health returns the health service. Serve marks the server and every registered service
// SERVING; shutdown marks them NOT_SERVING. A service may flip its own status in between (for
// example while its database is unreachable).
func (s *Server) Health() *health.Server { return s.health }

// MetricsRegistry returns the registry the server's metrics live in; services register their
// own collectors here so one /metrics endpoint serves all.
func (s *Server) MetricsRegistry() *prometheus.Registry { return s.registry }

// MetricsHandler serves the registry in the Prometheus exposition format.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry})
}

// Run listens on cfg.GRPCAddr (and cfg.MetricsAddr, when set, serving /metrics over HTTP) and
// serves until ctx is done, then shuts down as Serve does.
func (s *Server) Run(ctx context.Context) error {
	lis, err := net.Listen("tcp", s.cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("grpcserver: listen on %s: %w", s.cfg.GRPCAddr, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	if s.cfg.MetricsAddr != "" {
		mlis, err := net.Listen("tcp", s.cfg.MetricsAddr)
		if err != nil {
			_ = lis.Close()
			return fmt.Errorf("grpcserver: listen on %s for metrics: %w", s.cfg.MetricsAddr, err)
		}
		g.Go(func() error { return s.serveMetrics(gctx, mlis) })
	}
	if s.cfg.HealthAddr != "" {
		hlis, err := net.Listen("tcp", s.cfg.HealthAddr)
		if err != nil {
			_ = lis.Close()
			return fmt.Errorf("grpcserver: listen on %s for health probes: %w", s.cfg.HealthAddr, err)
		}
		g.Go(func() error { return s.serveHealthProbes(gctx, hlis) })
	}
	g.Go(func() error { return s.Serve(gctx, lis) })
	return g.Wait()
}

// serveHealthProbes serves the health service alone, in plaintext, for probes that cannot speak
// TLS. It shares the main server's health state, so it turns NOT_SERVING during shutdown too.
func (s *Server) serveHealthProbes(ctx context.Context, lis net.Listener) error {
	hs := grpc.NewServer(grpc.MaxRecvMsgSize(4096), grpc.MaxConcurrentStreams(16))
	healthpb.RegisterHealthServer(hs, s.health)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(lis) }()
	s.log.InfoContext(ctx, "health probe listener", "addr", lis.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("grpcserver: health probe listener: %w", err)
	case <-ctx.Done():
	}
	hs.Stop()
	return nil
}

func (s *Server) serveMetrics(ctx context.Context, lis net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.MetricsHandler())
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(lis) }()
	select {
	case err := <-errc:
		return fmt.Errorf("grpcserver: metrics server: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return hs.Shutdown(shutdownCtx)
}

// Serve serves on lis until ctx is done, then shuts down gracefully: health turns NOT_SERVING,
// the server keeps serving for cfg.ShutdownDrain so balancers notice, then GracefulStop lets open
// rpcs finish; whatever is still running when cfg.ShutdownTimeout (counted from ctx being done)
// passes is cut off with Stop. It returns nil after a shutdown caused by ctx.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	s.metrics.InitializeMetrics(s.grpc)
	s.health.Resume()
	for name := range s.grpc.GetServiceInfo() {
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)

	errc := make(chan error, 1)
	go func() { errc <- s.grpc.Serve(lis) }()
	s.log.InfoContext(ctx, "grpc server listening", "addr", lis.Addr().String(), "dev", s.cfg.Dev)

	select {
	case err := <-errc:
		s.health.Shutdown()
		s.runBeforeStop(ctx, time.Now().Add(s.cfg.ShutdownTimeout))
		return fmt.Errorf("grpcserver: serve: %w", err)
	case <-ctx.Done():
	}
	s.shutdown(ctx)
	// grpc's Serve returns nil once Stop or GracefulStop is called, and ErrServerStopped when the
	// stop came first (ctx ended before the goroutine reached Serve); anything else is a failure
	// that happened while stopping and is worth reporting.
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("grpcserver: serve: %w", err)
	}
	return nil
}

func (s *Server) shutdown(ctx context.Context) {
	deadline := time.Now().Add(s.cfg.ShutdownTimeout)
	s.log.InfoContext(ctx, "grpc server shutting down", "drain", s.cfg.ShutdownDrain.String())
	s.health.Shutdown() // every service NOT_SERVING; watchers are told at once

	drain := time.NewTimer(s.cfg.ShutdownDrain)
	<-drain.C
	s.stopWatchers()
	s.runBeforeStop(ctx, deadline)

	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	timeout := time.NewTimer(time.Until(deadline))
	defer timeout.Stop()
	select {
	case <-stopped:
		s.log.InfoContext(ctx, "grpc server stopped")
	case <-timeout.C:
		s.log.WarnContext(ctx, "grpc server graceful stop timed out; cutting off open rpcs")
		s.grpc.Stop()
		<-stopped
	}
}

// runBeforeStop runs the BeforeStop work, all at once, bounded by deadline.
func (s *Server) runBeforeStop(ctx context.Context, deadline time.Time) {
	if len(s.beforeStop) == 0 {
		return
	}
	stopCtx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	var wg sync.WaitGroup
	for _, stop := range s.beforeStop {
		wg.Go(func() { stop(stopCtx) })
	}
	wg.Wait()
}

// SignalContext returns a context cancelled on SIGTERM or SIGINT, for Run. Call stop to release
// the signal handler; a second signal after the first then kills the process as usual.
func SignalContext(parent context.Context) (ctx context.Context, stop context.CancelFunc) {
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}

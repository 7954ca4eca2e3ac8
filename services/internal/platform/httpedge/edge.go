// Package httpedge serves a service's browser surface over HTTP: Connect (JSON and binary),
// gRPC-Web and REST (the google.api.http routes of the protos), on a listener of its own
// (SECUREMSG_HTTP_ADDR), over TLS with the gRPC listener's certificate, HTTP/1.1 and HTTP/2.
//
// It writes no handler of its own for any rpc. connectrpc.com/vanguard transcodes each request
// to gRPC and hands it to the service's *grpc.Server (its ServeHTTP), so every protocol runs the
// same handlers behind the same interceptor chain — client address, IP lists, token
// verification, rate limits, the Cedar policy, audit, validation, error masking — and a refusal
// carries the same google.rpc.ErrorInfo whatever the protocol.
//
// Only the browser surface (policy.OnBrowserSurface) is routed; every other method, the
// service-to-service and admin rpcs and the health and reflection services included, is not
// found here and stays reachable over native gRPC only.
//
// Around the transcoder sit the browser safeguards, on every response: CORS for an explicit
// list of origins only (a request from any other origin is refused), Cache-Control: no-store,
// X-Content-Type-Options: nosniff, HSTS, Referrer-Policy: no-referrer and a Content-Security-
// Policy that lets nothing render; a bearer token in the URL (access_token) is refused, since a
// URL reaches access logs, browser history and Referer headers.
package httpedge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sort"
	"time"

	"connectrpc.com/vanguard"
	"google.golang.org/grpc"

	"github.com/securemsg/securemsg/services/internal/platform/policy"
)

// Limits that are policy rather than deployment settings.
const (
	// readHeaderTimeout bounds how long a client may take to send its request headers
	// (slowloris); bodies and streams are not bounded here: uploads and WatchInbox run long.
	readHeaderTimeout = 10 * time.Second
	// idleTimeout closes keep-alive connections nobody uses.
	idleTimeout = 2 * time.Minute
	// maxHeaderBytes matches the gRPC listener's bound on request metadata.
	maxHeaderBytes = 64 << 10
)

// Options configure New.
type Options struct {
	// TLS is the listener's TLS configuration (grpcserver.Server.EdgeTLSConfig). Required:
	// there is no plaintext mode.
	TLS *tls.Config
	// AllowedOrigins are the browser origins allowed cross-origin (config.Server.
	// HTTPAllowedOrigins, validated there: exact origins, no wildcard).
	AllowedOrigins []string
	// MaxMessageBytes caps one request or response message the transcoder buffers (a REST or
	// Connect unary body); the gRPC server's own receive limit (SECUREMSG_GRPC_MAX_RECV_BYTES)
	// is the natural value.
	MaxMessageBytes int
	// MaxConcurrentStreams caps concurrent streams per HTTP/2 connection, as on the gRPC
	// listener (SECUREMSG_GRPC_MAX_CONCURRENT_STREAMS).
	MaxConcurrentStreams uint32
	// OpenAPI returns the OpenAPI document of a service by its full protobuf name (gen/openapi's
	// Document); the edge serves the document of the service it carries at GET /openapi.json.
	// Nil: no document is served.
	OpenAPI func(service string) ([]byte, bool)
	// OnSurface decides which full methods are routed (default policy.OnBrowserSurface). Tests
	// set it to route their own services.
	OnSurface func(fullMethod string) bool
	// Routes are plain HTTP routes beside the transcoded rpcs, by net/http ServeMux pattern
	// (attachment's ranged download). They sit inside the same browser safety (headers, CORS,
	// the refusals of unlisted origins, tokens and PHI in URLs), and each must enter the gRPC
	// server's interceptor chain itself (grpc.Server.ServeHTTP), so no route bypasses the guards.
	Routes map[string]http.Handler
	// Logger receives the HTTP server's own errors (TLS handshakes, malformed requests) at debug
	// level, as scanners cause them all day, and at info a line for each request the edge
	// refused itself (logRefusals). Default slog.Default().
	Logger *slog.Logger
}

// Edge is the HTTP listener of one service process.
type Edge struct {
	handler http.Handler
	server  *http.Server
	log     *slog.Logger
}

// New builds the edge over srv, whose services must all be registered already: the transcoder
// learns the services (and their REST routes) once, here.
func New(srv *grpc.Server, opts Options) (*Edge, error) {
	if opts.TLS == nil {
		return nil, errors.New("httpedge: a TLS configuration is required (there is no plaintext mode)")
	}
	if opts.MaxMessageBytes <= 0 || opts.MaxConcurrentStreams == 0 {
		return nil, errors.New("httpedge: MaxMessageBytes and MaxConcurrentStreams must be positive")
	}
	if opts.OnSurface == nil {
		opts.OnSurface = policy.OnBrowserSurface
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	services := servicesOnSurface(srv, opts.OnSurface)
	if len(services) == 0 {
		return nil, errors.New("httpedge: none of the server's rpcs is on the browser surface")
	}
	transcoder, err := newTranscoder(srv, services, opts)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	if doc, ok := openAPIDocument(services, opts.OpenAPI); ok {
		mux.Handle("GET /openapi.json", serveDocument(doc))
	}
	for pattern, h := range opts.Routes {
		mux.Handle(pattern, plainRoute(h))
	}
	mux.Handle("/", onlySurfacePaths(opts.OnSurface, transcoder))

	phi := phiFieldNames(services)
	e := &Edge{handler: logRefusals(opts.Logger, browserSafety(newCORS(opts.AllowedOrigins), refusePHIInQuery(phi, mux))), log: opts.Logger}
	e.server = &http.Server{
		Handler:           e.handler,
		TLSConfig:         opts.TLS,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelDebug),
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: int(opts.MaxConcurrentStreams)},
	}
	return e, nil
}

// servicesOnSurface lists the registered services with at least one method on the surface,
// sorted (health and reflection have none).
func servicesOnSurface(srv *grpc.Server, onSurface func(string) bool) []string {
	var out []string
	for name, info := range srv.GetServiceInfo() {
		if slices.ContainsFunc(info.Methods, func(m grpc.MethodInfo) bool { return onSurface("/" + name + "/" + m.Name) }) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// newTranscoder builds the vanguard transcoder for services, each handed to srv through
// surfaceOnly. It is what vanguardgrpc.NewTranscoder builds, with that guard in front of the
// gRPC server and only the services that have something on the surface.
func newTranscoder(srv *grpc.Server, services []string, opts Options) (http.Handler, error) {
	grpcHandler := surfaceOnly(opts.OnSurface, srv)
	vs := make([]*vanguard.Service, 0, len(services))
	for _, name := range services {
		vs = append(vs, vanguard.NewService(name, grpcHandler))
	}
	t, err := vanguard.NewTranscoder(vs, vanguard.WithDefaultServiceOptions(
		vanguard.WithTargetProtocols(vanguard.ProtocolGRPC),
		vanguard.WithTargetCodecs(vanguard.CodecProto),
		vanguard.WithMaxMessageBufferBytes(uint32(opts.MaxMessageBytes)), //nolint:gosec // G115: positive (checked in New) and an int the gRPC server accepted
	))
	if err != nil {
		return nil, fmt.Errorf("httpedge: transcoder: %w", err)
	}
	return t, nil
}

// Handler is the edge's whole HTTP handler (safeguards, CORS, routes); tests and benchmarks
// serve it on listeners of their own.
func (e *Edge) Handler() http.Handler { return e.handler }

// Serve serves TLS on lis until Shutdown; it returns nil after Shutdown.
func (e *Edge) Serve(lis net.Listener) error {
	e.log.Info("http edge listening", "addr", lis.Addr().String())
	// The certificate comes from TLSConfig.GetCertificate (rotated files), hence no file names.
	if err := e.server.ServeTLS(lis, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("httpedge: serve: %w", err)
	}
	return nil
}

// Shutdown stops accepting requests and waits for those in flight until ctx ends, then closes
// every connection. grpcserver runs it before its GracefulStop (BeforeStop), since the edge's
// requests run on the gRPC server.
func (e *Edge) Shutdown(ctx context.Context) {
	if err := e.server.Shutdown(ctx); err != nil {
		e.log.WarnContext(ctx, "http edge graceful shutdown timed out; closing open requests")
		_ = e.server.Close() // the connections are being abandoned; their close errors change nothing
	}
}

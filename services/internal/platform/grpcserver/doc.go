// Package grpcserver builds the gRPC server every securemsg service runs, and the client every
// service dials its peers with.
//
// A server always has: TLS from files (TLS 1.2 minimum, client certificates verified against a
// CA when one is configured, required for mTLS), the standard health service, reflection only in
// dev, keepalive enforcement and message/stream limits, Prometheus metrics, and one interceptor
// chain built in one place (chain.go) that assigns request ids, logs one line per rpc, runs the
// caller's guards (auth, policy, rate limits), validates requests and turns every error into a
// gRPC status at the edge — masking internal errors and panics behind "internal error (request
// id X)" while logging the real cause with that id.
//
// Typical use in a service's main:
//
//	srv, err := grpcserver.New(cfg.Server, grpcserver.WithLogger(log), grpcserver.WithGuards(authGuard, rateGuard))
//	messagingv1.RegisterMessagingServiceServer(srv.GRPC(), handler)
//	ctx, stop := grpcserver.SignalContext(context.Background())
//	defer stop()
//	return srv.Run(ctx) // serves until SIGTERM/SIGINT, then shuts down gracefully
package grpcserver

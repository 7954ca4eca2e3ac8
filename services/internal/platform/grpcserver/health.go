package grpcserver

import (
	"context"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// healthService is grpc-go's health server, except that Watch streams end when shutdown reaches
// GracefulStop. GracefulStop waits for every open rpc, and a client-side health watcher never
// hangs up by itself, so without this every shutdown would run into its timeout.
type healthService struct {
	*health.Server
	stopping context.Context // done when watchers must let go
}

// Watch implements grpc.health.v1.Health: it reports changes (including NOT_SERVING at the
// start of shutdown) until the client leaves or the server stops.
func (h *healthService) Watch(in *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	stopWatching := context.AfterFunc(h.stopping, cancel)
	defer stopWatching()
	return h.Server.Watch(in, watchStream{Health_WatchServer: stream, ctx: ctx})
}

type watchStream struct {
	healthpb.Health_WatchServer
	ctx context.Context
}

func (w watchStream) Context() context.Context { return w.ctx }

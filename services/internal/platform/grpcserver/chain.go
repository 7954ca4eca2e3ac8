package grpcserver

import (
	"log/slog"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// buildChain is the one place the interceptor chain is assembled. The first interceptor is the
// outermost: it sees the call first and the final status last.
//
//  0. tracing — when WithTracing is given (the daemon does so when OTEL_* asks for export):
//     otelgrpc is a stats handler, and stats handlers wrap this whole chain.
//  1. metrics — rpc count and latency by service, method and code (never PHI labels). Outside
//     error mapping, so it counts the codes clients actually receive.
//     client address — only when trusted proxies are configured: the client's address from the
//     forwarding header replaces the proxy's as the rpc's peer (clientaddr.go), before anything
//     below logs, limits, filters or audits by address.
//  2. request id — accepted from x-request-id when well formed, else generated; returned in the
//     response header; puts the request logger in the context for everything below.
//  3. access log — one line per rpc: method, code, duration, request id, peer, and the
//     principal/client app the guards learn. No payloads.
//  4. error mapping/masking — every error becomes a status here (ToStatus). Internal errors are
//     masked as "internal error (request id X)" and logged with that id.
//  5. recovery — a panic becomes an internal error (masked by 4); the stack is logged.
//  6. guards — caller-supplied auth, policy, rate-limit, IP-list checks; health and reflection
//     bypass them.
//  7. validation — a request with Validate() error is checked; failure → InvalidArgument.
//
// STYLE.md lists guards and validation before error mapping and recovery. Here they sit inside
// them on purpose: a guard is code like any handler, so its internal errors must be masked and
// its panics recovered too; with guards outermost, a failing policy engine's error text would
// reach the client and a panicking rate limiter would crash the process. Validation stays after
// the guards so unauthenticated callers learn nothing about request rules.
func buildChain(metrics *grpcprom.ServerMetrics, log *slog.Logger, addr *clientAddress, guards []Guard, panics prometheus.Counter) ([]grpc.UnaryServerInterceptor, []grpc.StreamServerInterceptor) {
	unary := []grpc.UnaryServerInterceptor{metrics.UnaryServerInterceptor()}
	stream := []grpc.StreamServerInterceptor{metrics.StreamServerInterceptor()}
	if addr != nil {
		unary = append(unary, unaryClientAddress(addr))
		stream = append(stream, streamClientAddress(addr))
	}
	unary = append(unary,
		unaryRequestID(log),
		unaryAccessLog(),
		unaryErrors(),
		unaryRecovery(panics),
	)
	stream = append(stream,
		streamRequestID(log),
		streamAccessLog(),
		streamErrors(),
		streamRecovery(panics),
	)
	for _, g := range guards {
		if g == nil {
			continue
		}
		if u := g.UnaryServerInterceptor(); u != nil {
			unary = append(unary, unaryGuard(u))
		}
		if s := g.StreamServerInterceptor(); s != nil {
			stream = append(stream, streamGuard(s))
		}
	}
	unary = append(unary, unaryValidation())
	stream = append(stream, streamValidation())
	return unary, stream
}

package supervisor

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"time"
)

// JaegerConfig is where the dev stack's trace backend lives, in the repository: one file for
// the dev stack and private stacks alike, its addresses filled in from the environment.
const JaegerConfig = "devstack/jaeger/jaeger.yaml"

// JaegerAddrs are a Jaeger's loopback endpoints.
type JaegerAddrs struct {
	// OTLPHTTP receives spans over OTLP/HTTP ("http://" + it is OTEL_EXPORTER_OTLP_ENDPOINT).
	OTLPHTTP string
	// Query serves the query API (/api/traces, /api/services) and the UI.
	Query string
	// Health answers 200 once the pipeline runs.
	Health string
	// OTLPGRPC and QueryGRPC are the gRPC twins of OTLPHTTP and Query.
	OTLPGRPC, QueryGRPC string
}

// OTLPEndpoint is the OTEL_EXPORTER_OTLP_ENDPOINT that sends spans to this Jaeger.
func (a JaegerAddrs) OTLPEndpoint() string { return "http://" + a.OTLPHTTP }

// QueryURL is the base URL of the query API.
func (a JaegerAddrs) QueryURL() string { return "http://" + a.Query }

// jaegerComponent runs the pinned Jaeger with JaegerConfig on addrs, logging to dir.
func jaegerComponent(root, dir, bin string, addrs JaegerAddrs, within time.Duration) *Component {
	p := newProcess("jaeger", filepath.Join(dir, "jaeger.log"), bin, "--config=file:"+filepath.Join(root, JaegerConfig))
	p.env = append(p.env,
		"JAEGER_OTLP_HTTP_ADDR="+addrs.OTLPHTTP, "JAEGER_OTLP_GRPC_ADDR="+addrs.OTLPGRPC,
		"JAEGER_QUERY_ADDR="+addrs.Query, "JAEGER_QUERY_GRPC_ADDR="+addrs.QueryGRPC,
		"JAEGER_HEALTH_ADDR="+addrs.Health)
	p.settings = []string{p.args[0]}
	health := "http://" + addrs.Health + "/status"
	return &Component{name: p.name, proc: p, addr: addrs.OTLPHTTP, within: within,
		ready: func(ctx context.Context) error {
			if err := httpOK(ctx, http.MethodGet, health); err != nil {
				return err
			}
			return httpOK(ctx, http.MethodGet, "http://"+addrs.Query+"/api/services")
		}}
}

// StartJaeger starts the pinned Jaeger (in-memory storage) on free loopback ports with its
// state in dir and waits until it takes spans and answers queries: the trace backend of a test
// that follows a request through the services. Jaeger is built on first use
// (scripts/lib/tools.sh); a machine that cannot build it gets an UnavailableError.
func StartJaeger(ctx context.Context, root, dir string) (*Component, JaegerAddrs, error) {
	bin, err := ToolPath(root, "jaeger")
	if err != nil {
		return nil, JaegerAddrs{}, err
	}
	ports := make([]int, 0, 5)
	for len(ports) < 5 {
		port, err := FreePort()
		if err != nil {
			return nil, JaegerAddrs{}, err
		}
		// Picked, not held: a later pick may return a port already chosen.
		if !slices.Contains(ports, port) {
			ports = append(ports, port)
		}
	}
	addrs := JaegerAddrs{OTLPHTTP: HostPort(ports[0]), OTLPGRPC: HostPort(ports[1]), Query: HostPort(ports[2]),
		QueryGRPC: HostPort(ports[3]), Health: HostPort(ports[4])}
	c := jaegerComponent(root, dir, bin, addrs, 60*time.Second)
	if err := c.start(ctx); err != nil {
		return c, addrs, fmt.Errorf("jaeger: %w", err)
	}
	return c, addrs, nil
}

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

// DevJaegerAddrs are the dev stack's Jaeger ports, Jaeger's own defaults: OTLP on 4317/4318,
// the UI and query API on 16686.
var DevJaegerAddrs = JaegerAddrs{OTLPHTTP: "127.0.0.1:4318", OTLPGRPC: "127.0.0.1:4317",
	Query: "127.0.0.1:16686", QueryGRPC: "127.0.0.1:16685", Health: "127.0.0.1:13133"}

// configureJaeger points p at JaegerConfig with addrs and returns its readiness check: the
// pipeline is healthy and the query API answers.
func configureJaeger(p *process, root string, addrs JaegerAddrs) func(context.Context) error {
	p.args = []string{"--config=file:" + filepath.Join(root, JaegerConfig)}
	p.env = append(p.env,
		"JAEGER_OTLP_HTTP_ADDR="+addrs.OTLPHTTP, "JAEGER_OTLP_GRPC_ADDR="+addrs.OTLPGRPC,
		"JAEGER_QUERY_ADDR="+addrs.Query, "JAEGER_QUERY_GRPC_ADDR="+addrs.QueryGRPC,
		"JAEGER_HEALTH_ADDR="+addrs.Health)
	p.settings = []string{p.args[0], fileDigest(filepath.Join(root, JaegerConfig))}
	health := "http://" + addrs.Health + "/status"
	return func(ctx context.Context) error {
		if err := httpOK(ctx, http.MethodGet, health); err != nil {
			return err
		}
		return httpOK(ctx, http.MethodGet, "http://"+addrs.Query+"/api/services")
	}
}

// jaeger is the dev stack's trace backend, run when Config.Traces asks (SECUREMSG_TRACES=1
// make up) and stopped by an `up` without it, so turning traces off needs no `down`.
func (s *Stack) jaeger() *Component {
	c := &Component{name: "jaeger", proc: s.newProc("jaeger"), addr: DevJaegerAddrs.OTLPHTTP, within: s.cfg.StartTimeout}
	c.ready = configureJaeger(c.proc, s.cfg.Root, DevJaegerAddrs)
	c.prepare = func(context.Context) error {
		var err error
		c.proc.path, err = ToolPath(s.cfg.Root, "jaeger")
		return err
	}
	return c
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
	p := newProcess("jaeger", filepath.Join(dir, "jaeger.log"), bin)
	c := &Component{name: p.name, proc: p, addr: addrs.OTLPHTTP, within: 60 * time.Second}
	c.ready = configureJaeger(p, root, addrs)
	if err := c.start(ctx); err != nil {
		return c, addrs, fmt.Errorf("jaeger: %w", err)
	}
	return c, addrs, nil
}

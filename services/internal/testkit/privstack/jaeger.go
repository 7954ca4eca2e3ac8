package privstack

import (
	"testing"

	"github.com/securemsg/securemsg/services/internal/testkit"
	"github.com/securemsg/securemsg/services/internal/testkit/internal/supervisor"
)

// Jaeger is a trace backend of its own (Jaeger v2, in-memory storage), outside any Stack,
// started by StartJaeger. Its Component methods (Stop, Start, LogFile) work as a Stack's do.
type Jaeger struct {
	*Component
	addrs supervisor.JaegerAddrs
}

// OTLPEndpoint is the OTEL_EXPORTER_OTLP_ENDPOINT (OTLP/HTTP) that sends spans here.
func (j *Jaeger) OTLPEndpoint() string { return j.addrs.OTLPEndpoint() }

// QueryURL is the base URL of Jaeger's query API (QueryURL()+"/api/traces/<trace id>").
func (j *Jaeger) QueryURL() string { return j.addrs.QueryURL() }

// StartJaeger starts the pinned Jaeger on free 127.0.0.1 ports, waits until it is ready and
// stops it when tb ends. Give its OTLPEndpoint to a Stack's services through Options.Env
// (OTEL_EXPORTER_OTLP_ENDPOINT) to trace them. A machine that cannot build Jaeger ends tb
// through testkit.Unavailable.
func StartJaeger(tb testing.TB) *Jaeger {
	tb.Helper()
	c, addrs, err := supervisor.StartJaeger(tb.Context(), testkit.RepoRoot(), tb.TempDir())
	if c != nil {
		tb.Cleanup(func() {
			if err := c.Stop(); err != nil {
				tb.Error(err)
			}
			if tb.Failed() {
				tb.Logf("privstack: jaeger log:\n%s", supervisor.LogTail(c.LogFile(), 30))
			}
		})
	}
	if missing, ok := supervisor.Unavailable(err); ok {
		testkit.Unavailable(tb, missing.Component, err)
		return nil
	}
	if err != nil {
		tb.Fatalf("privstack: %v", err)
	}
	return &Jaeger{Component: c, addrs: addrs}
}

package grpcserver_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver/grpctest"
	"github.com/securemsg/securemsg/services/internal/platform/ipfilter"
	"github.com/securemsg/securemsg/services/internal/platform/ratelimit"
)

const sourceMethod = "/securemsg.test.v1.Source/AuditSource"

// sourceDesc is a service whose one rpc answers with the source_ip of the audit record it would
// write for the call, built as every service builds one.
func sourceDesc(emitter *auditlog.Emitter) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "securemsg.test.v1.Source",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "AuditSource",
			Handler: func(_ any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
				if err := dec(&emptypb.Empty{}); err != nil {
					return nil, err
				}
				h := func(ctx context.Context, _ any) (any, error) {
					rec := emitter.NewRecord(ctx, eventsv1.Action_ACTION_READ, auditlog.Target{Type: eventsv1.RecordType_RECORD_TYPE_THREAD, ID: "t-1"})
					return wrapperspb.String(rec.GetSourceIp()), nil
				}
				return interceptor(ctx, &emptypb.Empty{}, &grpc.UnaryServerInfo{FullMethod: sourceMethod}, h)
			},
		}},
	}
}

// decisions collects the refusals the guards record.
type decisions struct {
	mu   sync.Mutex
	recs []auth.DecisionRecord
}

func (d *decisions) RecordDecision(_ context.Context, rec auth.DecisionRecord) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.recs = append(d.recs, rec)
	return nil
}

func (d *decisions) sources(reason string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, r := range d.recs {
		if r.ReasonCode == reason {
			out = append(out, r.SourceIP)
		}
	}
	return out
}

// proxied is a server behind trusted proxies, guarded by an IP deny list and a per-caller rate
// limit (burst 1: a second call from the same address is refused), as daemon composes them.
type proxied struct {
	conn      *grpc.ClientConn
	decisions *decisions
	logs      *grpctest.LogBuffer
}

// denied is the client network the IP list refuses.
const denied = "198.51.100.0/24"

func startProxied(t *testing.T, trusted []string, header string) proxied {
	t.Helper()
	pki := grpctest.NewPKI(t)
	cfg := pki.ServerConfig(false)
	cfg.TrustedProxies, cfg.TrustedProxyHeader = trusted, header
	d := &decisions{}
	ips, err := ipfilter.New(nil, []string{denied}, d)
	if err != nil {
		t.Fatal(err)
	}
	limiter, err := ratelimit.New(ratelimit.Config{PerPrincipal: ratelimit.Limit{Rate: 0.001, Burst: 1}, Recorder: d})
	if err != nil {
		t.Fatal(err)
	}
	emitter, err := auditlog.NewEmitter(commonv1.Component_COMPONENT_MESSAGING)
	if err != nil {
		t.Fatal(err)
	}
	h := startServerWith(t, pki, cfg, func(s *grpc.Server) { s.RegisterService(sourceDesc(emitter), struct{}{}) },
		grpcserver.WithGuards(ips, limiter))
	return proxied{conn: h.dial(t), decisions: d, logs: h.logs}
}

// auditSource calls the rpc with the forwarding header values and returns the audit source_ip.
func (p proxied) auditSource(t *testing.T, header string, hops ...string) (string, error) {
	t.Helper()
	ctx := t.Context()
	for _, h := range hops {
		ctx = metadata.AppendToOutgoingContext(ctx, header, h)
	}
	out := &wrapperspb.StringValue{}
	err := p.conn.Invoke(ctx, sourceMethod, &emptypb.Empty{}, out)
	return out.GetValue(), err
}

// TestTrustedProxyClientAddress: the audit record's source_ip is the forwarded client only when
// the TCP peer (here always 127.0.0.1) is a trusted proxy, and then the rightmost untrusted hop.
func TestTrustedProxyClientAddress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		trusted []string
		header  string // SECUREMSG_TRUSTED_PROXY_HEADER
		send    string // the header the caller sends
		hops    []string
		want    string
	}{
		{"no proxies trusted: forwarding header ignored", nil, "X-Forwarded-For", "x-forwarded-for", []string{"192.0.2.10"}, "127.0.0.1"},
		{"untrusted peer: spoofed header ignored", []string{"10.0.0.0/8"}, "X-Forwarded-For", "x-forwarded-for", []string{"192.0.2.10"}, "127.0.0.1"},
		{"trusted proxy: client taken from the header", []string{"127.0.0.1/32"}, "X-Forwarded-For", "x-forwarded-for", []string{"192.0.2.10"}, "192.0.2.10"},
		{"trusted proxy: hops the client wrote are skipped", []string{"127.0.0.1/32"}, "X-Forwarded-For", "x-forwarded-for", []string{"203.0.113.66, 192.0.2.10"}, "192.0.2.10"},
		{"two trusted proxies: the rightmost untrusted hop", []string{"127.0.0.0/8", "10.0.0.0/8"}, "X-Forwarded-For", "x-forwarded-for", []string{"203.0.113.66, 192.0.2.10", "10.1.2.3"}, "192.0.2.10"},
		{"trusted proxy, no header: the proxy", []string{"127.0.0.1/32"}, "X-Forwarded-For", "", nil, "127.0.0.1"},
		{"every hop trusted: the proxy", []string{"127.0.0.0/8", "10.0.0.0/8"}, "X-Forwarded-For", "x-forwarded-for", []string{"10.9.9.9"}, "127.0.0.1"},
		{"hop is no address: the proxy", []string{"127.0.0.1/32"}, "X-Forwarded-For", "x-forwarded-for", []string{"unknown"}, "127.0.0.1"},
		{"IPv6 client, IPv4-mapped form unmapped", []string{"127.0.0.1/32"}, "X-Forwarded-For", "x-forwarded-for", []string{"::ffff:192.0.2.10"}, "192.0.2.10"},
		{"Forwarded header", []string{"127.0.0.1/32"}, "Forwarded", "forwarded", []string{`for=192.0.2.60;proto=https, for="[2001:db8:cafe::17]:4711"`}, "2001:db8:cafe::17"},
		{"Forwarded configured: X-Forwarded-For is not read", []string{"127.0.0.1/32"}, "Forwarded", "x-forwarded-for", []string{"192.0.2.10"}, "127.0.0.1"},
		{"X-Forwarded-For configured: Forwarded is not read", []string{"127.0.0.1/32"}, "X-Forwarded-For", "forwarded", []string{"for=192.0.2.10"}, "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := startProxied(t, tt.trusted, tt.header)
			got, err := p.auditSource(t, tt.send, tt.hops...)
			if err != nil {
				t.Fatalf("call = %v", err)
			}
			if got != tt.want {
				t.Errorf("audit source_ip = %q, want %q", got, tt.want)
			}
			// The access log names the client as peer and, when a proxy forwarded it, the proxy.
			line := accessLine(t, p.logs.String(), sourceMethod)
			if peer, _ := line["peer"].(string); !strings.HasPrefix(peer, tt.want+":") && !strings.HasPrefix(peer, "["+tt.want+"]:") {
				t.Errorf("access log peer = %q, want %s", peer, tt.want)
			}
			proxy, hasProxy := line["proxy"].(string)
			if forwarded := tt.want != "127.0.0.1"; forwarded != hasProxy || (forwarded && !strings.HasPrefix(proxy, "127.0.0.1:")) {
				t.Errorf("access log proxy = %q (present %t), want the proxy exactly when the client was forwarded", proxy, hasProxy)
			}
		})
	}
}

// accessLine is the access-log line of method in logs (JSON lines).
func accessLine(t *testing.T, logs, method string) map[string]any {
	t.Helper()
	for _, l := range strings.Split(logs, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "rpc finished" && m["method"] == method {
			return m
		}
	}
	t.Fatalf("no access-log line for %s in %q", method, logs)
	return nil
}

// TestTrustedProxyFeedsIPListAndRateLimit: the IP list and the rate limit judge the forwarded
// client behind a trusted proxy, and the TCP peer otherwise — so a spoofed header neither
// escapes a deny list nor buys a fresh rate-limit bucket.
func TestTrustedProxyFeedsIPListAndRateLimit(t *testing.T) {
	t.Parallel()
	const xff = "x-forwarded-for"
	t.Run("trusted proxy: denied client refused and recorded with its address", func(t *testing.T) {
		t.Parallel()
		p := startProxied(t, []string{"127.0.0.1/32"}, "X-Forwarded-For")
		if _, err := p.auditSource(t, xff, "198.51.100.7"); status.Code(err) != codes.PermissionDenied {
			t.Errorf("call from a denied client = %v, want PermissionDenied", err)
		}
		// Prepending an allowed address does not help: the proxy appended the real one.
		if _, err := p.auditSource(t, xff, "192.0.2.1, 198.51.100.7"); status.Code(err) != codes.PermissionDenied {
			t.Errorf("call from a denied client with a spoofed first hop = %v, want PermissionDenied", err)
		}
		if got := p.decisions.sources("ip_denied"); len(got) != 2 || got[0] != "198.51.100.7" || got[1] != "198.51.100.7" {
			t.Errorf("ip refusals recorded from %v, want [198.51.100.7 198.51.100.7]", got)
		}
	})
	t.Run("untrusted peer: a denied address in a spoofed header is not the caller", func(t *testing.T) {
		t.Parallel()
		p := startProxied(t, []string{"10.0.0.0/8"}, "X-Forwarded-For")
		if _, err := p.auditSource(t, xff, "198.51.100.7"); err != nil {
			t.Errorf("call with a spoofed header = %v, want OK (the caller is 127.0.0.1)", err)
		}
	})
	t.Run("trusted proxy: one rate-limit bucket per client", func(t *testing.T) {
		t.Parallel()
		p := startProxied(t, []string{"127.0.0.1/32"}, "X-Forwarded-For")
		if _, err := p.auditSource(t, xff, "192.0.2.1"); err != nil {
			t.Fatalf("first call from 192.0.2.1 = %v", err)
		}
		if _, err := p.auditSource(t, xff, "192.0.2.1"); status.Code(err) != codes.ResourceExhausted {
			t.Errorf("second call from 192.0.2.1 = %v, want ResourceExhausted", err)
		}
		if _, err := p.auditSource(t, xff, "192.0.2.2"); err != nil {
			t.Errorf("first call from 192.0.2.2 = %v, want OK (a bucket of its own)", err)
		}
		if got := p.decisions.sources("rate_limited"); len(got) != 1 || got[0] != "192.0.2.1" {
			t.Errorf("rate-limit refusals recorded from %v, want [192.0.2.1]", got)
		}
	})
	t.Run("untrusted peer: a spoofed header buys no fresh bucket", func(t *testing.T) {
		t.Parallel()
		p := startProxied(t, []string{"10.0.0.0/8"}, "X-Forwarded-For")
		if _, err := p.auditSource(t, xff, "192.0.2.1"); err != nil {
			t.Fatalf("first call = %v", err)
		}
		if _, err := p.auditSource(t, xff, "192.0.2.2"); status.Code(err) != codes.ResourceExhausted {
			t.Errorf("second call with another spoofed address = %v, want ResourceExhausted", err)
		}
		if got := p.decisions.sources("rate_limited"); len(got) != 1 || got[0] != "127.0.0.1" {
			t.Errorf("rate-limit refusals recorded from %v, want [127.0.0.1]", got)
		}
	})
}

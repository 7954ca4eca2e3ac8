package ipfilter_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/ipfilter"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

func TestFilterAllowed(t *testing.T) {
	t.Parallel()
	f, err := ipfilter.New([]string{"10.0.0.0/8", "127.0.0.1", "2001:db8::/32"}, []string{"10.66.0.0/16", "2001:db8:bad::/48"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	open, err := ipfilter.New(nil, []string{"192.0.2.0/24"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		f    *ipfilter.Filter
		addr string
		want bool
	}{
		{"in allow list", f, "10.1.2.3", true},
		{"deny wins over allow", f, "10.66.1.1", false},
		{"single address allowed", f, "127.0.0.1", true},
		{"neighbour of single address", f, "127.0.0.2", false},
		{"not in allow list", f, "192.168.1.1", false},
		{"ipv6 allowed", f, "2001:db8::1", true},
		{"ipv6 deny wins", f, "2001:db8:bad::1", false},
		{"ipv4-mapped ipv6 unmapped", f, "::ffff:10.1.2.3", true},
		{"ipv4-mapped denied", f, "::ffff:10.66.0.1", false},
		{"empty allow list allows", open, "203.0.113.5", true},
		{"empty allow list still denies", open, "192.0.2.7", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.f.Allowed(netip.MustParseAddr(tt.addr)); got != tt.want {
				t.Errorf("Allowed(%s) = %v, want %v", tt.addr, got, tt.want)
			}
		})
	}
	if _, err := ipfilter.New([]string{"10.0.0.0/33", "nonsense"}, []string{"x"}, nil); err == nil {
		t.Error("New(bad CIDRs) error = nil, want error")
	}
}

func TestFilterGuard(t *testing.T) {
	t.Parallel()
	var recs []auth.DecisionRecord
	f, err := ipfilter.New([]string{"127.0.0.0/8"}, []string{"127.0.0.66"},
		auth.RecorderFunc(func(_ context.Context, r auth.DecisionRecord) error { recs = append(recs, r); return nil }))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		ip   string
		want codes.Code
	}{
		{"allowed peer", "127.0.0.1", codes.OK},
		{"denied peer", "127.0.0.66", codes.PermissionDenied},
		{"peer outside allow list", "192.0.2.1", codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := peer.NewContext(t.Context(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(tt.ip), Port: 1234}})
			_, err := f.UnaryServerInterceptor()(ctx, nil, &grpc.UnaryServerInfo{FullMethod: "/x.y/Z"},
				func(context.Context, any) (any, error) { return nil, nil })
			if got := status.Code(err); got != tt.want {
				t.Errorf("guard(%s) = %v, want %v", tt.ip, got, tt.want)
			}
			var ue *usererr.Error
			if err != nil && (!errors.As(err, &ue) || ue.ReasonOf() != "IP_DENIED") {
				t.Errorf("guard(%s) = %v, want a usererr with reason IP_DENIED", tt.ip, err)
			}
		})
	}
	if len(recs) != 2 || recs[0].ReasonCode != "ip_denied" || recs[0].SourceIP != "127.0.0.66" {
		t.Errorf("records = %+v, want two ip_denied records, first from 127.0.0.66", recs)
	}
	// No peer at all: refused.
	_, err = f.UnaryServerInterceptor()(t.Context(), nil, &grpc.UnaryServerInfo{FullMethod: "/x.y/Z"},
		func(context.Context, any) (any, error) { return nil, nil })
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("guard(no peer) = %v, want PermissionDenied", err)
	}
}

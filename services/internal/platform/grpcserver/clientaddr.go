package grpcserver

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	middleware "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	"github.com/realclientip/realclientip-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/config"
)

// clientAddress is the one place that decides a caller's address. Behind a reverse proxy the TCP
// peer is the proxy; when that peer is one of the configured trusted proxies, the client is the
// rightmost address of the forwarding header that is not itself a trusted proxy (each proxy
// appends the address it was reached from, so everything left of the first untrusted hop was
// written by the client and proves nothing). The address goes into the context as the rpc's
// peer, so the IP lists, the rate limits, the access log and the audit source_ip all see the
// same client — on the gRPC listener and on the HTTP edge alike, since the transcoder passes
// HTTP headers through as metadata.
//
// A forwarding header from a peer that is not a trusted proxy is ignored: anyone can send one.
type clientAddress struct {
	trusted  []netip.Prefix
	header   string // canonical HTTP form, for the strategy
	mdKey    string // lower-case gRPC metadata form
	strategy realclientip.RightmostTrustedRangeStrategy
}

// newClientAddress returns nil when no proxy is trusted: the TCP peer is then the client.
func newClientAddress(cfg config.Server) (*clientAddress, error) {
	if len(cfg.TrustedProxies) == 0 {
		return nil, nil
	}
	c := &clientAddress{header: http.CanonicalHeaderKey(cfg.TrustedProxyHeader)}
	c.mdKey = strings.ToLower(c.header)
	nets := make([]net.IPNet, 0, len(cfg.TrustedProxies))
	for _, s := range cfg.TrustedProxies {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("grpcserver: trusted proxy %q: %w", s, err)
		}
		p = p.Masked()
		c.trusted = append(c.trusted, p)
		nets = append(nets, net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())})
	}
	var err error
	if c.strategy, err = realclientip.NewRightmostTrustedRangeStrategy(c.header, nets); err != nil {
		return nil, fmt.Errorf("grpcserver: trusted proxy header: %w", err)
	}
	return c, nil
}

func (c *clientAddress) isTrusted(a netip.Addr) bool {
	for _, p := range c.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// resolve returns ctx with the client as its peer when the TCP peer is a trusted proxy that
// forwarded a client address; otherwise ctx unchanged. When every hop is a trusted proxy, or
// the hop the nearest proxy wrote is no address ("unknown", an obfuscated name), the proxy
// itself stays the peer: a client cannot cause either, since it never writes the hop its
// proxy appends.
func (c *clientAddress) resolve(ctx context.Context) context.Context {
	tcp, ok := auth.PeerAddr(ctx)
	if !ok || !c.isTrusted(tcp) {
		return ctx
	}
	md, _ := metadata.FromIncomingContext(ctx)
	hops := md.Get(c.mdKey)
	if len(hops) == 0 {
		return ctx
	}
	ip := c.strategy.ClientIP(http.Header{c.header: hops}, "")
	client, err := netip.ParseAddr(ip)
	if ip == "" || err != nil {
		return ctx
	}
	p, _ := peer.FromContext(ctx) // present: PeerAddr found it
	forwarded := *p
	forwarded.Addr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(client.WithZone("").Unmap(), 0))
	return peer.NewContext(context.WithValue(ctx, proxyHopKey{}, p.Addr.String()), &forwarded)
}

// proxyHopKey carries the address of the trusted proxy a forwarded call came through, for the
// access log: the peer it logs is then the client, and the hop says which proxy vouched.
type proxyHopKey struct{}

// proxyHop is the trusted proxy of a forwarded call, or "".
func proxyHop(ctx context.Context) string {
	hop, _ := ctx.Value(proxyHopKey{}).(string)
	return hop
}

func unaryClientAddress(c *clientAddress) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return handler(c.resolve(ctx), req)
	}
}

func streamClientAddress(c *clientAddress) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx := c.resolve(ss.Context())
		if ctx == ss.Context() {
			return handler(srv, ss)
		}
		wrapped := middleware.WrapServerStream(ss)
		wrapped.WrappedContext = ctx
		return handler(srv, wrapped)
	}
}

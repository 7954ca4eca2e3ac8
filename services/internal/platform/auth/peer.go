package auth

import (
	"context"
	"crypto/x509"
	"net/netip"
	"regexp"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// TrustDomain is the SPIFFE trust domain of the suite's service certificates.
const TrustDomain = "securemsg.local"

var serviceName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// ServiceIdentity returns the service name from a verified client certificate whose URI SAN is
// spiffe://securemsg.local/service/<name>. Exactly one such URI must be present: a certificate
// naming two services identifies none.
func ServiceIdentity(cert *x509.Certificate) (string, bool) {
	found := ""
	for _, u := range cert.URIs {
		if u.Scheme != "spiffe" || u.Host != TrustDomain {
			continue
		}
		name, ok := strings.CutPrefix(u.Path, "/service/")
		if !ok || !serviceName.MatchString(name) || u.RawQuery != "" || u.Fragment != "" || found != "" {
			return "", false
		}
		found = name
	}
	return found, found != ""
}

// PeerService returns the service identity of the mTLS peer of the current rpc. It only trusts
// certificates the TLS handshake verified (VerifiedChains non-empty), i.e. the server must be
// configured with ClientAuth VerifyClientCertIfGiven or RequireAndVerifyClientCert and the
// internal CA as ClientCAs.
func PeerService(ctx context.Context) (string, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return "", false
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.PeerCertificates) == 0 {
		return "", false
	}
	return ServiceIdentity(ti.State.PeerCertificates[0])
}

// RequestInfo is what an audit record says about where a request came from.
type RequestInfo struct {
	SourceIP  string
	UserAgent string
	RequestID string
	// Method is the rpc's full method ("/securemsg.messaging.v1.MessagingService/GetThread"),
	// empty outside an rpc (jobs, consumers).
	Method string
}

// RequestInfoFrom reads the peer address and the user-agent and x-request-id metadata. Values
// from metadata are client-supplied: they are truncated and stored, never trusted.
func RequestInfoFrom(ctx context.Context) RequestInfo {
	var ri RequestInfo
	ri.Method, _ = grpc.Method(ctx)
	if ip, ok := PeerAddr(ctx); ok {
		ri.SourceIP = ip.String()
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		ri.UserAgent = first(md, "user-agent", 256)
		ri.RequestID = first(md, "x-request-id", 128)
	}
	return ri
}

// PeerAddr returns the peer's IP address (IPv4-mapped IPv6 addresses unmapped). Inside the
// interceptor chain that is the client's address: behind a trusted proxy, grpcserver has
// already replaced the proxy's address with the client it forwarded.
func PeerAddr(ctx context.Context) (netip.Addr, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return netip.Addr{}, false
	}
	ap, err := netip.ParseAddrPort(p.Addr.String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

func first(md metadata.MD, key string, limit int) string {
	v := md.Get(key)
	if len(v) == 0 {
		return ""
	}
	s := v[0]
	if len(s) > limit {
		s = s[:limit]
	}
	return s
}

// Package ipfilter enforces CIDR allow and deny lists on the peer address of each rpc, as a gRPC
// guard. Deny wins over allow; an empty allow list allows every address not denied. The peer
// address is the client's as grpcserver decided it once for the whole chain: the TCP peer, or,
// when that peer is one of SECUREMSG_TRUSTED_PROXIES, the client the proxy forwarded. This
// package never reads forwarding headers itself.
package ipfilter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// Filter is the IP filter guard, a grpcserver.Guard.
type Filter struct {
	allow    []netip.Prefix
	deny     []netip.Prefix
	recorder auth.DecisionRecorder
}

// ParsePrefixes parses CIDRs ("10.0.0.0/8", "::1/128") or bare addresses (as /32 or /128),
// reporting every bad entry at once.
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("ipfilter: %q: %w", s, err))
				continue
			}
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("ipfilter: %q: %w", s, err))
			continue
		}
		out = append(out, p.Masked())
	}
	return out, errors.Join(errs...)
}

// New returns a Filter from CIDR lists. recorder may be nil.
func New(allow, deny []string, recorder auth.DecisionRecorder) (*Filter, error) {
	a, errA := ParsePrefixes(allow)
	d, errD := ParsePrefixes(deny)
	if err := errors.Join(errA, errD); err != nil {
		return nil, err
	}
	return &Filter{allow: a, deny: d, recorder: recorder}, nil
}

func contains(list []netip.Prefix, a netip.Addr) bool {
	for _, p := range list {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Allowed reports whether addr may connect: not in deny, and in allow when allow is non-empty.
func (f *Filter) Allowed(addr netip.Addr) bool {
	addr = addr.Unmap()
	if !addr.IsValid() || contains(f.deny, addr) {
		return false
	}
	return len(f.allow) == 0 || contains(f.allow, addr)
}

func (f *Filter) check(ctx context.Context, fullMethod string) error {
	addr, _ := auth.PeerAddr(ctx) // unknown peer: invalid addr, refused
	if f.Allowed(addr) {
		return nil
	}
	if f.recorder != nil {
		p, _ := auth.FromContext(ctx)
		rec := auth.NewRecord(ctx, p, time.Now())
		rec.Action, rec.RecordType, rec.Outcome, rec.ReasonCode = fullMethod, "rpc", auth.OutcomeDenied, "ip_denied"
		if err := f.recorder.RecordDecision(ctx, rec); err != nil {
			slog.WarnContext(ctx, "record ip refusal failed", slog.String("error", err.Error()))
		}
	}
	return errIPDenied
}

// errIPDenied is the refusal of a caller whose address the lists do not admit. Its reason lets a
// portal tell "your network may not reach this service" from a policy refusal; the message
// names neither the address nor the lists.
var errIPDenied = usererr.New(usererr.PermissionDenied, "IP_DENIED", "permission denied")

// UnaryServerInterceptor filters unary rpcs.
func (f *Filter) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return grpcserver.GuardFunc(f.check).UnaryServerInterceptor()
}

// StreamServerInterceptor filters streaming rpcs.
func (f *Filter) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return grpcserver.GuardFunc(f.check).StreamServerInterceptor()
}

package auth_test

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/auth/authtest"
)

func TestGuardAuthenticate(t *testing.T) {
	t.Parallel()
	iss := authtest.NewIssuer(t)
	v := newVerifier(t, iss)
	var recs []auth.DecisionRecord
	g := auth.NewGuard(v, auth.WithRecorder(auth.RecorderFunc(func(_ context.Context, r auth.DecisionRecord) error {
		recs = append(recs, r)
		return nil
	})))
	good := iss.Mint(t, iss.Claims("user-1", "patient"))
	tests := []struct {
		name   string
		md     metadata.MD
		want   codes.Code
		reason string
	}{
		{"bearer token", metadata.Pairs("authorization", "Bearer "+good), codes.OK, ""},
		{"lower-case scheme", metadata.Pairs("authorization", "bearer "+good), codes.OK, ""},
		{"no header", metadata.MD{}, codes.Unauthenticated, "unauthenticated:missing"},
		{"basic auth", metadata.Pairs("authorization", "Basic dXNlcjpwYXNz"), codes.Unauthenticated, "unauthenticated:malformed"},
		{"two headers", metadata.Pairs("authorization", "Bearer "+good, "authorization", "Bearer "+good), codes.Unauthenticated, "unauthenticated:malformed"},
		{"bad token", metadata.Pairs("authorization", "Bearer a.b.c"), codes.Unauthenticated, "unauthenticated:malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs = nil
			ctx := metadata.NewIncomingContext(t.Context(), tt.md)
			var sub string
			_, err := g.UnaryServerInterceptor()(ctx, nil, &grpc.UnaryServerInfo{FullMethod: "/m"},
				func(ctx context.Context, _ any) (any, error) {
					p, _ := auth.FromContext(ctx)
					sub = p.Subject
					return nil, nil
				})
			st := status.Convert(err)
			if st.Code() != tt.want {
				t.Fatalf("guard(%s) = %v, want %v", tt.name, st.Code(), tt.want)
			}
			if tt.want == codes.OK {
				if sub != "user-1" {
					t.Errorf("guard(%s) principal = %q, want user-1", tt.name, sub)
				}
				return
			}
			if st.Message() != auth.UnauthenticatedMessage {
				t.Errorf("guard(%s) message = %q, want the fixed message", tt.name, st.Message())
			}
			if len(recs) != 1 || recs[0].ReasonCode != tt.reason || recs[0].Outcome != auth.OutcomeDenied {
				t.Errorf("guard(%s) records = %+v, want one denial %s", tt.name, recs, tt.reason)
			}
		})
	}
}

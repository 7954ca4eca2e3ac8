package grpcserver_test

import (
	"regexp"
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/securemsg/securemsg/services/internal/platform/grpcserver"
	"github.com/securemsg/securemsg/services/internal/platform/grpcserver/grpctest"
	"github.com/securemsg/securemsg/services/internal/platform/logging"
)

var generatedID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func TestRequestID(t *testing.T) {
	t.Parallel()
	h := startTLS(t)
	conn := h.dial(t)
	tests := []struct {
		name     string
		incoming string // "" sends none
		wantSame bool   // the caller's id is kept, else a fresh one is generated
	}{
		{"none sent", "", false},
		{"well formed", "portal-7c1e.42:abc", true},
		{"too short", "abc", false},
		{"log injection attempt", `x","level":"ERROR`, false},
		{"spaces", "abcdefgh fake=line", false},
		{"too long", strings.Repeat("a", 65), false},
	}
	for _, kind := range callKinds {
		for _, tt := range tests {
			t.Run(kind.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				ctx := t.Context()
				if tt.incoming != "" {
					ctx = metadata.AppendToOutgoingContext(ctx, grpcserver.RequestIDHeader, tt.incoming)
				}
				seen, header, err := kind.call(ctx, conn, "hello")
				if err != nil {
					t.Fatalf("Echo() = %v", err)
				}
				if seen != header {
					t.Errorf("request id in handler = %q, header = %q, want equal", seen, header)
				}
				if tt.wantSame && header != tt.incoming {
					t.Errorf("x-request-id = %q, want the caller's %q", header, tt.incoming)
				}
				if !tt.wantSame && !generatedID.MatchString(header) {
					t.Errorf("x-request-id = %q, want a generated UUID", header)
				}
			})
		}
	}
}

func TestDialForwardsRequestID(t *testing.T) {
	t.Parallel()
	pki := grpctest.NewPKI(t)
	h := startServer(t, pki, pki.ServerConfig(true))
	conn := h.dial(t)
	// A handler calling a peer has the request id in its context; Dial's client forwards it.
	ctx := logging.WithRequestID(t.Context(), "upstream-req-0001")
	for _, kind := range callKinds {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			seen, _, err := kind.call(ctx, conn, "hello")
			if err != nil {
				t.Fatalf("Echo() = %v", err)
			}
			if seen != "upstream-req-0001" {
				t.Errorf("request id at the peer = %q, want %q", seen, "upstream-req-0001")
			}
		})
	}
}

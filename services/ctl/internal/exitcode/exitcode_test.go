package exitcode_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/securemsg/securemsg/services/ctl/internal/exitcode"
	"github.com/securemsg/securemsg/services/internal/platform/keys"
)

func TestOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, exitcode.OK},
		{"plain error", errors.New("boom"), exitcode.Failed},
		{"usage", exitcode.Usage(errors.New("--limit must not be negative")), exitcode.BadUsage},
		{"wrapped usage", fmt.Errorf("purge: %w", exitcode.Usage(errors.New("x"))), exitcode.BadUsage},
		{"args check", exitcode.UsageArgs(cobra.NoArgs)(&cobra.Command{Use: "x"}, []string{"y"}), exitcode.BadUsage},
		{"invalid argument", status.Error(codes.InvalidArgument, "thread_id"), exitcode.BadUsage},
		{"permission denied", status.Error(codes.PermissionDenied, "no"), exitcode.Refused},
		{"unauthenticated", status.Error(codes.Unauthenticated, "expired"), exitcode.Refused},
		{"wrapped permission denied", fmt.Errorf("call: %w", status.Error(codes.PermissionDenied, "no")), exitcode.Refused},
		{"not found", status.Error(codes.NotFound, "thread"), exitcode.NotFound},
		{"aborted", status.Error(codes.Aborted, "another purge"), exitcode.Failed},
		{"unavailable", status.Error(codes.Unavailable, "down"), exitcode.Failed},
		{"no such transit key", fmt.Errorf("key x: %w", keys.ErrKeyNotFound), exitcode.NotFound},
		{"vault refused the token", fmt.Errorf("key x: %w", keys.ErrPermissionDenied), exitcode.Refused},
		{"vault down", fmt.Errorf("key x: %w", keys.ErrKeyServiceUnavailable), exitcode.Failed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := exitcode.Of(tt.err); got != tt.want {
				t.Errorf("Of(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
	if exitcode.Usage(nil) != nil || exitcode.UsageArgs(cobra.NoArgs)(&cobra.Command{}, nil) != nil {
		t.Error("Usage(nil) or a passing args check = an error, want nil")
	}
}

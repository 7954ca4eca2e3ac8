package usererr_test

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

func TestKindOfAndIs(t *testing.T) {
	t.Parallel()
	cause := errors.New("connection refused")
	err := fmt.Errorf("load thread: %w", &usererr.Error{Kind: usererr.Unavailable, Msg: "the database is unavailable", Err: cause})
	if k, msg := usererr.KindOf(err); k != usererr.Unavailable || msg != "the database is unavailable" {
		t.Errorf("KindOf(wrapped) = %v, %q; want Unavailable and the caller's message", k, msg)
	}
	if !errors.Is(err, &usererr.Error{Kind: usererr.Unavailable}) || errors.Is(err, &usererr.Error{Kind: usererr.NotFound}) {
		t.Errorf("errors.Is matches the wrong kinds")
	}
	if !errors.Is(err, cause) {
		t.Errorf("errors.Is(err, cause) = false, want the cause reachable for logs")
	}
	if k, _ := usererr.KindOf(errors.New("plain")); k != 0 {
		t.Errorf("KindOf(plain error) = %v, want 0", k)
	}
}

func TestCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		kind usererr.Kind
		want codes.Code
	}{
		{usererr.InvalidArgument, codes.InvalidArgument},
		{usererr.ResourceExhausted, codes.ResourceExhausted},
		{usererr.DataLoss, codes.DataLoss},
		{usererr.Kind(0), codes.Unknown},
	}
	for _, tt := range tests {
		if got := usererr.Code(tt.kind); got != tt.want {
			t.Errorf("Code(%v) = %v, want %v", tt.kind, got, tt.want)
		}
	}
}

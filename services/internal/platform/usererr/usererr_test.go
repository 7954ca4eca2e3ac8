package usererr_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
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

func TestGRPCStatusCarriesCodeMessageAndReason(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		err        error
		wantCode   codes.Code
		wantMsg    string
		wantReason string
	}{
		{"own reason", usererr.Newf(usererr.FailedPrecondition, "THREAD_CLOSED", "thread %s is closed", "t1"),
			codes.FailedPrecondition, "thread t1 is closed", "THREAD_CLOSED"},
		{"default reason", usererr.New(usererr.NotFound, "", "thread not found"), codes.NotFound, "thread not found", "NOT_FOUND"},
		{"two-word kind", usererr.New(usererr.ResourceExhausted, "", "quota"), codes.ResourceExhausted, "quota", "RESOURCE_EXHAUSTED"},
		{"wrapped with a cause", fmt.Errorf("load: %w", usererr.Wrap(usererr.Unavailable, "DATABASE_UNAVAILABLE", "the database is unavailable", errors.New("dial tcp 10.0.0.1: secret detail"))),
			codes.Unavailable, "the database is unavailable", "DATABASE_UNAVAILABLE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// The edge (grpcserver.ToStatus) finds the Error with errors.As, so that wrapping
			// text never reaches the caller; status.FromError would keep the wrapped text.
			var ue *usererr.Error
			if !errors.As(tt.err, &ue) {
				t.Fatalf("errors.As(%v, *usererr.Error) = false", tt.err)
			}
			st := ue.GRPCStatus()
			if st.Code() != tt.wantCode || st.Message() != tt.wantMsg {
				t.Errorf("status = %v %q, want %v %q", st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
			}
			var info *errdetails.ErrorInfo
			for _, d := range st.Details() {
				if i, ok := d.(*errdetails.ErrorInfo); ok {
					info = i
				}
			}
			if info == nil || info.GetReason() != tt.wantReason || info.GetDomain() != usererr.Domain {
				t.Errorf("ErrorInfo = %v, want reason %q in domain %q", info, tt.wantReason, usererr.Domain)
			}
			if strings.Contains(st.Message(), "secret detail") {
				t.Errorf("status message %q leaks the cause", st.Message())
			}
		})
	}
}

func TestSentinelsMatchByKind(t *testing.T) {
	t.Parallel()
	err := usererr.Newf(usererr.NotFound, "THREAD_NOT_FOUND", "thread %s not found", "t1")
	if !errors.Is(err, usererr.ErrNotFound) || errors.Is(err, usererr.ErrDataLoss) {
		t.Errorf("errors.Is(NotFound error, sentinels) matched the wrong kinds")
	}
}

func TestUnauthenticatedKind(t *testing.T) {
	t.Parallel()
	st := usererr.New(usererr.Unauthenticated, "TOKEN_EXPIRED", "sign in again").GRPCStatus()
	if st.Code() != codes.Unauthenticated || st.Message() != "sign in again" {
		t.Errorf("status = %v %q, want Unauthenticated %q", st.Code(), st.Message(), "sign in again")
	}
}

func TestMetadataReachesErrorInfo(t *testing.T) {
	t.Parallel()
	base := usererr.New(usererr.Aborted, "UPLOAD_OFFSET_MISMATCH", "wrong offset")
	err := base.With("expected_offset", "10")
	var info *errdetails.ErrorInfo
	for _, d := range err.GRPCStatus().Details() {
		if i, ok := d.(*errdetails.ErrorInfo); ok {
			info = i
		}
	}
	if info.GetMetadata()["expected_offset"] != "10" || info.GetReason() != "UPLOAD_OFFSET_MISMATCH" {
		t.Errorf("ErrorInfo = %v, want reason UPLOAD_OFFSET_MISMATCH and expected_offset 10", info)
	}
	if base.Metadata != nil {
		t.Errorf("With changed the error it was called on: %v", base.Metadata)
	}
}

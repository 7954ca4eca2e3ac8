package grpcserver_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/securemsg/securemsg/services/internal/platform/grpcserver"
	"github.com/securemsg/securemsg/services/internal/platform/logging"
)

var maskedMessage = regexp.MustCompile(`^internal error \(request id ([0-9a-f-]{36})\)$`)

func TestErrorMappingEndToEnd(t *testing.T) {
	t.Parallel()
	h := startTLS(t)
	conn := h.dial(t)
	tests := []struct {
		value    string
		wantCode codes.Code
		wantMsg  string // "" means masked
	}{
		{"internal", codes.Internal, ""},
		{"status-internal", codes.Internal, ""},
		{"notfound", codes.NotFound, "thread not found"},
		{"wrapped-status", codes.NotFound, "thread not found"},
		{"domain", codes.FailedPrecondition, "thread is closed"},
		{"usererr", codes.NotFound, "no such record"},
		{"unavailable", codes.Unavailable, "the database is unavailable; try again"},
		{"canceled", codes.Canceled, "request canceled"},
	}
	for _, kind := range callKinds {
		for _, tt := range tests {
			t.Run(kind.name+"/"+tt.value, func(t *testing.T) {
				t.Parallel()
				_, header, err := kind.call(t.Context(), conn, tt.value)
				st := status.Convert(err)
				if st.Code() != tt.wantCode {
					t.Fatalf("Echo(%s) code = %v, want %v (err %v)", tt.value, st.Code(), tt.wantCode, err)
				}
				if strings.Contains(err.Error(), secretMarker) {
					t.Fatalf("Echo(%s) error = %q, reveals the secret marker to the client", tt.value, err)
				}
				if tt.wantMsg != "" {
					if st.Message() != tt.wantMsg {
						t.Errorf("Echo(%s) message = %q, want %q", tt.value, st.Message(), tt.wantMsg)
					}
					if tt.value == "usererr" && reasonOf(st) != "RECORD_NOT_FOUND" {
						t.Errorf("Echo(usererr) ErrorInfo reason = %q, want RECORD_NOT_FOUND", reasonOf(st))
					}
					if tt.value == "unavailable" {
						// The caller is told to retry; the operator finds the dependency's error.
						h.logLine(t, "the unavailable cause log line", func(line map[string]any) bool {
							return line["msg"] == "rpc refused: a dependency is unavailable" && strings.Contains(fmt.Sprint(line[logging.KeyError]), secretMarker)
						})
					}
					return
				}
				id := maskedRequestID(t, tt.value, st, header)
				// The real cause is logged under the same id, for the operator.
				line := h.logLine(t, "the internal error log line", func(line map[string]any) bool {
					return line["msg"] == "rpc failed with an internal error" && line[logging.KeyRequestID] == id
				})
				if cause, _ := line[logging.KeyError].(string); !strings.Contains(cause, secretMarker) {
					t.Errorf("internal error log line %s = %q, want the cause (with the secret marker)", logging.KeyError, cause)
				}
			})
		}
	}
}

// maskedRequestID checks that st is the masked internal error and that the request id it names
// is the call's (header, from x-request-id); it returns that id.
func maskedRequestID(t *testing.T, value string, st *status.Status, header string) string {
	t.Helper()
	m := maskedMessage.FindStringSubmatch(st.Message())
	if m == nil {
		t.Fatalf("Echo(%s) message = %q, want %q", value, st.Message(), maskedMessage)
	}
	if m[1] != header {
		t.Errorf("Echo(%s) masked request id = %s, want the x-request-id header %s", value, m[1], header)
	}
	return m[1]
}

// reasonOf is the google.rpc.ErrorInfo reason of st, or "".
func reasonOf(st *status.Status) string {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

func TestToStatus(t *testing.T) {
	t.Parallel()
	ctx := logging.WithRequestID(logging.WithLogger(t.Context(), slog.New(slog.DiscardHandler)), "req-00000001")
	tests := []struct {
		name     string
		err      error
		wantCode codes.Code
		wantMsg  string
	}{
		{"nil", nil, codes.OK, ""},
		{"status passes", status.Error(codes.PermissionDenied, "denied"), codes.PermissionDenied, "denied"},
		{"unknown status is masked", status.Error(codes.Unknown, secretMarker), codes.Internal, "internal error (request id req-00000001)"},
		{"data loss keeps its code, its text is masked", status.Error(codes.DataLoss, secretMarker), codes.DataLoss, "stored data failed an integrity check (request id req-00000001)"},
		{"deadline", context.DeadlineExceeded, codes.DeadlineExceeded, "deadline exceeded"},
		{"plain error", errors.New(secretMarker), codes.Internal, "internal error (request id req-00000001)"},
		{"domain error via GRPCStatus", domainErr{}, codes.FailedPrecondition, "thread is closed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := grpcserver.ToStatus(ctx, tt.err)
			st := status.Convert(got)
			if st.Code() != tt.wantCode || st.Message() != tt.wantMsg {
				t.Errorf("ToStatus(%v) = %v %q, want %v %q", tt.err, st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
			}
		})
	}
}

package grpcserver_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/securemsg/securemsg/services/internal/platform/logging"
)

func TestPanicBecomesMaskedInternal(t *testing.T) {
	t.Parallel()
	h := startTLS(t)
	conn := h.dial(t)
	tests := []struct {
		value     string
		wantPanic string // what the log may say about the panic value
	}{
		{"panic", "string"}, // a string panic is logged by type only: it could hold anything
		{"panic-runtime", "assignment to entry in nil map"},
	}
	for _, kind := range callKinds {
		for _, tt := range tests {
			t.Run(kind.name+"/"+tt.value, func(t *testing.T) {
				t.Parallel()
				_, header, err := kind.call(t.Context(), conn, tt.value)
				st := status.Convert(err)
				if st.Code() != codes.Internal {
					t.Fatalf("Echo(%s) = %v, want code Internal", tt.value, err)
				}
				id := maskedRequestID(t, tt.value, st, header)
				if strings.Contains(st.Message(), secretMarker) || strings.Contains(st.Message(), "goroutine") {
					t.Fatalf("Echo(%s) message = %q, leaks the panic", tt.value, st.Message())
				}
				line := h.logLine(t, "the panic log line", func(line map[string]any) bool {
					return line["msg"] == "panic in rpc" && line[logging.KeyRequestID] == id
				})
				if stack, _ := line[logging.KeyStack].(string); line[logging.KeyPanic] != tt.wantPanic || !strings.Contains(stack, "goroutine") {
					t.Errorf("panic log line %s = %v (stack %d bytes), want %q with a goroutine stack", logging.KeyPanic, line[logging.KeyPanic], len(stack), tt.wantPanic)
				}
			})
		}
	}
	// The server survived.
	if _, _, err := echo(t.Context(), conn, "hello"); err != nil {
		t.Errorf("Echo(hello) after panics = %v, want success", err)
	}
	if strings.Contains(h.logs.String(), secretMarker) && strings.Contains(h.logs.String(), "boom") {
		t.Errorf("logs contain the string panic value %q", "boom "+secretMarker)
	}
}

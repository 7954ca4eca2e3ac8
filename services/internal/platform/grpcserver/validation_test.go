package grpcserver_test

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/securemsg/securemsg/services/internal/platform/grpcserver/grpctest"
)

func TestValidation(t *testing.T) {
	t.Parallel()
	pki := grpctest.NewPKI(t)
	h := startServer(t, pki, pki.ServerConfig(false))
	conn := h.dial(t)
	tests := []struct {
		name     string
		value    string
		wantCode codes.Code
		wantMsg  string
	}{
		{"valid", "hello", codes.OK, ""},
		{"invalid", "", codes.InvalidArgument, "value must not be empty"},
	}
	for _, kind := range callKinds {
		for _, tt := range tests {
			t.Run(kind.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				_, _, err := kind.call(t.Context(), conn, tt.value)
				st := status.Convert(err)
				if st.Code() != tt.wantCode || st.Message() != tt.wantMsg {
					t.Errorf("Echo(%q) = %v %q, want %v %q", tt.value, st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
				}
			})
		}
	}
}

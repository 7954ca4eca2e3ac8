package protoenum_test

import (
	"math"
	"testing"

	"github.com/securemsg/securemsg/services/internal/platform/protoenum"
)

type enum int32

func TestCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   enum
		want int16
	}{
		{0, 0}, {3, 3}, {math.MaxInt16, math.MaxInt16}, {math.MinInt16, math.MinInt16},
		{math.MaxInt16 + 1, -1}, {math.MinInt16 - 1, -1}, {math.MaxInt32, -1},
	}
	for _, tt := range tests {
		if got := protoenum.Code(tt.in, -1); got != tt.want {
			t.Errorf("Code(%d, -1) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

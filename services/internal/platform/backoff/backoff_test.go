package backoff_test

import (
	"testing"
	"time"

	"github.com/securemsg/securemsg/services/internal/platform/backoff"
)

func TestExponentialDelay(t *testing.T) {
	t.Parallel()
	e := backoff.Exponential{Floor: 100 * time.Millisecond, Ceiling: time.Second, Jitter: 0.2}
	tests := []struct {
		attempt  int
		min, max time.Duration
	}{
		{0, 100 * time.Millisecond, 120 * time.Millisecond},
		{1, 100 * time.Millisecond, 120 * time.Millisecond},
		{2, 200 * time.Millisecond, 240 * time.Millisecond},
		{4, 800 * time.Millisecond, 960 * time.Millisecond},
		{5, time.Second, 1200 * time.Millisecond},
		{1000, time.Second, 1200 * time.Millisecond},
	}
	for _, tt := range tests {
		for range 50 {
			if got := e.Delay(tt.attempt); got < tt.min || got > tt.max {
				t.Fatalf("Delay(%d) = %v, want in [%v, %v]", tt.attempt, got, tt.min, tt.max)
			}
		}
	}
	if got := (backoff.Exponential{Floor: time.Second, Ceiling: time.Minute}).Delay(3); got != 4*time.Second {
		t.Errorf("Delay(3) without jitter = %v, want exactly 4s", got)
	}
	if got := (backoff.Exponential{}).Delay(3); got != 0 {
		t.Errorf("zero Exponential.Delay(3) = %v, want 0", got)
	}
}

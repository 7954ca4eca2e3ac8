package testkit

import (
	"context"
	"testing"
	"time"
)

// WaitFor polls ok until it returns true, failing the test with what when within passes first or
// the test's context ends (a test that was cancelled or timed out stops polling at once). Tests
// use it instead of sleeping for a fixed time.
func WaitFor(tb testing.TB, within time.Duration, what string, ok func() bool) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), within)
	defer cancel()
	if !Poll(ctx, ok) {
		tb.Fatalf("timed out after %s waiting for %s", within, what)
	}
}

// Poll calls ok, with a growing interval (5 ms to 200 ms), until it returns true (Poll returns
// true) or ctx ends (Poll returns false). It is WaitFor for callers that are not tests, such as
// a stack supervisor waiting for a port.
func Poll(ctx context.Context, ok func() bool) bool {
	for interval := 5 * time.Millisecond; ; interval = min(2*interval, 200*time.Millisecond) {
		if ok() {
			return true
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return ok()
		case <-t.C:
		}
	}
}

// Receive returns the value ch delivers, failing the test with what when within passes first.
// It waits on a timer of its own, not on the test's context, so a cleanup can wait for a
// server's Run to return after cancelling it (the test's context has ended by then).
func Receive[T any](tb testing.TB, ch <-chan T, within time.Duration, what string) T {
	tb.Helper()
	t := time.NewTimer(within)
	defer t.Stop()
	select {
	case v := <-ch:
		return v
	case <-t.C:
		tb.Fatalf("timed out after %s waiting for %s", within, what)
		var zero T
		return zero
	}
}

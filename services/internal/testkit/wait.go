package testkit

import (
	"testing"
	"time"
)

// WaitFor polls ok until it returns true, failing the test with what when within passes first.
// Tests use it instead of sleeping for a fixed time.
func WaitFor(tb testing.TB, within time.Duration, what string, ok func() bool) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for interval := 5 * time.Millisecond; !ok(); interval = min(2*interval, 200*time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(interval)
	}
}

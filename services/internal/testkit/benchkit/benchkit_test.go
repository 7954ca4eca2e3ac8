package benchkit_test

import (
	"testing"

	"github.com/securemsg/securemsg/services/internal/testkit/benchkit"
)

// TestCompare checks the metric names devstack/internal/benchreport parses.
func TestCompare(t *testing.T) {
	t.Parallel()
	res := testing.Benchmark(func(b *testing.B) {
		for b.Loop() {
		}
		benchkit.Compare(b, 90, 100, "MB/s")
	})
	want := map[string]float64{"MB/s": 90, "baseline-MB/s": 100, "ratio-MB/s": 0.9}
	for unit, v := range want {
		if got := res.Extra[unit]; got != v {
			t.Errorf("Compare(90, 100, MB/s) metric %q = %v, want %v", unit, got, v)
		}
	}
}

package benchkit_test

import (
	"testing"

	"github.com/securemsg/securemsg/services/internal/testkit/benchkit"
)

// TestGrowthAndTarget: a scale figure carries the smallest size's value as its growth baseline,
// the growth factor as its ratio and its bound; a target without baseline carries its side.
func TestGrowthAndTarget(t *testing.T) {
	t.Parallel()
	r := testing.Benchmark(func(b *testing.B) {
		benchkit.Growth(b, 3, 2, "p50 ms", 1.5)
		benchkit.Target(b, 40000, "records/s", 50000, false)
		benchkit.Target(b, 4, "proof-ms", 5, true)
	})
	want := map[string]float64{"p50_ms": 3, "growth-p50_ms": 2, "ratio-p50_ms": 1.5, "target-max-p50_ms": 1.5,
		"records/s": 40000, "target-min-records/s": 50000, "proof-ms": 4, "target-max-proof-ms": 5}
	for k, v := range want {
		if got, ok := r.Extra[k]; !ok || got != v {
			t.Errorf("metric %s = %v (reported %t), want %v", k, got, ok, v)
		}
	}
}

package benchkit_test

import (
	"testing"

	"github.com/securemsg/securemsg/services/internal/testkit/benchkit"
)

// BenchmarkCompare shows the metrics Compare writes; benchreport's tests parse the same shape.
func BenchmarkCompare(b *testing.B) {
	for b.Loop() {
	}
	benchkit.Compare(b, 90, 100, "MB/s")
}

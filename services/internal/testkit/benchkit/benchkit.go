// Package benchkit gives the suite's benchmarks one way to report a measurement beside the
// baseline measured in the same run, so `make bench` can gather every comparison into one table
// and .tmp/bench/results.json (devstack/cmd/benchreport reads the metrics written here).
//
// Speed targets live only in benchmarks that compare against a baseline of the same run, never
// in timed assertions: the machine is shared and noisy, a ratio much less so.
package benchkit

import (
	"strings"
	"testing"
)

// BaselinePrefix marks the baseline's metric; RatioPrefix marks value over baseline. One
// benchmark may report several comparisons (throughput, latency, CPU), each under its own unit.
const (
	BaselinePrefix = "baseline-"
	RatioPrefix    = "ratio-"
)

// Compare reports value and baseline (both in unit, e.g. "MB/s", "ops/s", "ms") and their ratio
// value/baseline. Whether higher is better depends on the unit; the report says the goal.
func Compare(b *testing.B, value, baseline float64, unit string) {
	b.Helper()
	unit = strings.ReplaceAll(unit, " ", "_")
	b.ReportMetric(value, unit)
	b.ReportMetric(baseline, BaselinePrefix+unit)
	if baseline != 0 {
		b.ReportMetric(value/baseline, RatioPrefix+unit)
	}
}

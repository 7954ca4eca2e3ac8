package benchkit

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// GrowthPrefix marks a growth curve's baseline: the same operation measured at the smallest
// size of the same run; TargetMaxPrefix marks an upper bound the ratio must stay within.
const (
	GrowthPrefix    = "growth-"
	TargetMaxPrefix = "target-max-"
)

// Growth reports a scale figure: value at the largest size, smallest at the smallest size
// (its baseline, kind "growth" in results.json), their ratio (the growth factor) and, when
// maxRatio is positive, the bound the growth factor is held to.
func Growth(b *testing.B, value, smallest float64, unit string, maxRatio float64) {
	b.Helper()
	unit = strings.ReplaceAll(unit, " ", "_")
	b.ReportMetric(value, unit)
	b.ReportMetric(smallest, GrowthPrefix+unit)
	if smallest != 0 {
		b.ReportMetric(value/smallest, RatioPrefix+unit)
	}
	if maxRatio > 0 {
		b.ReportMetric(maxRatio, TargetMaxPrefix+unit)
	}
}

// TargetMinPrefix marks a lower bound on a value reported without a baseline.
const TargetMinPrefix = "target-min-"

// Target reports a measurement held to a target of its own (no baseline): at most target when
// atMost, else at least target.
func Target(b *testing.B, value float64, unit string, target float64, atMost bool) {
	b.Helper()
	unit = strings.ReplaceAll(unit, " ", "_")
	b.ReportMetric(value, unit)
	if atMost {
		b.ReportMetric(target, TargetMaxPrefix+unit)
	} else {
		b.ReportMetric(target, TargetMinPrefix+unit)
	}
}

// GrowthSizes reads the sizes a growth benchmark runs at from the comma-separated variable env
// (def when unset), smallest first; a size below least ends the benchmark.
func GrowthSizes(tb testing.TB, env, def string, least int) []int {
	tb.Helper()
	spec := os.Getenv(env)
	if spec == "" {
		spec = def
	}
	var sizes []int
	for f := range strings.SplitSeq(spec, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < least {
			tb.Fatalf("%s: %q is not a size of at least %d", env, f, least)
		}
		sizes = append(sizes, n)
	}
	slices.Sort(sizes)
	return sizes
}

// GrowthOps is how many calls a growth benchmark times per size and operation:
// SECUREMSG_GROWTH_OPS, at least least (default 400).
func GrowthOps(tb testing.TB, least int) int {
	tb.Helper()
	if s := os.Getenv("SECUREMSG_GROWTH_OPS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < least {
			tb.Fatalf("SECUREMSG_GROWTH_OPS=%q: want a count of at least %d", s, least)
		}
		return n
	}
	return 400
}

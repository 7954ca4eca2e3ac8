// Package benchreport turns `go test -bench` output into the suite's benchmark table and the
// machine-readable results file: every benchmark that reported a value beside a baseline of the
// same run (services/internal/testkit/benchkit) becomes one comparison; so does a scale figure
// (benchkit.Growth: the value at the largest size beside the smallest size's, baseline kind
// "growth", its ratio the growth factor) and a measurement held to a target; other custom
// metrics are listed as plain measurements.
package benchreport

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Comparison is one row of results.json.
type Comparison struct {
	Name     string  `json:"name"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	Baseline float64 `json:"baseline"`
	Ratio    float64 `json:"ratio"`
	// BaselineKind says what the baseline is: KindSameRun (another implementation measured in
	// the same run), KindGrowth (the same operation at the smallest size; ratio is the growth
	// factor) or KindNone (a measurement held to a target, with no baseline).
	BaselineKind string `json:"baseline_kind"`
	// Target is the bound the row is held to (nil where there is none): for a growth row a
	// bound on the ratio, for a row without baseline a bound on the value; TargetMax says which
	// side (at most when true, at least when false).
	Target    *float64 `json:"target"`
	TargetMax bool     `json:"-"`
	// Holds is whether the row meets its target (true where there is none).
	Holds bool `json:"holds"`
}

// The baseline kinds.
const (
	KindSameRun = "same-run"
	KindGrowth  = "growth"
	KindNone    = "none"
)

// Measurement is a custom metric reported without a baseline.
type Measurement struct {
	Name  string
	Value float64
	Unit  string
}

// Report is everything parsed from one run.
type Report struct {
	Comparisons  []Comparison
	Measurements []Measurement
	// Failures are the lines that said a package or benchmark failed.
	Failures []string
}

// The metric names services/internal/testkit/benchkit writes.
const (
	baselinePrefix  = "baseline-"
	ratioPrefix     = "ratio-"
	growthPrefix    = "growth-"
	targetMaxPrefix = "target-max-"
	targetMinPrefix = "target-min-"
)

// isAnnotation says whether unit is another metric's baseline, ratio or target.
func isAnnotation(unit string) bool {
	for _, p := range []string{baselinePrefix, ratioPrefix, growthPrefix, targetMaxPrefix, targetMinPrefix} {
		if strings.HasPrefix(unit, p) {
			return true
		}
	}
	return false
}

// standardUnits are go test's own metrics; they are not listed as measurements.
var standardUnits = map[string]bool{"ns/op": true, "B/op": true, "allocs/op": true, "MB/s": false}

var procSuffix = regexp.MustCompile(`-\d+$`)

// Parse reads `go test -bench` output (several packages may follow each other).
func Parse(r io.Reader) (Report, error) {
	var rep Report
	pkg := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "pkg: "):
			pkg = strings.TrimPrefix(line, "pkg: ")
		case strings.HasPrefix(line, "--- FAIL") || strings.HasPrefix(line, "FAIL\t") || strings.HasPrefix(line, "panic:"):
			rep.Failures = append(rep.Failures, line)
		case strings.HasPrefix(line, "Benchmark"):
			parseBenchmark(&rep, shortPkg(pkg), line)
		}
	}
	return rep, sc.Err()
}

func parseBenchmark(rep *Report, pkg, line string) {
	fields := strings.Fields(line)
	if len(fields) < 4 {
		return
	}
	if _, err := strconv.Atoi(fields[1]); err != nil {
		return // a log line that starts with "Benchmark", not a result
	}
	name := procSuffix.ReplaceAllString(strings.TrimPrefix(fields[0], "Benchmark"), "")
	if pkg != "" {
		name = pkg + "/" + name
	}
	metrics := map[string]float64{}
	var order []string
	for i := 2; i+1 < len(fields); i += 2 {
		v, err := strconv.ParseFloat(fields[i], 64)
		if err != nil {
			return
		}
		metrics[fields[i+1]] = v
		order = append(order, fields[i+1])
	}
	compared := map[string]bool{}
	for _, unit := range order {
		if isAnnotation(unit) {
			compared[unit] = true
			continue
		}
		c := Comparison{Name: name, Value: metrics[unit], Unit: unit, BaselineKind: KindSameRun, Holds: true}
		if base, ok := metrics[baselinePrefix+unit]; ok {
			c.Baseline = base
		} else if base, ok := metrics[growthPrefix+unit]; ok {
			c.Baseline, c.BaselineKind = base, KindGrowth
		} else if _, ok := targetOf(metrics, unit); ok {
			c.BaselineKind = KindNone
		} else {
			continue
		}
		if c.Baseline != 0 {
			c.Ratio = c.Value / c.Baseline
		}
		if t, ok := targetOf(metrics, unit); ok {
			c.Target, c.TargetMax = &t.value, t.max
			held := c.Value
			if c.BaselineKind != KindNone {
				held = c.Ratio
			}
			c.Holds = (t.max && held <= t.value) || (!t.max && held >= t.value)
		}
		rep.Comparisons = append(rep.Comparisons, c)
		compared[unit] = true
	}
	for _, unit := range order {
		if compared[unit] || standardUnits[unit] {
			continue
		}
		rep.Measurements = append(rep.Measurements, Measurement{Name: name, Value: metrics[unit], Unit: unit})
	}
}

type target struct {
	value float64
	max   bool
}

func targetOf(metrics map[string]float64, unit string) (target, bool) {
	if v, ok := metrics[targetMaxPrefix+unit]; ok {
		return target{v, true}, true
	}
	if v, ok := metrics[targetMinPrefix+unit]; ok {
		return target{v, false}, true
	}
	return target{}, false
}

// shortPkg drops the module prefix so names stay readable in the table.
func shortPkg(pkg string) string {
	pkg = strings.TrimPrefix(pkg, "github.com/securemsg/securemsg/")
	return strings.TrimPrefix(pkg, "services/")
}

// WriteTable prints the comparisons, then the measurements, as aligned text.
func (r Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	var err error // the first failed write; later ones are skipped
	printf := func(format string, args ...any) {
		if err == nil {
			_, err = fmt.Fprintf(tw, format, args...)
		}
	}
	printf("BENCHMARK\tVALUE\tBASELINE\tUNIT\tRATIO\tKIND\tTARGET\n")
	cs := append([]Comparison(nil), r.Comparisons...)
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].Name < cs[j].Name })
	for _, c := range cs {
		printf("%s\t%s\t%s\t%s\t%.3f\t%s\t%s\n", c.Name, num(c.Value), num(c.Baseline), c.Unit, c.Ratio, c.BaselineKind, c.targetText())
	}
	if len(r.Measurements) > 0 {
		printf("\t\t\t\t\t\t\n")
		printf("MEASUREMENT\tVALUE\t\tUNIT\t\t\t\n")
		for _, m := range r.Measurements {
			printf("%s\t%s\t\t%s\t\t\t\n", m.Name, num(m.Value), m.Unit)
		}
	}
	if err != nil {
		return err
	}
	return tw.Flush()
}

// targetText is the target column: "≤ 1.5× holds", "≥ 50000 FAILS", or "-".
func (c Comparison) targetText() string {
	if c.Target == nil {
		return "-"
	}
	op, unit := "≥", ""
	if c.TargetMax {
		op = "≤"
	}
	if c.BaselineKind != KindNone {
		unit = "×"
	}
	verdict := "holds"
	if !c.Holds {
		verdict = "FAILS"
	}
	return op + " " + num(*c.Target) + unit + " " + verdict
}

func num(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

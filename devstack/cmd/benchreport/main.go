// Command benchreport reads `go test -bench` output on stdin, prints the suite's benchmark table
// and writes the comparisons as JSON (-json FILE): a list of {name, value, unit, baseline, ratio,
// baseline_kind, target, holds} where ratio is value over the baseline: another implementation
// measured in the same run (baseline_kind "same-run"), or for a scale figure the same operation
// at the smallest size (baseline_kind "growth", ratio its growth factor); target is the bound a
// row is held to (null where none) and holds whether it met it. It exits 1 when the output
// shows a failed benchmark or package, so `make bench` cannot hide one; a missed target is
// listed, not fatal (the machine is shared and a p99 is noisy: read the figures).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/securemsg/securemsg/devstack/internal/benchreport"
)

func main() {
	out := flag.String("json", ".tmp/bench/results.json", "where to write the comparisons")
	flag.Parse()
	rep, err := benchreport.Parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(2)
	}
	if err := rep.WriteTable(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(2)
	}
	if err := writeJSON(*out, rep.Comparisons); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(2)
	}
	fmt.Printf("\n%d comparisons written to %s\n", len(rep.Comparisons), *out)
	for _, c := range rep.Comparisons {
		if c.Holds {
			continue
		}
		what, v := "value", c.Value
		if c.BaselineKind != benchreport.KindNone {
			what, v = "ratio", c.Ratio
		}
		fmt.Printf("target missed: %s %s %s %s, target %s\n", c.Name, c.Unit, what, strconv.FormatFloat(v, 'g', 4, 64), strconv.FormatFloat(*c.Target, 'g', 4, 64))
	}
	if len(rep.Failures) > 0 {
		fmt.Fprintln(os.Stderr, "benchmark failures:")
		for _, f := range rep.Failures {
			fmt.Fprintln(os.Stderr, "  "+f)
		}
		os.Exit(1)
	}
}

func writeJSON(path string, cs []benchreport.Comparison) error {
	if cs == nil {
		cs = []benchreport.Comparison{}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(cs, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

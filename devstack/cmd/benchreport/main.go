// Command benchreport reads `go test -bench` output on stdin, prints the suite's benchmark table
// and writes the comparisons as JSON (-json FILE): a list of {name, value, unit, baseline, ratio}
// where ratio is value over a baseline measured in the same run. It exits 1 when the output
// shows a failed benchmark or package, so `make bench` cannot hide one.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"

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

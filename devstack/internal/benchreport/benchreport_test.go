package benchreport_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/securemsg/securemsg/devstack/internal/benchreport"
)

const sample = `goos: linux
pkg: github.com/securemsg/securemsg/services/internal/platform/crypto
BenchmarkStreamSeal/1MiB-2     30   1200 ns/op   900.0 MB/s   1000 baseline-MB/s   0.9000 ratio-MB/s   12 B/op
BenchmarkSealRecord-2          100  150 ns/op
BenchmarkVault-2               1    5 ns/op   1.000 vault-calls/1000msgs
--- FAIL: BenchmarkBroken
FAIL	github.com/securemsg/securemsg/services/x	0.1s
pkg: github.com/securemsg/securemsg/services/audit/internal/adapters
BenchmarkIngest-2  1  9 ns/op  80000 records/s  88000 baseline-records/s  0.9091 ratio-records/s
`

func TestParse(t *testing.T) {
	t.Parallel()
	rep, err := benchreport.Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	want := []benchreport.Comparison{
		{Name: "internal/platform/crypto/StreamSeal/1MiB", Value: 900, Unit: "MB/s", Baseline: 1000, Ratio: 0.9},
		{Name: "audit/internal/adapters/Ingest", Value: 80000, Unit: "records/s", Baseline: 88000, Ratio: 80000.0 / 88000},
	}
	if diff := cmp.Diff(want, rep.Comparisons); diff != "" {
		t.Errorf("Parse() comparisons (-want +got):\n%s", diff)
	}
	wantM := []benchreport.Measurement{{Name: "internal/platform/crypto/Vault", Value: 1, Unit: "vault-calls/1000msgs"}}
	if diff := cmp.Diff(wantM, rep.Measurements); diff != "" {
		t.Errorf("Parse() measurements (-want +got):\n%s", diff)
	}
	if len(rep.Failures) != 2 {
		t.Errorf("Parse() failures = %q, want 2 lines", rep.Failures)
	}
	var table strings.Builder
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "StreamSeal/1MiB") || !strings.Contains(table.String(), "0.900") {
		t.Errorf("WriteTable() =\n%s\nwant the StreamSeal row with ratio 0.900", table.String())
	}
}

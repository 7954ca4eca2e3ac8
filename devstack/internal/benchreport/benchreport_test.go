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
pkg: github.com/securemsg/securemsg/services/messaging/internal/wire
BenchmarkGrowthMessaging/GetThreadPaged-2  1000  0 ns/op  2.000 growth-p50-ms  3.000 p50-ms  1.500 ratio-p50-ms  1.500 target-max-p50-ms  2.000 growth-p99-ms  4.000 p99-ms  2.000 ratio-p99-ms  1.500 target-max-p99-ms  2.500 p50-ms@10000
BenchmarkGrowthAudit/VerifyRange-2  1  0 ns/op  40000 records/s  50000 target-min-records/s  3.000 proof-ms  5.000 target-max-proof-ms
`

func TestParse(t *testing.T) {
	t.Parallel()
	rep, err := benchreport.Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	f := func(v float64) *float64 { return &v }
	want := []benchreport.Comparison{
		{Name: "internal/platform/crypto/StreamSeal/1MiB", Value: 900, Unit: "MB/s", Baseline: 1000, Ratio: 0.9, BaselineKind: "same-run", Holds: true},
		{Name: "audit/internal/adapters/Ingest", Value: 80000, Unit: "records/s", Baseline: 88000, Ratio: 80000.0 / 88000, BaselineKind: "same-run", Holds: true},
		// A growth factor at its bound holds; one past it does not.
		{Name: "messaging/internal/wire/GrowthMessaging/GetThreadPaged", Value: 3, Unit: "p50-ms", Baseline: 2, Ratio: 1.5,
			BaselineKind: "growth", Target: f(1.5), TargetMax: true, Holds: true},
		{Name: "messaging/internal/wire/GrowthMessaging/GetThreadPaged", Value: 4, Unit: "p99-ms", Baseline: 2, Ratio: 2,
			BaselineKind: "growth", Target: f(1.5), TargetMax: true, Holds: false},
		// Without a baseline the target bounds the value itself.
		{Name: "messaging/internal/wire/GrowthAudit/VerifyRange", Value: 40000, Unit: "records/s", BaselineKind: "none", Target: f(50000), Holds: false},
		{Name: "messaging/internal/wire/GrowthAudit/VerifyRange", Value: 3, Unit: "proof-ms", BaselineKind: "none", Target: f(5), TargetMax: true, Holds: true},
	}
	if diff := cmp.Diff(want, rep.Comparisons); diff != "" {
		t.Errorf("Parse() comparisons (-want +got):\n%s", diff)
	}
	wantM := []benchreport.Measurement{{Name: "internal/platform/crypto/Vault", Value: 1, Unit: "vault-calls/1000msgs"},
		{Name: "messaging/internal/wire/GrowthMessaging/GetThreadPaged", Value: 2.5, Unit: "p50-ms@10000"}}
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
	if !strings.Contains(table.String(), "≤ 1.50× FAILS") || !strings.Contains(table.String(), "≥ 50000 FAILS") {
		t.Errorf("WriteTable() =\n%s\nwant the failed targets marked", table.String())
	}
}

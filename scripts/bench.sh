#!/usr/bin/env bash
# `make bench`: runs every benchmark of the workspace against the local stack, prints one table of
# value / baseline / ratio (each baseline measured in the same run) and writes
# .tmp/bench/results.json. BENCHTIME (default 1s) and BENCH (a -bench regexp) narrow a run.
#
# The growth benchmarks (BenchmarkGrowthMessaging, BenchmarkGrowthAudit: cost as the data grows)
# seed throw-away schemas at three sizes each and report p50/p99 per size and the growth factor
# (results.json rows with baseline_kind "growth", target and holds); EXPLAIN of their queries
# goes to .tmp/bench/explain/. GROWTH=0 leaves them out; SECUREMSG_GROWTH_MESSAGES (default
# 10000,100000,1000000), SECUREMSG_GROWTH_AUDIT (default 100000,1000000,10000000) and
# SECUREMSG_GROWTH_OPS (timed calls per size and operation, default 400) change the sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .tmp/bench
scripts/stack.sh up >/dev/null
# shellcheck disable=SC1090
source <(scripts/stack.sh env)
mapfile -t modules < <(go list -m -f '{{.Dir}}/...')
raw=.tmp/bench/raw.txt
status=0
skip=()
if [[ "${GROWTH:-1}" == 0 ]]; then
	skip=(-skip '^BenchmarkGrowth')
fi
go test -run '^$' -bench "${BENCH:-.}" "${skip[@]}" -benchtime "${BENCHTIME:-1s}" -timeout 90m "${modules[@]}" >"$raw" 2>&1 || status=$?
go run ./devstack/cmd/benchreport -json .tmp/bench/results.json <"$raw" || status=$?
echo "raw output: $raw"
exit $status

#!/usr/bin/env bash
# `make bench`: runs every benchmark of the workspace against the local stack, prints one table of
# value / baseline / ratio (each baseline measured in the same run) and writes
# .tmp/bench/results.json. BENCHTIME (default 1s) and BENCH (a -bench regexp) narrow a run.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .tmp/bench
scripts/stack.sh up >/dev/null
# shellcheck disable=SC1090
source <(scripts/stack.sh env)
mapfile -t modules < <(go list -m -f '{{.Dir}}/...')
raw=.tmp/bench/raw.txt
status=0
go test -run '^$' -bench "${BENCH:-.}" -benchtime "${BENCHTIME:-1s}" -timeout 60m "${modules[@]}" >"$raw" 2>&1 || status=$?
go run ./devstack/cmd/benchreport -json .tmp/bench/results.json <"$raw" || status=$?
echo "raw output: $raw"
exit $status

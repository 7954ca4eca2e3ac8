#!/usr/bin/env bash
# `make load`: the bounded load test. It starts its own private stack (real Postgres, NATS,
# Transit dev server, MinIO, clamd, mailpit and the four service binaries on random ports; the
# shared dev stack is not touched), runs a mixed workload of concurrent patient and clinician
# clients for LOAD_DURATION (default 30s), prints throughput, p50/p99 per rpc, errors and each
# service's peak memory, then reconciles the stored state. Exit status 1 on any error.
# LOAD_ARGS passes more flags: -load.patients N -load.clinicians N -load.file-bytes N.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC2086
exec go test -count=1 -v -run '^TestLoad$' -timeout 20m ./services/e2e \
  -args -load.duration="${LOAD_DURATION:-30s}" ${LOAD_ARGS:-}

#!/usr/bin/env bash
# `make drill`: the backup and restore drill, on its own private stack (the shared dev stack is
# not touched): write threads with attachments, pg_dump the service schemas and mirror the
# bucket, restore into a fresh database and bucket, restart the services on the restored data,
# read a sample back byte-exact and check that the audit log verifies and chains on across the
# restore. Exit status 0 only if every step held. DRILL_ARGS passes more flags (-drill.threads N).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC2086
exec go test -count=1 -v -run '^TestDrill$' -timeout 10m ./services/e2e -args -drill ${DRILL_ARGS:-}

#!/usr/bin/env bash
# `make drill`: the backup and restore drill (services/e2e TestDrill), bigger than the one
# `make test` runs, on its own private stack (the shared dev stack is not touched): write
# threads with attachments (rotating the Transit keys after the first), back up the service
# schemas (pg_dump), the bucket (mirror) and the key store (Transit snapshot through the vault
# api, as against Vault's integrated storage), lose the key store (a fresh, empty Transit on
# which the stored DEKs do not unwrap), restore all three, restart the services on the restored
# database, bucket and Transit, read every message and file back byte-exact and check that the
# audit log verifies and chains on across the restore. Exit status 0 only if every step held.
# DRILL_THREADS sets the size (default 10; `make test` runs 2); DRILL_ARGS passes more flags.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC2086
exec go test -count=1 -v -run '^TestDrill$' -timeout 10m ./services/e2e -args -drill.threads "${DRILL_THREADS:-10}" ${DRILL_ARGS:-}

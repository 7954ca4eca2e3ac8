#!/usr/bin/env bash
# The local dev stack: real dependencies as plain processes on 127.0.0.1, no Docker.
#
#   scripts/stack.sh up       install (first run) and start everything, then the four services and
#                             the reference portal on http://127.0.0.1:8080 (built with npm first)
#   scripts/stack.sh status   print every endpoint with its health; non-zero if anything is down
#   scripts/stack.sh down     stop what `up` started; never the machine's Postgres
#   scripts/stack.sh env      print `export SECUREMSG_TEST_...` lines for the tests (testkit)
#
# One Go program supervises it, the same code that runs the tests' private stacks
# (services/internal/testkit/internal/supervisor); this script only runs it. State, logs and pid
# records live in .tmp/stack/<component>/. `up` is idempotent: a running, healthy component is
# left alone; one whose binary or settings changed is restarted.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# Through the workspace whatever the caller's GOWORK says: the program's module is one of many.
GOWORK=$ROOT/go.work exec go run ./services/internal/testkit/cmd/stack "$@"

#!/usr/bin/env bash
# The reference portal's browser stories (web/portal/tests), in Debian's chromium driven by
# playwright-core, against the dev stack (`make up`, which builds and serves the portal on
# 127.0.0.1:8080). `make test` runs this; under CI=true a missing browser fails the run.
#
#   scripts/portal-test.sh          type-check the portal, then run every story
#
# Screenshots of every page go to .tmp/portal/screens/.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export SECUREMSG_ROOT=$ROOT
# shellcheck source=lib/portal.sh
source "$ROOT/scripts/lib/portal.sh"

portal_deps
if ! portal_browser; then
  if [[ ${CI:-} == true ]]; then
    echo "portal-test.sh: no browser for the portal's stories (CI=true: failing, not skipping)" >&2
    exit 1
  fi
  echo "portal-test.sh: SKIPPED: no chromium (outside CI a missing browser only skips)" >&2
  exit 0
fi
(cd "$ROOT/web/portal" && npx --no-install tsc --noEmit)
curl -fsS -o /dev/null "${SECUREMSG_PORTAL_URL:-http://127.0.0.1:8080}/config.json" ||
  { echo "portal-test.sh: the portal is not served at ${SECUREMSG_PORTAL_URL:-http://127.0.0.1:8080} (make up)" >&2; exit 1; }
rm -rf "$ROOT/.tmp/portal/screens"
cd "$ROOT/web/portal"
# The stories' own requests (route.fetch: a chunk stored whose answer is then lost) come from
# node, which must trust the dev CA as the browser does.
export NODE_EXTRA_CA_CERTS=${SECUREMSG_CERTS_DIR:-$ROOT/.tmp/stack/certs}/ca.pem
node --test --test-reporter=spec --test-concurrency=1 tests/*.test.mjs

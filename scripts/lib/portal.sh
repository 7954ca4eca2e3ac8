# shellcheck shell=bash
# The reference portal's npm side (web/portal), for scripts and for the stack supervisor, which
# runs `bash -c 'source scripts/lib/portal.sh && portal_build'` before it starts the portal's
# server. Source this file, then:
#
#   portal_deps      npm ci in web/portal when node_modules is missing or package-lock.json changed
#                    since the last install (the lock file's sha256 is kept in
#                    node_modules/.securemsg-lock-sha256); scripts/generate.sh needs it for
#                    node_modules/.bin/protoc-gen-es
#   portal_build     portal_deps, then `npm run build` when dist/index.html is missing or any file
#                    under web/portal (outside node_modules, dist, tests and the tests' output)
#                    is newer than it; prints "built" or "up to date" on stdout
#   portal_browser   make sure /usr/bin/chromium exists for the browser tests, installing Debian's
#                    chromium with apt-get when it is missing
#
# Progress and npm's own output go to stderr. Each function returns non-zero with a message on
# stderr when it fails (npm missing, install or build failed). portal_deps and portal_build hold
# .tmp/portal.lock while they run: `make up` and `make generate` may run at once, and two npm
# runs in one folder break each other's node_modules.

SECUREMSG_ROOT=${SECUREMSG_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
PORTAL_DIR="$SECUREMSG_ROOT/web/portal"

portal_deps() { _portal_locked _portal_deps; }

portal_build() { _portal_locked _portal_build; }

portal_browser() {
  if [[ -x /usr/bin/chromium ]]; then
    return 0
  fi
  if ! command -v apt-get >/dev/null; then
    echo "portal: no /usr/bin/chromium and no apt-get to install it; install Chromium for the browser tests" >&2
    return 1
  fi
  local sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null || { echo "portal: installing chromium needs root (or sudo)" >&2; return 1; }
    sudo=(sudo -n)
  fi
  echo "portal: installing chromium with apt-get for the browser tests (first run only)..." >&2
  { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >&2 ||
    { echo "portal: apt-get install chromium failed" >&2; return 1; }
  [[ -x /usr/bin/chromium ]] || { echo "portal: chromium installed, but there is no /usr/bin/chromium" >&2; return 1; }
}

# _portal_locked FUNC runs FUNC holding .tmp/portal.lock (flock waits for another holder). The
# subshell keeps the lock's descriptor out of the caller.
_portal_locked() {
  mkdir -p "$SECUREMSG_ROOT/.tmp" || return 1
  (
    flock 9 || { echo "portal: cannot lock $SECUREMSG_ROOT/.tmp/portal.lock" >&2; exit 1; }
    "$@"
  ) 9>"$SECUREMSG_ROOT/.tmp/portal.lock"
}

_portal_npm() {
  if ! command -v npm >/dev/null; then
    echo "portal: npm is not installed; the reference portal (web/portal) needs Node.js 20 or newer with npm (apt-get install nodejs npm)" >&2
    return 1
  fi
}

_portal_deps() {
  local lock=$PORTAL_DIR/package-lock.json stamp=$PORTAL_DIR/node_modules/.securemsg-lock-sha256 sum
  [[ -f $lock ]] || { echo "portal: no $lock" >&2; return 1; }
  # The sum is taken before installing: a lock file edited during `npm ci` installs again next time.
  sum=$(sha256sum "$lock") || return 1
  sum=${sum%% *}
  if [[ -d $PORTAL_DIR/node_modules && -f $stamp && $(<"$stamp") == "$sum" ]]; then
    return 0
  fi
  _portal_npm || return 1
  echo "portal: npm ci in web/portal (node_modules missing or package-lock.json changed)..." >&2
  (cd "$PORTAL_DIR" && npm ci --no-audit --no-fund) >&2 || { echo "portal: npm ci failed in $PORTAL_DIR" >&2; return 1; }
  printf '%s\n' "$sum" >"$stamp"
}

_portal_build() {
  local index=$PORTAL_DIR/dist/index.html began=$PORTAL_DIR/node_modules/.securemsg-build-began newer
  _portal_deps || return 1
  if [[ -f $index ]]; then
    # Files only (a folder's time changes when anything is added to it); the lock-file stamp
    # counts too, so a fresh npm ci rebuilds. tests/ (the browser stories) and their output are
    # not the app's sources.
    newer=$(find "$PORTAL_DIR" \( -path "$PORTAL_DIR/node_modules" -o -path "$PORTAL_DIR/dist" \
      -o -path "$PORTAL_DIR/tests" -o -path "$PORTAL_DIR/test-results" -o -path "$PORTAL_DIR/playwright-report" \) -prune \
      -o -type f -newer "$index" -print -quit) || return 1
    if [[ -z $newer && ! $PORTAL_DIR/node_modules/.securemsg-lock-sha256 -nt $index ]]; then
      echo "up to date"
      return 0
    fi
  fi
  _portal_npm || return 1
  echo "portal: npm run build in web/portal${newer:+ ($newer changed)}..." >&2
  # The build's start becomes index.html's time, so a source saved while it ran is newer than
  # the result and builds again next time.
  touch "$began" || return 1
  (cd "$PORTAL_DIR" && npm run build) >&2 || { echo "portal: npm run build failed in $PORTAL_DIR" >&2; return 1; }
  [[ -f $index ]] || { echo "portal: npm run build wrote no $index" >&2; return 1; }
  touch -r "$began" "$index" || return 1
  echo "built"
}

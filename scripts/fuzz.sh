#!/usr/bin/env bash
# Runs every fuzz target in the workspace for a short time each (default 10s). The seed corpora in
# testdata/fuzz also run as plain tests in `go test`; this adds coverage-guided exploration.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-10s}
status=0
for dir in $(go list -m -f '{{.Dir}}'); do
  while IFS= read -r pkg; do
    [ -n "$pkg" ] || continue
    pkgdir=$(go list -f '{{.Dir}}' "$pkg")
    for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$pkgdir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
      echo "fuzz $pkg $target ($fuzztime)"
      if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" >/tmp/securemsg-fuzz.log 2>&1; then
        # On a loaded machine Go's fuzzer can report its own -fuzztime ending as "context deadline
        # exceeded" with no failing input; a real finding always writes one. Retry that case once.
        if grep -q 'context deadline exceeded' /tmp/securemsg-fuzz.log && ! grep -q 'Failing input written' /tmp/securemsg-fuzz.log &&
          go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" >/tmp/securemsg-fuzz.log 2>&1; then
          echo "  (retried: the first run ended on the fuzzer's own deadline, without a failing input)"
        else
          cat /tmp/securemsg-fuzz.log; status=1
        fi
      fi
    done
  done < <(cd "$dir" && go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' ./... 2>/dev/null)
done
exit $status

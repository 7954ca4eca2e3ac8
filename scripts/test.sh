#!/usr/bin/env bash
# The one test command (`make test`): static checks, then the dev stack (started if it is not up),
# then every module's tests with -race against the real dependencies, then a brief fuzz pass.
# Under CI=true a test whose dependency is missing fails instead of skipping (services/internal/testkit).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
step() { printf '\n== %s (%ss)\n' "$*" "$(( $(date +%s) - start ))"; }

step "generated code is current (make check-generate)"
scripts/generate.sh --check

step "lint (make lint: buf lint, gofmt, go vet, golangci-lint with the layer rules)"
scripts/lint.sh
mapfile -t modules < <(go list -m -f '{{.Dir}}/...')

step "every module builds on its own (GOWORK=off, through its replace lines)"
for dir in $(go list -m -f '{{.Dir}}'); do
  (cd "$dir" && GOWORK=off go build ./...) || { echo "GOWORK=off build failed in $dir"; exit 1; }
done

step "dev stack (make up)"
scripts/stack.sh up
# shellcheck disable=SC1090
source <(scripts/stack.sh env)

step "Jaeger for the tracing test (built once into .tmp/bin, from devstack/tools/jaeger)"
# Built here rather than inside the test, so a first build does not compete with the tests.
# shellcheck source=lib/tools.sh
source scripts/lib/tools.sh
tool_path jaeger >/dev/null

step "go test -race, every module"
mkdir -p .tmp
go test -race -count=1 -timeout 25m "${modules[@]}" 2>&1 | tee .tmp/go-test.log
passed=$(grep -c '^ok ' .tmp/go-test.log || true)
failed=$(grep -c '^FAIL' .tmp/go-test.log || true)

step "the reference portal's stories in a real browser (web/portal, scripts/portal-test.sh)"
scripts/portal-test.sh 2>&1 | tee .tmp/portal-test.log

if [ "${CI:-}" = "true" ]; then
  step "fuzz targets, briefly"
  scripts/fuzz.sh "${SECUREMSG_CI_FUZZTIME:-5s}"
fi
step "all tests passed"
echo "packages: $passed passed, $failed failed"

#!/usr/bin/env bash
# Every static check of the repository, as `make lint` runs it.
#
#   scripts/lint.sh             buf lint, then gofmt, go vet and golangci-lint over every module
#   scripts/lint.sh DIR...      gofmt, go vet and golangci-lint over the modules in DIR... only
#                               (e.g. scripts/lint.sh services/messaging services/ctl)
#
# golangci-lint (pinned in scripts/lib/tools.sh, configured by .golangci.yml: the reviewer's
# linters and the depguard layer rules) runs once per module: `./...` does not cross module
# boundaries at a go.work root, and one run over all modules would report only the type errors
# of a module that does not compile and hide every other module's findings. Every check runs
# even after one fails, so one run shows the whole list; the exit status is 1 if any failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export SECUREMSG_ROOT=$ROOT
# shellcheck source=lib/tools.sh
source "$ROOT/scripts/lib/tools.sh"
cd "$ROOT"

die() { echo "lint.sh: $*" >&2; exit 2; }
step() { printf '\n== %s\n' "$*"; }

# Every module of the workspace, relative to the root (services/messaging, gen, ...).
mapfile -t workspace < <(go list -m -f '{{.Dir}}' | sed "s#^$ROOT/##")

failed=() # the checks that failed, named for the summary

modules=()
if (($#)); then
  for dir in "$@"; do
    dir=${dir%/}
    dir=${dir#./}
    found=
    for m in "${workspace[@]}"; do [[ $m == "$dir" ]] && found=1; done
    [[ -n $found ]] || die "$dir is not a module of go.work (modules: ${workspace[*]})"
    modules+=("$dir")
  done
else
  step "buf lint"
  scripts/generate.sh --lint || failed+=("buf lint")
  modules=("${workspace[@]}")
fi

step "gofmt (${modules[*]})"
# Generated code is written by `make generate` and checked by `make check-generate` instead.
# The working tree's Go files: tracked and new (untracked, not ignored) ones, minus deleted ones.
go_files() {
  git ls-files --cached --others --exclude-standard -- "${modules[@]}" |
    { grep '\.go$' || true; } | { grep -v '^gen/' || true; } |
    while IFS= read -r f; do if [[ -f $f ]]; then echo "$f"; fi; done
}
if ! bad=$(go_files | xargs -r gofmt -l); then
  failed+=(gofmt) # gofmt could not parse a file; its message is above
elif [[ -n $bad ]]; then
  echo "not gofmt-ed:"
  echo "$bad"
  failed+=(gofmt)
fi

step "go vet"
patterns=()
for m in "${modules[@]}"; do patterns+=("./$m/..."); done
go vet "${patterns[@]}" || failed+=("go vet")

GOLANGCI_LINT=$(tool_path golangci-lint) || die "cannot install pinned golangci-lint"
for m in "${modules[@]}"; do
  # gen/ holds only generated code, which .golangci.yml excludes; analysing it finds nothing.
  [[ $m == gen ]] && continue
  step "golangci-lint $m"
  if ! "$GOLANGCI_LINT" run "./$m/..."; then
    failed+=("golangci-lint $m")
  fi
done

if ((${#failed[@]})); then
  printf '\nlint.sh: failed:\n' >&2
  printf '  %s\n' "${failed[@]}" >&2
  exit 1
fi
printf '\nlint.sh: all checks passed\n'

# shellcheck shell=bash
# Pinned developer tools, installed with `go install` into .tmp/bin keyed by version, so that a
# second run finds them at once and a version bump installs the new one beside the old.
# Source this file; call `tool_path NAME` to get (and if needed install) a tool's binary.

SECUREMSG_ROOT=${SECUREMSG_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
TOOLS_DIR="$SECUREMSG_ROOT/.tmp/bin"

# name|go package|version — the single list of pinned tools.
TOOL_PINS=(
  "buf|github.com/bufbuild/buf/cmd/buf|v1.75.0"
  "protoc-gen-go|google.golang.org/protobuf/cmd/protoc-gen-go|v1.36.12"
  "protoc-gen-go-grpc|google.golang.org/grpc/cmd/protoc-gen-go-grpc|v1.6.2"
  "protoc-gen-openapi|github.com/google/gnostic/cmd/protoc-gen-openapi|v0.7.1"
  "gojq|github.com/itchyny/gojq/cmd/gojq|v0.12.19"
  "nats-server|github.com/nats-io/nats-server/v2|v2.12.15"
  "minio|github.com/minio/minio|v0.0.0-20260212201848-7aac2a2c5b7c"
  "mailpit|github.com/axllent/mailpit|v1.27.11"
  "golangci-lint|github.com/golangci/golangci-lint/v2/cmd/golangci-lint|v2.15.0"
)

tool_pin() { # tool_pin NAME -> "package version"
  local entry
  for entry in "${TOOL_PINS[@]}"; do
    IFS='|' read -r n pkg ver <<<"$entry"
    if [[ $n == "$1" ]]; then echo "$pkg $ver"; return 0; fi
  done
  echo "unknown tool: $1" >&2
  return 1
}

# tool_path NAME prints the path of the pinned binary, installing it first when missing.
tool_path() {
  local name=$1 pkg ver dir
  read -r pkg ver < <(tool_pin "$name") || return 1
  dir="$TOOLS_DIR/$name@$ver"
  if [[ ! -x $dir/$name ]]; then
    echo "installing $name $ver (first run only)..." >&2
    mkdir -p "$dir"
    # GOWORK=off and GOFLAGS cleared: tools build from their own module graph, not ours.
    GOWORK=off GOFLAGS=-mod=mod GOBIN="$dir" go install "$pkg@$ver" >&2 || { rm -rf "$dir"; return 1; }
  fi
  echo "$dir/$name"
}

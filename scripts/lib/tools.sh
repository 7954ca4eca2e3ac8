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
  # Jaeger's module has replace directives, which `go install pkg@version` refuses: it is built
  # from its own tools module (devstack/tools/jaeger, outside go.work), whose go.mod pins it.
  "jaeger|github.com/jaegertracing/jaeger/cmd/jaeger|v1.75.0|devstack/tools/jaeger"
)

tool_pin() { # tool_pin NAME -> "package version [tools module]"
  local entry n pkg ver mod
  for entry in "${TOOL_PINS[@]}"; do
    IFS='|' read -r n pkg ver mod <<<"$entry"
    if [[ $n == "$1" ]]; then echo "$pkg $ver $mod"; return 0; fi
  done
  echo "unknown tool: $1" >&2
  return 1
}

# tool_path NAME prints the path of the pinned binary, installing it first when missing.
tool_path() {
  local name=$1 pkg ver mod dir
  read -r pkg ver mod < <(tool_pin "$name") || return 1
  dir="$TOOLS_DIR/$name@$ver"
  if [[ ! -x $dir/$name ]]; then
    echo "installing $name $ver (first run only)..." >&2
    mkdir -p "$dir"
    if [[ -n $mod ]]; then
      # The tools module's go.mod must require the pinned version, or the pin lies.
      grep -q "${pkg%/cmd/*} $ver" "$SECUREMSG_ROOT/$mod/go.mod" || {
        echo "$mod/go.mod does not require ${pkg%/cmd/*} $ver" >&2; rm -rf "$dir"; return 1; }
      (cd "$SECUREMSG_ROOT/$mod" && GOWORK=off GOFLAGS=-mod=mod go build -o "$dir/$name" "$pkg") >&2 || { rm -rf "$dir"; return 1; }
    else
      # GOWORK=off and GOFLAGS cleared: tools build from their own module graph, not ours.
      GOWORK=off GOFLAGS=-mod=mod GOBIN="$dir" go install "$pkg@$ver" >&2 || { rm -rf "$dir"; return 1; }
    fi
  fi
  echo "$dir/$name"
}

#!/usr/bin/env bash
# Regenerate gen/ from proto/ with the pinned buf and protoc plugins (scripts/lib/tools.sh).
#
#   scripts/generate.sh           delete gen/securemsg and gen/openapi and regenerate them
#   scripts/generate.sh --check   regenerate into a temporary copy and fail if gen/ differs
#   scripts/generate.sh --lint    buf lint (STANDARD + COMMENTS) and buf format check
#   scripts/generate.sh --breaking [REF]
#                                 buf breaking (WIRE_JSON) against git REF (default main), then the
#                                 HTTP mapping: every google.api.http route REF has must still be
#                                 there, unchanged; passes trivially while REF has no proto/ yet
#
# Besides the Go code, generation writes the reference portal's TypeScript (protoc-gen-es, the npm
# package pinned in web/portal/package.json; proto/buf.gen.es.yaml) to web/portal/src/gen, and the OpenAPI v3 document of every service with HTTP
# routes (protoc-gen-openapi, converted to JSON) to gen/openapi/<full service name>.json and the
# Go package gen/openapi that embeds them, so each service's HTTP edge can serve its own.
#
# The imported contracts that are not ours (google/api/{annotations,http,httpbody}.proto for the
# REST mapping, buf/validate/validate.proto for protovalidate rules) are not committed: they are
# fetched at the versions pinned in PROTO_DEPS below through the Go module proxy (checked against
# the checksum database like any module) into proto/.tmp/deps, which git ignores and
# proto/buf.yaml names as modules of the buf workspace.
#
# buf resolves a plugin's `out:` against the WORKING DIRECTORY, not against buf.gen.yaml, so buf
# always runs from a proto/ directory: proto/buf.gen.yaml writes to ../gen. --check runs the same
# generation in a temporary tree (tmp/proto -> tmp/gen), so it never touches the real gen/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export SECUREMSG_ROOT=$ROOT
# shellcheck source=lib/tools.sh
source "$ROOT/scripts/lib/tools.sh"
# shellcheck source=lib/portal.sh
source "$ROOT/scripts/lib/portal.sh"

die() { echo "generate.sh: $*" >&2; exit 1; }

# PROTO_DEPS: name|Go module that ships the .proto files|version|directory in the module|files.
# The buf registry is not reachable from every machine that generates, the Go module proxy is;
# these modules carry the files verbatim. googleapis' google/api files are a stable contract
# (grpc-gateway v1 is the last Go module to ship them); validate.proto comes from protovalidate's
# own repository (a Go module), at its newest release: the runtime that checks the rules
# (buf.build/go/protovalidate v1.4.0, in services/internal/platform) is newer still and knows
# every rule this file declares.
PROTO_DEPS=(
  "googleapis|github.com/grpc-ecosystem/grpc-gateway|v1.16.0|third_party/googleapis|google/api/annotations.proto google/api/http.proto google/api/httpbody.proto"
  "protovalidate|github.com/bufbuild/protovalidate|v1.2.2|proto/protovalidate|buf/validate/validate.proto"
)

# fetch_proto_deps DIR makes DIR/proto/.tmp/deps/<name>/ hold exactly the pinned files. A stamp
# of the pins skips the work when nothing changed; a new set is assembled beside the old one and
# moved into place, so a buf run in parallel never sees a half-written tree.
fetch_proto_deps() {
  local deps=$1/proto/.tmp/deps stamp entry name mod ver sub files dir f next
  stamp=$(printf '%s\n' "${PROTO_DEPS[@]}")
  if [[ -f $deps/.pins && $(cat "$deps/.pins") == "$stamp" ]]; then
    return 0
  fi
  mkdir -p "$1/proto/.tmp"
  next=$(mktemp -d "$1/proto/.tmp/deps.XXXXXX")
  for entry in "${PROTO_DEPS[@]}"; do
    IFS='|' read -r name mod ver sub files <<<"$entry"
    # GOWORK=off and GOFLAGS cleared: a plain module download, outside our module graph.
    dir=$(cd "$next" && GOWORK=off GOFLAGS=-mod=mod go mod download -json "$mod@$ver" | "$GOJQ" -r '.Dir // empty') || true
    [[ -n $dir && -d $dir/$sub ]] || { rm -rf "$next"; die "cannot download $mod@$ver for $name"; }
    for f in $files; do
      [[ -f $dir/$sub/$f ]] || { rm -rf "$next"; die "$mod@$ver has no $sub/$f"; }
      mkdir -p "$next/$name/$(dirname "$f")"
      install -m 0644 "$dir/$sub/$f" "$next/$name/$f"
    done
  done
  printf '%s\n' "$stamp" >"$next/.pins"
  rm -rf "$deps.old"
  [[ ! -e $deps ]] || mv "$deps" "$deps.old"
  mv "$next" "$deps"
  rm -rf "$deps.old"
}

# install_tools puts the pinned buf and plugins first on PATH (buf.gen.yaml names the plugins as
# local binaries, so PATH decides which versions run).
install_tools() {
  local t p
  for t in buf protoc-gen-go protoc-gen-go-grpc protoc-gen-openapi gojq; do
    p=$(tool_path "$t") || die "cannot install pinned $t"
    PATH="$(dirname "$p"):$PATH"
  done
  # protoc-gen-es is an npm package: the portal's own pinned dependencies provide it.
  portal_deps || die "cannot install the portal's npm dependencies (web/portal)"
  PATH="$ROOT/web/portal/node_modules/.bin:$PATH"
  export PATH
  BUF=$(tool_path buf)
  GOJQ=$(tool_path gojq)
}

# generate_in DIR regenerates DIR/gen/securemsg and DIR/gen/openapi from DIR/proto, deleting the
# old output first so files of removed protos do not linger.
generate_in() {
  local dir=$1
  fetch_proto_deps "$dir"
  rm -rf "$dir/gen/securemsg" "$dir/gen/openapi" "$dir/proto/.tmp/openapi" "$dir/web/portal/src/gen"
  (cd "$dir/proto" && "$BUF" generate)
  (cd "$dir/proto" && "$BUF" generate --template buf.gen.es.yaml)
  [[ -d $dir/web/portal/src/gen/securemsg ]] || die "buf generate produced nothing in $dir/web/portal/src/gen"
  [[ -d $dir/gen/securemsg ]] || die "buf generate produced nothing in $dir/gen/securemsg"
  write_package_docs "$dir/gen/securemsg"
  write_openapi "$dir/proto/.tmp/openapi" "$dir/gen/openapi"
}

# write_openapi RAW OUT turns protoc-gen-openapi's per-file YAML (RAW/securemsg/<svc>/v1/
# <file>.openapi.yaml) into OUT/<package>.<Service>.json for every file whose service has HTTP
# routes, and writes the Go package that embeds them. gojq prints object keys sorted, so the
# JSON is deterministic and --check can compare it byte for byte.
write_openapi() {
  local raw=$1 out=$2 yaml rel pkg svc n=0
  mkdir -p "$out"
  while IFS= read -r yaml; do
    "$GOJQ" --yaml-input -e '(.paths // {}) | length > 0' "$yaml" >/dev/null || continue
    rel=${yaml#"$raw"/}                       # securemsg/messaging/v1/messaging_service.openapi.yaml
    pkg=$(dirname "$rel")                     # securemsg/messaging/v1
    svc=$("$GOJQ" --yaml-input -r '[.tags[].name] | if length == 1 then .[0] else error("want one service per file, have \(length)") end' "$yaml") ||
      die "$rel: cannot name its service"
    "$GOJQ" --yaml-input --indent 2 . "$yaml" >"$out/${pkg//\//.}.$svc.json"
    n=$((n + 1))
  done < <(find "$raw" -name '*.openapi.yaml' | LC_ALL=C sort)
  ((n > 0)) || die "no service has HTTP routes (google.api.http); nothing to write to $out"
  cat >"$out/openapi.go" <<'GO'
// Code generated by scripts/generate.sh. DO NOT EDIT.

// Package openapi embeds the OpenAPI v3 documents of securemsg's REST surface, one per service,
// generated from the google.api.http annotations (and the comments) of proto/ by
// protoc-gen-openapi. Each service's HTTP edge serves its own document; the .proto files remain
// the contract.
package openapi

import "embed"

//go:embed *.json
var documents embed.FS

// Document returns the OpenAPI document (JSON) of a service named by its full protobuf name,
// for example "securemsg.messaging.v1.MessagingService", and false when the service has no
// HTTP routes.
func Document(service string) ([]byte, bool) {
	b, err := documents.ReadFile(service + ".json")
	return b, err == nil
}
GO
}

# write_package_docs writes a doc.go into every generated package. protoc-gen-go copies the proto
# package comment but detaches it from the Go package clause, so without this `go doc` shows no
# package documentation. Deterministic, so --check compares it like the rest.
write_package_docs() {
  local root=$1 pkgdir rel name
  while IFS= read -r pkgdir; do
    rel=${pkgdir#"$root"/}      # e.g. messaging/v1
    name="${rel%%/*}${rel##*/}" # e.g. messagingv1
    cat >"$pkgdir/doc.go" <<GO
// Code generated by scripts/generate.sh. DO NOT EDIT.

// Package $name is the Go code generated from the protobuf package securemsg.${rel//\//.}
// (proto/securemsg/$rel): message types, enums and, where the package declares a service, its
// gRPC client and server. The .proto files are the contract and its documentation.
package $name
GO
  done < <(find "$root" -mindepth 2 -maxdepth 2 -type d | LC_ALL=C sort)
}

cmd_generate() {
  install_tools
  generate_in "$ROOT"
  echo "generated $(find "$ROOT/gen/securemsg" -name '*.go' | wc -l) files under gen/securemsg, $(find "$ROOT/web/portal/src/gen" -name '*.ts' | wc -l) under web/portal/src/gen"
}

cmd_check() {
  install_tools
  # CHECK_TMP is global (not local): the EXIT trap runs after this function has returned.
  CHECK_TMP=$(mktemp -d)
  trap 'rm -rf "$CHECK_TMP"' EXIT
  local tmp=$CHECK_TMP d
  # Only the committed inputs: proto/.tmp (fetched deps, raw OpenAPI) is rebuilt in the copy.
  mkdir -p "$tmp/proto" "$tmp/gen"
  (cd "$ROOT/proto" && tar -c --exclude=./.tmp .) | tar -x -C "$tmp/proto"
  generate_in "$tmp"
  for d in securemsg openapi; do
    [[ -d $ROOT/gen/$d ]] || die "gen/$d is missing: run 'make generate' and commit the result"
    # diff -r also reports files present on only one side (new or deleted protos).
    if ! diff -r "$tmp/gen/$d" "$ROOT/gen/$d" >"$tmp/diff.txt"; then
      echo "generate.sh: gen/$d is stale against proto/; run 'make generate' and commit the result." >&2
      echo "differences (expected <, committed >):" >&2
      head -n 40 "$tmp/diff.txt" >&2
      exit 1
    fi
  done
  if ! diff -r "$tmp/web/portal/src/gen" "$ROOT/web/portal/src/gen" >"$tmp/diff.txt"; then
    echo "generate.sh: web/portal/src/gen is stale against proto/; run 'make generate' and commit the result." >&2
    echo "differences (expected <, committed >):" >&2
    head -n 40 "$tmp/diff.txt" >&2
    exit 1
  fi
  echo "gen/ and web/portal/src/gen are up to date with proto/"
}

cmd_lint() {
  install_tools
  fetch_proto_deps "$ROOT"
  (cd "$ROOT/proto" && "$BUF" lint) || die "buf lint failed"
  # Only our files: the fetched deps are formatted as their authors left them.
  (cd "$ROOT/proto" && "$BUF" format --diff --exit-code --path securemsg) ||
    die "proto files are not buf-formatted; run: (cd proto && buf format -w)"
  echo "buf lint and format: clean"
}

# cmd_breaking REF compares proto/ with REF's: buf breaking (WIRE_JSON) for the wire and JSON
# encodings, then http_routes for the REST mapping, which no buf rule covers (buf compares
# options only for a fixed list of file and field options). REF's proto/ is exported to a
# temporary tree and, when its buf.yaml names the fetched deps, given them, so it builds as ours.
cmd_breaking() {
  local ref=${1:-main} against
  install_tools
  if ! git -C "$ROOT" cat-file -e "$ref:proto/buf.yaml" 2>/dev/null; then
    echo "no proto/ at $ref yet; nothing to compare against"
    return 0
  fi
  fetch_proto_deps "$ROOT"
  BREAKING_TMP=$(mktemp -d)
  trap 'rm -rf "$BREAKING_TMP"' EXIT
  against=$BREAKING_TMP
  git -C "$ROOT" archive "$ref" proto | tar -x -C "$against"
  if grep -q '\.tmp/deps' "$against/proto/buf.yaml"; then
    fetch_proto_deps "$against"
  fi
  # Both sides as images: the workspace has one module per import source, and buf compares a
  # workspace only with one of the same shape; images compare whatever each side's layout.
  (cd "$against/proto" && "$BUF" build -o "$against/before.json")
  (cd "$ROOT/proto" && "$BUF" build -o "$against/after.json")
  (cd "$ROOT/proto" && "$BUF" breaking "$against/after.json" --against "$against/before.json" --config buf.yaml) ||
    die "breaking changes against $ref (WIRE_JSON)"
  http_routes "$against/before.json" >"$against/before.routes"
  http_routes "$against/after.json" >"$against/after.routes"
  # comm -23: routes REF has that are gone or different now. New routes are not breaking.
  if [[ -n $(LC_ALL=C comm -23 "$against/before.routes" "$against/after.routes") ]]; then
    echo "generate.sh: HTTP routes changed or removed against $ref (method: binding before):" >&2
    LC_ALL=C comm -23 "$against/before.routes" "$against/after.routes" >&2
    echo "now:" >&2
    LC_ALL=C comm -13 "$against/before.routes" "$against/after.routes" >&2
    exit 1
  fi
  echo "no breaking changes against $ref (wire, JSON and HTTP routes)"
}

# http_routes IMAGE prints one line per google.api.http binding of our rpcs in a buf JSON image
# ("package.Service.Method {binding}"), additional bindings on lines of their own, sorted.
http_routes() {
  "$GOJQ" -r '
    .file[] | select(.name | startswith("securemsg/")) | .package as $p
    | (.service // [])[] | .name as $s
    | .method[] | .name as $m
    | (.options // {})["[google.api.http]"] // empty
    | ., (.additionalBindings // [])[]
    | del(.additionalBindings)
    | "\($p).\($s).\($m) \(tojson)"' "$1" | LC_ALL=C sort
}

case ${1:-} in
  "") cmd_generate ;;
  --check) cmd_check ;;
  --lint) cmd_lint ;;
  --breaking) cmd_breaking "${2:-}" ;;
  -h | --help) sed -n '2,13p' "$0" ;;
  *) die "unknown option: $1 (see --help)" ;;
esac

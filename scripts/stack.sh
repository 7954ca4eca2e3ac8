#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The local dev stack: real dependencies as plain processes on 127.0.0.1, no Docker.
#
#   scripts/stack.sh up       install (first run) and start everything, then the four services
#   scripts/stack.sh status   print every endpoint with its health; non-zero if anything is down
#   scripts/stack.sh down     stop what `up` started (pid files); never the machine's Postgres
#   scripts/stack.sh env      print `export SECUREMSG_TEST_...` lines for the tests (testkit)
#
# State, logs and pid files live in .tmp/stack/<component>/. `up` is idempotent: a running,
# healthy component is left alone; a service whose binary changed is restarted.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export SECUREMSG_ROOT=$ROOT
cd "$ROOT"
STACK_DIR=$ROOT/.tmp/stack
BIN_DIR=$STACK_DIR/bin
CERTS_DIR=$STACK_DIR/certs
# shellcheck source=lib/tools.sh
source "$ROOT/scripts/lib/tools.sh"
# shellcheck source=lib/proc.sh
source "$ROOT/scripts/lib/proc.sh"

# Endpoints. They match services/internal/testkit/env.go's defaults.
HOST=127.0.0.1
PG_PORT=5432
# One database per checkout: the machine's Postgres is shared, and each checkout's stack has its
# own audit signing key, so two checkouts writing one audit log would sign each other's history.
PG_DB="securemsg_dev_$(printf '%s' "$ROOT" | sha256sum | cut -c1-8)"
PG_URL="postgres://postgres@$HOST:$PG_PORT/$PG_DB?sslmode=disable"
# Our own pinned nats-server, on 4223: the machine's Debian nats-server on 4222 (2.9) lacks what
# the suite relies on (consumers with several filter subjects, per-server sync_interval always).
NATS_PORT=4223
NATS_URL="nats://$HOST:$NATS_PORT"
VAULT_ADDR_URL="http://$HOST:8200"
VAULT_TOKEN_VALUE=root
S3_ENDPOINT="$HOST:9000"
S3_CONSOLE="$HOST:9001"
S3_ACCESS_KEY=securemsg-dev
S3_SECRET_KEY=securemsg-dev-secret
S3_BUCKET=securemsg-attachments
CLAMD_PORT=3310
SMTP_PORT=1025
MAIL_HTTP="$HOST:8025"
OIDC_ADDR="$HOST:8400"
OIDC_ISSUER="http://$OIDC_ADDR"
SERVICES=(messaging attachment notification audit)
declare -A SERVICE_PORT=([messaging]=7001 [attachment]=7002 [notification]=7003 [audit]=7004)

# Deadlines (seconds) for a component to become ready after it was started.
READY_SECS=${SECUREMSG_STACK_READY_SECS:-60}

say() { printf '%s\n' "$*"; }
step_done() { printf '  %-13s %-40s %s\n' "$1" "$2" "$3"; }

# ---------------------------------------------------------------------------------------------
# Health checks: quiet, fast, 0 when healthy.

pg_ok() {
  pg_isready -q -h "$HOST" -p "$PG_PORT" -t 2 &&
    psql -h "$HOST" -p "$PG_PORT" -U postgres -d "$PG_DB" -Atqc 'select 1' >/dev/null 2>&1
}
nats_ok() { "$BIN_DIR/stackprobe" jetstream -url "$NATS_URL" -timeout 3s 2>/dev/null; }
minio_live() { curl -sf -m 2 -o /dev/null "http://$S3_ENDPOINT/minio/health/live"; }
s3() { curl -s -m 10 --aws-sigv4 "aws:amz:us-east-1:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" "$@"; }
bucket_ok() { [[ $(s3 -o /dev/null -w '%{http_code}' -I "http://$S3_ENDPOINT/$S3_BUCKET") == 200 ]]; }
minio_ok() { minio_live && bucket_ok; }
vault_live() { curl -sf -m 2 -o /dev/null "$VAULT_ADDR_URL/v1/sys/health"; }
clamd_ok() { "$BIN_DIR/stackprobe" clamd -addr "$HOST:$CLAMD_PORT" -timeout 2s 2>/dev/null; }
clamd_eicar_ok() { "$BIN_DIR/stackprobe" clamd-eicar -addr "$HOST:$CLAMD_PORT" -timeout 5s 2>/dev/null; }
mailpit_ok() { curl -sf -m 2 -o /dev/null "http://$MAIL_HTTP/livez" && tcp_open "$HOST" "$SMTP_PORT"; }
oidc_ok() { curl -sf -m 2 -o /dev/null "$OIDC_ISSUER/.well-known/openid-configuration"; }
service_ok() { # service_ok SVC [TIMEOUT]
  "$BIN_DIR/grpchealth" -q -addr "$HOST:${SERVICE_PORT[$1]}" -ca "$CERTS_DIR/ca.pem" \
    -cert "$CERTS_DIR/$1.pem" -key "$CERTS_DIR/$1-key.pem" -timeout "${2:-2s}" 2>/dev/null
}

# ---------------------------------------------------------------------------------------------
# up

# pinned NAME prints the pinned tool's path, installing it on first use and saying how long the
# install took (scripts/lib/tools.sh).
pinned() {
  local name=$1 t0 pkg ver path
  read -r pkg ver < <(tool_pin "$name")
  if [[ -x $TOOLS_DIR/$name@$ver/$name ]]; then
    echo "$TOOLS_DIR/$name@$ver/$name"
    return
  fi
  t0=$(now_ms)
  path=$(tool_path "$name") || { echo "error: $name: go install $pkg@$ver failed" >&2; return 1; }
  step_done "$name" "$pkg@$ver" "installed ($(elapsed "$t0"))" >&2
  echo "$path"
}

# healthy_or_stopped NAME CHECK... succeeds when the stack's own NAME process passes CHECK,
# giving it a few seconds in case it is still starting. A stack process that stays unhealthy is
# stopped (so the caller starts a fresh one), and the function fails; so it does without one.
healthy_or_stopped() {
  local name=$1 deadline=$((SECONDS + 15))
  shift
  live_pid "$name" >/dev/null || return 1
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)) || ! live_pid "$name" >/dev/null; then
      say "  $name: running but not healthy; restarting it (log: $(log_file "$name"))"
      stop_proc "$name" || true
      return 1
    fi
    sleep 0.2
  done
}

# build_if_stale NAME BIN PKG TREE... runs `go build -o BIN PKG` when BIN is missing or a file
# under TREE changed since the last build, then hands over to restart_if_changed so that a
# process running an older binary is stopped for the caller to start the new one.
build_if_stale() {
  local name=$1 bin=$2 pkg=$3 stamp t0
  shift 3
  stamp=$STACK_DIR/$name/.built
  mkdir -p "$STACK_DIR/$name"
  if [[ -x $bin && -f $stamp && -z $(find "$@" -newer "$stamp" -print -quit) ]]; then
    return 0
  fi
  t0=$(now_ms)
  # Stamp before building: an edit made during the build triggers the next one.
  touch "$stamp.next"
  go build -o "$bin.new" "$pkg" || { fail_component "$name" "go build $pkg failed"; return 1; }
  mv -f "$stamp.next" "$stamp"
  restart_if_changed "$name" "$bin"
  step_done "$name" "$pkg" "built ($(elapsed "$t0"))"
}

# devstack_binaries builds the stack's own helper programs when their sources changed.
devstack_binaries() {
  local t0 stamp=$BIN_DIR/.devstack-built
  t0=$(now_ms)
  mkdir -p "$BIN_DIR"
  if [[ -f $stamp ]] && [[ -z $(find devstack go.work go.work.sum -newer "$stamp" -print -quit) ]]; then
    step_done devstack "oidcdev devcerts grpchealth stackprobe" "current ($(elapsed "$t0"))"
    return
  fi
  touch "$stamp.next"
  go build -o "$BIN_DIR/" ./devstack/cmd/oidcdev ./devstack/cmd/devcerts ./devstack/cmd/grpchealth \
    ./devstack/cmd/stackprobe || { echo "error: devstack: go build failed" >&2; return 1; }
  mv -f "$stamp.next" "$stamp"
  step_done devstack "oidcdev devcerts grpchealth stackprobe" "built ($(elapsed "$t0"))"
}

up_certs() {
  local t0 out
  t0=$(now_ms)
  out=$("$BIN_DIR/devcerts" -dir "$CERTS_DIR") || { echo "error: certs: devcerts failed" >&2; return 1; }
  step_done certs "$CERTS_DIR" "${out#devcerts: } ($(elapsed "$t0"))"
}

up_postgres() {
  local t0 version
  t0=$(now_ms)
  if pg_isready -q -h "$HOST" -p "$PG_PORT" -t 2; then
    step_done postgres "$HOST:$PG_PORT" "reusing the running server"
  else
    # The machine's own cluster: started, never stopped by `down`.
    version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)
    [[ -n $version ]] || { echo "error: postgres: nothing on $HOST:$PG_PORT and no cluster in /etc/postgresql" >&2; return 1; }
    pg_ctlcluster --skip-systemctl-redirect "$version" main start ||
      { echo "error: postgres: pg_ctlcluster $version main start failed (see /var/log/postgresql/)" >&2; return 1; }
    wait_ready postgres "$READY_SECS" pg_isready -q -h "$HOST" -p "$PG_PORT"
    step_done postgres "$HOST:$PG_PORT" "started cluster $version/main ($(elapsed "$t0"))"
  fi
  if [[ -z $(psql -h "$HOST" -p "$PG_PORT" -U postgres -d postgres -Atqc \
    "select 1 from pg_database where datname = '$PG_DB'") ]]; then
    createdb -h "$HOST" -p "$PG_PORT" -U postgres -O postgres "$PG_DB"
    step_done postgres "database $PG_DB" "created"
  fi
}

up_nats() {
  local t0 bin
  t0=$(now_ms)
  if live_pid nats >/dev/null && nats_ok; then
    step_done nats "$NATS_URL" "running ($(elapsed "$t0"))"
    return
  fi
  if tcp_open "$HOST" "$NATS_PORT"; then
    echo "error: nats: something else listens on $HOST:$NATS_PORT (another checkout's stack? run its 'make down')" >&2
    return 1
  fi
  bin=$(pinned nats-server)
  mkdir -p "$STACK_DIR/nats/data"
  start_bg nats "$bin" "$bin" -c "$ROOT/deploy/dev/nats.conf" -sd "$STACK_DIR/nats/data"
  wait_ready nats "$READY_SECS" nats_ok
  step_done nats "$NATS_URL" "started ($(elapsed "$t0"))"
}

up_minio() {
  local t0 bin code
  t0=$(now_ms)
  if ! healthy_or_stopped minio minio_live && ! minio_live; then
    bin=$(pinned minio)
    mkdir -p "$STACK_DIR/minio/data"
    MINIO_ROOT_USER=$S3_ACCESS_KEY MINIO_ROOT_PASSWORD=$S3_SECRET_KEY MINIO_UPDATE=off \
      start_bg minio "$bin" "$bin" server --address "$S3_ENDPOINT" --console-address "$S3_CONSOLE" \
      "$STACK_DIR/minio/data"
    wait_ready minio "$READY_SECS" minio_live
  fi
  if ! bucket_ok; then
    code=$(s3 -o "$STACK_DIR/minio/bucket.out" -w '%{http_code}' -X PUT "http://$S3_ENDPOINT/$S3_BUCKET") || true
    [[ $code == 200 ]] || bucket_ok ||
      fail_component minio "create bucket $S3_BUCKET: HTTP $code $(cat "$STACK_DIR/minio/bucket.out" 2>/dev/null)"
  fi
  step_done minio "http://$S3_ENDPOINT bucket $S3_BUCKET" "ready ($(elapsed "$t0"))"
}

# mount_transit enables the transit engine the way an operator would on real Vault; the dev
# server answers the same call. "path is already in use" means an earlier run did it.
mount_transit() {
  local code body=$STACK_DIR/vault/mount.out
  code=$(curl -s -m 5 -o "$body" -w '%{http_code}' -X POST -H "X-Vault-Token: $VAULT_TOKEN_VALUE" \
    -d '{"type":"transit"}' "$VAULT_ADDR_URL/v1/sys/mounts/transit") || true
  [[ $code == 2* ]] && return 0
  grep -q 'already in use' "$body" 2>/dev/null && return 0
  fail_component vault "mount transit/: HTTP $code $(cat "$body" 2>/dev/null)"
}

up_vault() {
  local t0 bin what
  t0=$(now_ms)
  mkdir -p "$STACK_DIR/vault"
  if command -v vault >/dev/null; then
    what="vault server -dev"
    if ! healthy_or_stopped vault vault_live && ! vault_live; then
      bin=$(command -v vault)
      start_bg vault "$bin" "$bin" server -dev -dev-root-token-id="$VAULT_TOKEN_VALUE" \
        -dev-listen-address="$HOST:8200"
    fi
  elif compgen -G 'devstack/cmd/transitdev/*.go' >/dev/null; then
    what="transitdev (Transit-compatible dev server)"
    build_if_stale vault "$BIN_DIR/transitdev" ./devstack/cmd/transitdev devstack go.work go.work.sum
    if ! healthy_or_stopped vault vault_live && ! vault_live; then
      # -data-dir keeps the keys across restarts: wrapped DEKs stored by the services must stay
      # unwrappable when the stack (or a fault test) restarts "Vault".
      start_bg vault "$BIN_DIR/transitdev" "$BIN_DIR/transitdev" -addr "$HOST:8200" -root-token "$VAULT_TOKEN_VALUE" \
        -data-dir "$STACK_DIR/vault/data"
      file_sha256 "$BIN_DIR/transitdev" >"$STACK_DIR/vault/binary.sha256"
    fi
  else
    echo "error: vault: no vault binary on PATH and no devstack/cmd/transitdev to build" >&2
    return 1
  fi
  wait_ready vault "$READY_SECS" vault_live
  mount_transit
  step_done vault "$VAULT_ADDR_URL" "$what, transit/ mounted ($(elapsed "$t0"))"
}

# restart_if_changed NAME BIN moves BIN.new into place; when the process NAME runs an older
# binary, it is stopped so the caller starts the new one.
restart_if_changed() {
  local name=$1 bin=$2 new old=""
  new=$(file_sha256 "$bin.new")
  [[ -f $STACK_DIR/$name/binary.sha256 ]] && old=$(<"$STACK_DIR/$name/binary.sha256")
  if [[ -x $bin ]] && [[ $(file_sha256 "$bin") == "$new" ]]; then
    rm -f "$bin.new"
  else
    mv -f "$bin.new" "$bin"
  fi
  if [[ -n $old && $old != "$new" ]] && live_pid "$name" >/dev/null; then
    say "  $name: binary changed, restarting"
    stop_proc "$name" || true
  fi
}

ensure_clamd() {
  local t0=$1
  command -v clamd >/dev/null && return 0
  if ! dpkg -s clamav-daemon >/dev/null 2>&1; then
    say "  clamd: installing clamav-daemon with apt-get (first run only)..."
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends clamav-daemon; } \
      >>"$STACK_DIR/clamd/apt.log" 2>&1 || {
      echo "error: clamd: apt-get install clamav-daemon failed; see $STACK_DIR/clamd/apt.log" >&2
      return 1
    }
    step_done clamd "clamav-daemon" "installed ($(elapsed "$t0"))"
  fi
}

up_clamd() {
  local t0 dir=$STACK_DIR/clamd eicar_a eicar_b eicar md5 clamd_bin
  t0=$(now_ms)
  mkdir -p "$dir/db" "$dir/tmp"
  ensure_clamd "$t0"
  clamd_bin=$(command -v clamd || echo /usr/sbin/clamd)
  # The only signature: the EICAR test file as md5:size:name (.hdb). The string is split so this
  # script never looks like the test file to a scanner; size and md5 are computed, not typed.
  # shellcheck disable=SC2016 # literal bytes, nothing to expand
  eicar_a='X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR'
  # shellcheck disable=SC2016
  eicar_b='-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
  eicar="$eicar_a$eicar_b"
  ((${#eicar} == 68)) || { echo "error: clamd: EICAR string is ${#eicar} bytes, want 68" >&2; return 1; }
  md5=$(printf '%s' "$eicar" | md5sum | cut -d' ' -f1)
  printf '%s:%d:Eicar-Test-Signature\n' "$md5" "${#eicar}" >"$dir/db/eicar.hdb.new"
  if cmp -s "$dir/db/eicar.hdb.new" "$dir/db/eicar.hdb"; then
    rm -f "$dir/db/eicar.hdb.new"
  else
    mv -f "$dir/db/eicar.hdb.new" "$dir/db/eicar.hdb"
  fi
  sed "s|@CLAMD_DIR@|$dir|g" "$ROOT/deploy/dev/clamd.conf.tmpl" >"$dir/clamd.conf"
  if healthy_or_stopped clamd clamd_ok; then
    :
  elif tcp_open "$HOST" "$CLAMD_PORT"; then
    clamd_ok || { echo "error: clamd: something else listens on $HOST:$CLAMD_PORT" >&2; return 1; }
    step_done clamd "$HOST:$CLAMD_PORT" "external clamd answers; not ours"
  else
    start_bg clamd "$clamd_bin" "$clamd_bin" --config-file="$dir/clamd.conf"
    wait_ready clamd "$READY_SECS" clamd_ok
  fi
  clamd_eicar_ok || fail_component clamd "answers PONG but does not detect the EICAR test file"
  step_done clamd "$HOST:$CLAMD_PORT" "PONG, EICAR detected ($(elapsed "$t0"))"
}

up_mailpit() {
  local t0 bin
  t0=$(now_ms)
  if ! healthy_or_stopped mailpit mailpit_ok && ! mailpit_ok; then
    bin=$(pinned mailpit)
    mkdir -p "$STACK_DIR/mailpit"
    start_bg mailpit "$bin" "$bin" --smtp "$HOST:$SMTP_PORT" --listen "$MAIL_HTTP" \
      --database "$STACK_DIR/mailpit/mailpit.db" --smtp-auth-accept-any --smtp-auth-allow-insecure \
      --smtp-disable-rdns --disable-version-check
    wait_ready mailpit "$READY_SECS" mailpit_ok
  fi
  step_done mailpit "smtp $HOST:$SMTP_PORT http://$MAIL_HTTP" "ready ($(elapsed "$t0"))"
}

up_oidc() {
  local t0
  t0=$(now_ms)
  mkdir -p "$STACK_DIR/oidc"
  cp -f "$BIN_DIR/oidcdev" "$BIN_DIR/oidcdev.run.new"
  restart_if_changed oidc "$BIN_DIR/oidcdev.run"
  if ! healthy_or_stopped oidc oidc_ok; then
    tcp_open "$HOST" 8400 && { echo "error: oidc: something else listens on $OIDC_ADDR" >&2; return 1; }
    start_bg oidc "$BIN_DIR/oidcdev.run" "$BIN_DIR/oidcdev.run" -addr "$OIDC_ADDR" -issuer "$OIDC_ISSUER" \
      -key-file "$STACK_DIR/oidc/signing-key.pem"
    file_sha256 "$BIN_DIR/oidcdev.run" >"$STACK_DIR/oidc/binary.sha256"
    wait_ready oidc "$READY_SECS" oidc_ok
  fi
  step_done oidc "$OIDC_ISSUER" "ready ($(elapsed "$t0"))"
}

# write_service_env SVC writes the service's configuration (services read SECUREMSG_* only).
write_service_env() {
  local svc=$1 metrics_port
  # Prometheus /metrics beside the gRPC port: 7001 -> 9101, 7002 -> 9102, ...
  metrics_port=$((${SERVICE_PORT[$svc]} + 2100))
  cat >"$STACK_DIR/$svc.env" <<EOF
# Written by scripts/stack.sh up; edits are overwritten.
SECUREMSG_GRPC_ADDR=$HOST:${SERVICE_PORT[$svc]}
SECUREMSG_TLS_CERT_FILE=$CERTS_DIR/$svc.pem
SECUREMSG_TLS_KEY_FILE=$CERTS_DIR/$svc-key.pem
SECUREMSG_TLS_CLIENT_CA_FILE=$CERTS_DIR/ca.pem
SECUREMSG_PG_URL=$PG_URL
SECUREMSG_NATS_URL=$NATS_URL
SECUREMSG_VAULT_ADDR=$VAULT_ADDR_URL
SECUREMSG_VAULT_TOKEN=$VAULT_TOKEN_VALUE
SECUREMSG_OIDC_ISSUER=$OIDC_ISSUER
SECUREMSG_OIDC_AUDIENCE=securemsg
SECUREMSG_DEV=true
SECUREMSG_POLICY_DIR=$ROOT/deploy/policies
SECUREMSG_METRICS_ADDR=$HOST:$metrics_port
EOF
  # What only one service needs goes to that service alone (least privilege, even in dev).
  case $svc in
    attachment)
      cat >>"$STACK_DIR/$svc.env" <<EOF
SECUREMSG_S3_ENDPOINT=$S3_ENDPOINT
SECUREMSG_S3_ACCESS_KEY=$S3_ACCESS_KEY
SECUREMSG_S3_SECRET_KEY=$S3_SECRET_KEY
SECUREMSG_S3_BUCKET=$S3_BUCKET
SECUREMSG_CLAMD_ADDR=$HOST:$CLAMD_PORT
EOF
      ;;
    notification)
      # mailpit speaks plain SMTP on loopback; production uses STARTTLS (the default).
      cat >>"$STACK_DIR/$svc.env" <<EOF
SECUREMSG_SMTP_ADDR=$HOST:$SMTP_PORT
SECUREMSG_SMTP_TLS=none
SECUREMSG_SMTP_FROM=no-reply@securemsg.local
SECUREMSG_NOTIFY_ORGANISATION_NAME="Securemsg Demo Clinic"
SECUREMSG_NOTIFY_PORTAL_LINK=https://portal.securemsg.local/
SECUREMSG_NOTIFY_RETRY_BASE=2s
EOF
      ;;
    audit)
      mkdir -p "$STACK_DIR/audit"
      cat >>"$STACK_DIR/$svc.env" <<EOF
SECUREMSG_AUDIT_SIGNING_KEY_FILE=$STACK_DIR/audit/signing-key.pem
SECUREMSG_AUDIT_CHECKPOINT_INTERVAL=5s
EOF
      ;;
  esac
  # How to reach every peer over mTLS, presenting this service's own certificate
  # (config.Client: SECUREMSG_<PEER>_ADDR, _TLS_CERT_FILE, _TLS_KEY_FILE, _TLS_CA_FILE).
  local peer prefix
  for peer in "${SERVICES[@]}"; do
    [[ $peer == "$svc" ]] && continue
    prefix=SECUREMSG_${peer^^}
    cat >>"$STACK_DIR/$svc.env" <<EOF
${prefix}_ADDR=$HOST:${SERVICE_PORT[$peer]}
${prefix}_TLS_CERT_FILE=$CERTS_DIR/$svc.pem
${prefix}_TLS_KEY_FILE=$CERTS_DIR/$svc-key.pem
${prefix}_TLS_CA_FILE=$CERTS_DIR/ca.pem
EOF
  done
  chmod 600 "$STACK_DIR/$svc.env"
}

up_service() {
  local svc=$1 t0 bin=$BIN_DIR/$1 port=${SERVICE_PORT[$1]} stamp
  t0=$(now_ms)
  if ! compgen -G "services/$svc/cmd/$svc/*.go" >/dev/null; then
    step_done "$svc" "$HOST:$port" "SKIPPED: services/$svc/cmd/$svc not written yet"
    return
  fi
  mkdir -p "$STACK_DIR/$svc"
  write_service_env "$svc"
  build_if_stale "$svc" "$bin" "./services/$svc/cmd/$svc" services gen go.work go.work.sum
  # A running service started with other settings is restarted with the new ones.
  if live_pid "$svc" >/dev/null && ! cmp -s "$STACK_DIR/$svc.env" "$STACK_DIR/$svc/started.env"; then
    say "  $svc: settings changed, restarting"
    stop_proc "$svc" || true
  fi
  if ! live_pid "$svc" >/dev/null; then
    tcp_open "$HOST" "$port" && { echo "error: $svc: something else listens on $HOST:$port" >&2; return 1; }
    # shellcheck disable=SC2016 # $1/$2 belong to the inner shell
    start_bg "$svc" "$bin" bash -c 'set -a; source "$1"; set +a; exec "$2"' _ "$STACK_DIR/$svc.env" "$bin"
    file_sha256 "$bin" >"$STACK_DIR/$svc/binary.sha256"
    cp -f "$STACK_DIR/$svc.env" "$STACK_DIR/$svc/started.env"
  fi
  wait_ready "$svc" "$READY_SECS" service_ok "$svc" 2s
  step_done "$svc" "$HOST:$port" "SERVING ($(elapsed "$t0"))"
}

cmd_up() {
  local t0
  t0=$(now_ms)
  mkdir -p "$STACK_DIR"
  # One `up` at a time: helpers and `make test` may call it concurrently.
  exec 9>"$STACK_DIR/.lock"
  flock -w 300 9 || { echo "error: another scripts/stack.sh up/down holds $STACK_DIR/.lock" >&2; return 1; }
  say "securemsg dev stack: up"
  devstack_binaries
  up_certs
  # Each dependency starts in a child shell so that errexit holds inside it and one broken
  # component (say, a dev server another change is rewriting) does not hide the state of the rest.
  local failed=() name svc
  for name in postgres nats minio vault clamd mailpit oidc; do
    "up_$name" &
    wait $! || failed+=("$name")
  done
  local deps_failed=("${failed[@]}")
  for svc in "${SERVICES[@]}"; do
    # A service without its dependencies would only time out; one broken service does not
    # keep the others from starting.
    if ((${#deps_failed[@]})); then
      step_done "$svc" "$HOST:${SERVICE_PORT[$svc]}" "not started: ${deps_failed[*]} failed"
      continue
    fi
    up_service "$svc" &
    wait $! || failed+=("$svc")
  done
  if ((${#failed[@]})); then
    say ""
    cmd_status || true
    echo "error: stack up incomplete after $(elapsed "$t0"); failed: ${failed[*]}" >&2
    return 1
  fi
  say "stack up in $(elapsed "$t0")"
  say ""
  cmd_status || true
}

# ---------------------------------------------------------------------------------------------
# status

# owner NAME STATE prints who runs a component: the stack (pid file) or someone else.
owner() { # owner NAME STATE
  local pid
  if pid=$(live_pid "$1"); then
    echo "stack (pid $pid)"
  elif [[ $2 == ok ]]; then
    echo "machine (not started by the stack)"
  else
    echo "not running; log: $(log_file "$1")"
  fi
}

cmd_status() {
  local down=0
  row() { # row COMPONENT ENDPOINT CHECK...
    local name=$1 endpoint=$2 state
    shift 2
    if "$@" >/dev/null 2>&1; then state=ok; else state=DOWN; down=1; fi
    printf '%-13s %-56s %-5s %s\n' "$name" "$endpoint" "$state" "$(owner "${name%%/*}" "$state")"
  }
  [[ -x $BIN_DIR/stackprobe ]] || { echo "stack helpers not built: run scripts/stack.sh up" >&2; return 1; }
  printf '%-13s %-56s %-5s %s\n' COMPONENT ENDPOINT STATE RUN-BY
  row postgres "postgres://$HOST:$PG_PORT/$PG_DB" pg_ok
  row nats "$NATS_URL (JetStream)" nats_ok
  row minio "http://$S3_ENDPOINT bucket $S3_BUCKET" minio_ok
  row minio/console "http://$S3_CONSOLE" tcp_open "$HOST" 9001
  row vault "$VAULT_ADDR_URL token $VAULT_TOKEN_VALUE" vault_live
  row clamd "$HOST:$CLAMD_PORT (EICAR test db)" clamd_eicar_ok
  row mailpit "smtp $HOST:$SMTP_PORT ui http://$MAIL_HTTP" mailpit_ok
  row oidc "$OIDC_ISSUER" oidc_ok
  local svc
  for svc in "${SERVICES[@]}"; do
    if compgen -G "services/$svc/cmd/$svc/*.go" >/dev/null; then
      row "$svc" "grpcs://$HOST:${SERVICE_PORT[$svc]} (mTLS)" service_ok "$svc"
    else
      printf '%-13s %-56s %-5s %s\n' "$svc" "grpcs://$HOST:${SERVICE_PORT[$svc]}" "-" "not built yet (no services/$svc/cmd/$svc)"
    fi
  done
  cat <<EOF

logs: $STACK_DIR/<component>/<component>.log   certs: $CERTS_DIR
mint a token:  curl -s -X POST '$OIDC_ISSUER/dev/token?user=patient'
               (users: patient proxy teen clinician staff-nomfa auditor admin; &format=raw for the bare JWT;
                &ttl=5m, &auth_age=2h, &scope=... adjust it)   later: securemsgctl token patient
test env:      source <(scripts/stack.sh env)
EOF
  return "$down"
}

# ---------------------------------------------------------------------------------------------
# down

cmd_down() {
  local name stopped=()
  mkdir -p "$STACK_DIR"
  exec 9>"$STACK_DIR/.lock"
  flock -w 300 9 || { echo "error: another scripts/stack.sh up/down holds $STACK_DIR/.lock" >&2; return 1; }
  # Reverse start order: services first, dependencies last. Postgres is never ours to stop; NATS
  # only when the stack started it (it has a pid file then).
  for name in audit notification attachment messaging oidc mailpit clamd vault minio nats; do
    if stop_proc "$name"; then stopped+=("$name"); fi
  done
  if ((${#stopped[@]})); then say "stopped: ${stopped[*]}"; else say "nothing of the stack was running"; fi
}

# ---------------------------------------------------------------------------------------------
# env

cmd_env() {
  cat <<EOF
export SECUREMSG_TEST_PG_URL='$PG_URL'
export SECUREMSG_TEST_NATS_URL='$NATS_URL'
export SECUREMSG_TEST_VAULT_ADDR='$VAULT_ADDR_URL'
export SECUREMSG_TEST_VAULT_TOKEN='$VAULT_TOKEN_VALUE'
export SECUREMSG_TEST_S3_ENDPOINT='$S3_ENDPOINT'
export SECUREMSG_TEST_S3_ACCESS_KEY='$S3_ACCESS_KEY'
export SECUREMSG_TEST_S3_SECRET_KEY='$S3_SECRET_KEY'
export SECUREMSG_TEST_S3_BUCKET='$S3_BUCKET'
export SECUREMSG_TEST_CLAMD_ADDR='$HOST:$CLAMD_PORT'
export SECUREMSG_TEST_SMTP_ADDR='$HOST:$SMTP_PORT'
export SECUREMSG_TEST_MAIL_API_URL='http://$MAIL_HTTP'
export SECUREMSG_TEST_OIDC_ISSUER='$OIDC_ISSUER'
export SECUREMSG_TEST_CERTS_DIR='$CERTS_DIR'
export SECUREMSG_TEST_STACK_DIR='$STACK_DIR'
export SECUREMSG_TEST_TOOLS_DIR='$TOOLS_DIR'
EOF
  local svc
  for svc in "${SERVICES[@]}"; do
    printf "export SECUREMSG_TEST_%s_ADDR='%s:%s'\n" "${svc^^}" "$HOST" "${SERVICE_PORT[$svc]}"
  done
}

case "${1:-}" in
up) cmd_up ;;
status) cmd_status ;;
down) cmd_down ;;
env) cmd_env ;;
*)
  echo "usage: $0 up|status|down|env" >&2
  exit 2
  ;;
esac

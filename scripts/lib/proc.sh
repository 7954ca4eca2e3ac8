# shellcheck shell=bash
# Process and wait helpers for scripts/stack.sh. Every component the stack starts lives in
# $STACK_DIR/<name>/ with its log (<name>.log) and a pid file (pid); `down` stops only processes
# named in those pid files, so the machine's own services are never touched.
# Needs STACK_DIR set by the caller.

log_file() { echo "$STACK_DIR/$1/$1.log"; }
pid_file() { echo "$STACK_DIR/$1/pid"; }

# now_ms prints the wall clock in milliseconds (for the timing lines).
now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }

# elapsed START_MS prints seconds since START_MS with one decimal.
elapsed() {
  local d=$(($(now_ms) - $1))
  printf '%d.%ds' $((d / 1000)) $(((d % 1000) / 100))
}

# live_pid NAME prints the pid of NAME's process when its pid file names a live process whose
# command line matches the binary recorded at start (guards against pid reuse).
live_pid() {
  local f pid exe want
  f=$(pid_file "$1")
  [[ -s $f ]] || return 1
  read -r pid want <"$f" || true
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  exe=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ -z ${want:-} || $exe == *"$want"* ]] || return 1
  echo "$pid"
}

# pid_running NAME succeeds while the process in NAME's pid file exists, whatever its command
# line: right after start_bg it may still be the forked shell, before exec replaces it.
pid_running() {
  local f pid
  f=$(pid_file "$1")
  [[ -s $f ]] || return 1
  read -r pid _ <"$f" || true
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

# start_bg NAME MATCH CMD... starts CMD detached (own session, stdin from /dev/null, output
# appended to NAME's log) and records its pid with MATCH, a string the process's command line
# keeps containing (usually the binary's path; CMD may be a wrapper that execs it).
start_bg() {
  local name=$1 match=$2
  shift 2
  mkdir -p "$STACK_DIR/$name"
  local log
  log=$(log_file "$name")
  printf '\n=== %s start: %s\n' "$(date -Is)" "$*" >>"$log"
  # setsid keeps the process alive when the calling terminal or `make` goes away; as the shell
  # is not a process-group leader here, setsid execs in place and $! is the process itself.
  setsid "$@" >>"$log" 2>&1 </dev/null 9>&- &
  echo "$! $match" >"$(pid_file "$name")"
}

# stop_proc NAME stops NAME's recorded process: TERM, up to 15s, then KILL. Missing or stale pid
# files are removed silently.
stop_proc() {
  local name=$1 pid deadline
  if ! pid=$(live_pid "$name"); then
    rm -f "$(pid_file "$name")"
    return 1
  fi
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + 15))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "  $name did not stop within 15s; killing pid $pid" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$(pid_file "$name")"
}

# fail_component NAME MESSAGE prints an error naming the component and its log, with the log's
# last lines, and returns 1.
fail_component() {
  local name=$1 msg=$2 log
  log=$(log_file "$name")
  echo "error: $name: $msg" >&2
  if [[ -s $log ]]; then
    echo "  log: $log (last lines):" >&2
    tail -n 15 "$log" | sed 's/^/    /' >&2
  fi
  return 1
}

# wait_ready NAME SECONDS CHECK... polls CHECK every 0.2s until it succeeds. It fails early when
# NAME has a pid file whose process died, and at the deadline, naming the log either way.
wait_ready() {
  local name=$1 secs=$2
  shift 2
  local deadline=$((SECONDS + secs)) tracked=0
  [[ -s $(pid_file "$name") ]] && tracked=1
  until "$@" >/dev/null 2>&1; do
    if ((tracked)) && ! pid_running "$name"; then
      fail_component "$name" "process exited while starting"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      fail_component "$name" "not ready within ${secs}s"
      return 1
    fi
    sleep 0.2
  done
}

# tcp_open HOST PORT succeeds when something accepts a connection there (bash /dev/tcp).
tcp_open() {
  timeout 1 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

# file_sha256 FILE prints the file's SHA-256 (to notice a rebuilt binary).
file_sha256() { sha256sum "$1" | cut -d' ' -f1; }

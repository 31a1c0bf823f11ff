#!/usr/bin/env bash
# `make run`: provision and start Kafka and PostgreSQL (or reuse them), a local SMTP sink,
# and the four services, all in the foreground with one prefixed log stream. Ctrl-C stops
# the services and the sink; Kafka and PostgreSQL keep running (`make infra-down`).
#
# The SMTP sink and the services' health endpoints get free ports chosen at start (so two
# checkouts, each with its own OFFRAMP_STATE_DIR, can run side by side); OFFRAMP_SMTP_PORT
# and OFFRAMP_HEALTH_PORT_<SERVICE> (ENROLLMENT, SCHEDULER, TRIGGER_EVALUATOR, MESSAGING)
# pin them. The choice, with Kafka's and PostgreSQL's addresses, is printed and written to
# ${OFFRAMP_STATE_DIR:-.local}/run.env, where `make demo` and the CLI find it; the file is
# removed when this script stops.
#
# `run.sh ports` only chooses the ports and writes run.env (no Kafka, no services).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
py="$repo/.venv/bin/python"
mode=${1:-run}

state_dir=${OFFRAMP_STATE_DIR:-$repo/.local}
[[ $state_dir == /* ]] || state_dir=$repo/$state_dir
run_env=$state_dir/run.env
services=(enrollment scheduler trigger-evaluator messaging)

die() { echo "run: $*" >&2; exit 1; }

health_var() { local name=${1^^}; printf 'OFFRAMP_HEALTH_PORT_%s' "${name//-/_}"; }

# free_ports COUNT AVOID...: COUNT distinct ports nothing listens on, drawn at random below
# the kernel's ephemeral range (like infra.sh), so two runs starting together do not meet.
free_ports() {
  python3 - "$@" <<'PY'
import random, socket, sys
count, avoid = int(sys.argv[1]), {int(p) for p in sys.argv[2:] if p.isdigit()}
try:
    lo_eph = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    lo_eph = 32768
candidates = [p for p in range(20000, max(20001, min(lo_eph, 32768))) if p not in avoid]
random.shuffle(candidates)
chosen = []
for port in candidates[:2000]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("0.0.0.0", port))  # the health servers listen on every address
    except OSError:
        continue
    finally:
        s.close()
    chosen.append(port)
    if len(chosen) == count:
        print(*chosen)
        sys.exit(0)
sys.exit("run: no free ports found")
PY
}

port_in_use() {
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("0.0.0.0", int(sys.argv[1])))
except OSError:
    sys.exit(0)
finally:
    s.close()
sys.exit(1)
PY
}

# Sets OFFRAMP_SMTP_PORT and OFFRAMP_HEALTH_PORT_<SERVICE>: pinned ones as given (they must
# be free), the others chosen, never one Kafka or PostgreSQL of this state dir uses.
choose_ports() {
  local names=(OFFRAMP_SMTP_PORT) name port missing=() avoid=()
  for service in "${services[@]}"; do names+=("$(health_var "$service")"); done
  avoid=($(cat "$state_dir/kafka/port" "$state_dir/kafka/controller.port" \
    "$state_dir/postgres/port" 2>/dev/null || true))
  for name in "${names[@]}"; do
    port=${!name:-}
    if [[ -z $port ]]; then missing+=("$name"); continue; fi
    [[ $port =~ ^[0-9]+$ ]] || die "$name=$port is not a port number"
    port_in_use "$port" && die "$name=$port is in use by another process; pick another or unset it"
    avoid+=("$port")
  done
  ((${#missing[@]})) || return 0
  local chosen
  read -r -a chosen <<<"$(free_ports "${#missing[@]}" "${avoid[@]}")"
  for i in "${!missing[@]}"; do export "${missing[$i]}=${chosen[$i]}"; done
}

write_run_env() {  # atomically, so a reader never sees half a file
  mkdir -p "$state_dir"
  {
    echo "# written by deploy/local/run.sh; removed when it stops"
    echo "OFFRAMP_RUN_PID=$$"
    [[ -n ${KAFKA_BOOTSTRAP_SERVERS:-} ]] && echo "KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS"
    [[ -n ${DATABASE_URL:-} ]] && echo "DATABASE_URL=$DATABASE_URL"
    echo "OFFRAMP_TOPIC_NAMESPACE=${OFFRAMP_TOPIC_NAMESPACE:-}"
    echo "OFFRAMP_SMTP_PORT=$OFFRAMP_SMTP_PORT"
    for service in "${services[@]}"; do
      local name; name=$(health_var "$service")
      echo "$name=${!name}"
    done
  } >"$run_env.$$"
  mv -f "$run_env.$$" "$run_env"
}

# A run.env whose writer is alive means `make run` is already up from this state dir.
running_pid() {
  local pid
  pid=$(sed -n 's/^OFFRAMP_RUN_PID=//p' "$run_env" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ && $pid != "$$" ]] || return 1
  [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'run\.sh' || return 1
  printf '%s\n' "$pid"
}

if pid=$(running_pid); then
  die "make run is already up from $state_dir (pid $pid); stop it first, or give this one its own OFFRAMP_STATE_DIR"
fi

if [[ $mode == ports ]]; then
  choose_ports
  write_run_env
  cat "$run_env"
  exit 0
fi
[[ $mode == run ]] || die "usage: run.sh [ports]"

echo "run: starting Kafka and PostgreSQL (first time: downloads Kafka from Maven Central)" >&2
set -a
eval "$(bash deploy/local/infra.sh up)"
set +a
choose_ports
export OFFRAMP_SMTP_HOST=127.0.0.1
export OFFRAMP_LOG_FORMAT="${OFFRAMP_LOG_FORMAT:-console}"

pids=()
names=()
stop() {  # [exit status]: signal the services, wait for them, then end with that status
  local status=${1:-$?}
  trap - INT TERM EXIT
  echo "run: stopping services" >&2
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait || true
  if [[ $(sed -n 's/^OFFRAMP_RUN_PID=//p' "$run_env" 2>/dev/null) == "$$" ]]; then
    rm -f "$run_env"
  fi
  echo "run: stopped (Kafka and PostgreSQL still up; 'make infra-down' stops them)" >&2
  exit "$status"
}
# Ending here, not back in the watch loop below, which would report the stopped services.
trap 'stop 130' INT
trap 'stop 143' TERM
trap stop EXIT

start() {  # name, command...: run it in the background, every output line prefixed
  local name=$1; shift
  # Process substitution keeps $! the service's own pid, so stop() signals it directly.
  "$@" > >(sed -u "s/^/$(printf '%-17s' "[$name]") /") 2>&1 &
  pids+=($!)
  names+=("$name")
}

write_run_env
start smtp-sink "$py" -m shared.cli smtp-sink --port "$OFFRAMP_SMTP_PORT"
for service in "${services[@]}"; do
  port_var=$(health_var "$service")
  OFFRAMP_HEALTH_PORT=${!port_var} start "$service" "$py" -m "services.${service//-/_}"
done
health=""
for service in "${services[@]}"; do
  port_var=$(health_var "$service")
  health+="    $(printf '%-18s' "$service") http://127.0.0.1:${!port_var}/readyz"$'\n'
done

cat >&2 <<EOT

run: Offramp is starting.
  Kafka       $KAFKA_BOOTSTRAP_SERVERS
  PostgreSQL  $DATABASE_URL
  SMTP sink   127.0.0.1:$OFFRAMP_SMTP_PORT (every email the system sends is printed here)
  Health
$health  Written to  $run_env (make demo and .venv/bin/offramp read it; removed on stop)

  In another terminal:
    make demo                                   # apply a workflow, enroll, reply, watch the exit
    .venv/bin/offramp status                    # the ports above and whether each service is ready
    .venv/bin/offramp --help                    # the operator CLI (apply, enroll, exit, publish, tail)
    .venv/bin/offramp publish offramp.inbound.email.v1 deploy/local/samples/email.replied.json
    .venv/bin/offramp tail offramp.enrollment.events.v1

  Ctrl-C stops the services.
EOT

# Run until Ctrl-C, until whoever started us goes away, or until a service exits.
parent=$PPID
while kill -0 "$parent" 2>/dev/null; do
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      echo "run: ${names[$i]} exited; stopping the others (its log is above)" >&2
      exit 1
    fi
  done
  sleep 1
done

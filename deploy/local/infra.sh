#!/usr/bin/env bash
# Local development infrastructure for Offramp: one Kafka broker (KRaft,
# combined broker+controller) and one private PostgreSQL cluster, both running
# as plain processes bound to 127.0.0.1 (no Docker needed).
#
# Usage: deploy/local/infra.sh <command>
#   up            provision (first run only) and start Kafka and PostgreSQL,
#                 reusing whatever is already running; prints the env lines
#   env           print the env lines for the running infra (fails if not up)
#   down          stop what `up` started (by pid file / pg_ctl), wait for exit
#   status        human-readable status
#   kafka-up | kafka-down | postgres-up | postgres-down
#
# stdout carries ONLY the machine-readable lines, so callers can do
#   eval "$(deploy/local/infra.sh up)"   or   deploy/local/infra.sh env > .env
#     KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:<port>
#     DATABASE_URL=postgresql://offramp:offramp@127.0.0.1:<port>/offramp
# Everything else (progress, errors) goes to stderr prefixed with "infra:".
#
# State lives in ${OFFRAMP_STATE_DIR:-<repo>/.local}; setting OFFRAMP_STATE_DIR
# gives a second, fully isolated instance (own ports, data, processes).
#   kafka/     libs/ (jars from Maven Central), data/, server.properties,
#              kafka.pid, port, controller.port, cluster.id, kafka.log, server.log
#   postgres/  data/, run/ (unix socket), postgres.log, port, base
#
# Tunables (env): OFFRAMP_KAFKA_READY_TIMEOUT (s, default 90),
#                 OFFRAMP_PG_READY_TIMEOUT (s, default 60).

set -euo pipefail
# Directories we create must be traversable by the `postgres` user when run as
# root, whatever umask the caller has.
umask 022

# Keep stdout clean: from here on every command's stdout goes to stderr, and
# only the deliberate result lines are written to the original stdout (fd 3).
# This also covers chatty tools (mvn, StorageTool, apt-get, psql).
exec 3>&1 1>&2

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
KAFKA_POM=$SCRIPT_DIR/kafka/pom.xml
KAFKA_LOG4J=$SCRIPT_DIR/kafka/log4j.properties
KAFKA_READY_PY=$SCRIPT_DIR/kafka_ready.py

STATE_DIR=${OFFRAMP_STATE_DIR:-$REPO_ROOT/.local}
# Absolute, because these paths end up in configs and in the pid checks. The
# dir is only created by mutating commands (take_lock), so `status`/`env`
# never leave an empty state dir behind.
[[ $STATE_DIR == /* ]] || STATE_DIR=$PWD/$STATE_DIR
KAFKA_DIR=$STATE_DIR/kafka
PG_DIR=$STATE_DIR/postgres

KAFKA_READY_TIMEOUT=${OFFRAMP_KAFKA_READY_TIMEOUT:-90}
PG_READY_TIMEOUT=${OFFRAMP_PG_READY_TIMEOUT:-60}

PG_ROLE=offramp
PG_PASSWORD=offramp
PG_DB=offramp

# Connection settings from the caller's environment must not redirect our own
# admin/readiness connections to some other server.
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGPASSWORD PGSERVICE PGSSLMODE PGOPTIONS PGDATA
export PGCONNECT_TIMEOUT=5

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

log() { printf 'infra: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

is_root() { [[ $EUID -eq 0 ]]; }

need_cmd() {
    command -v "$1" >/dev/null 2>&1 || die "'$1' not found on PATH. $2"
}

# True if pid $1 is alive and its command line contains the fixed string $2.
# Matching the command line (not just `kill -0`) guards against pid reuse after
# a reboot or crash, and treats zombies (empty args) as dead. It is also what
# guarantees `down` only ever signals processes of *this* state dir.
proc_matches() {
    local pid=$1 needle=$2 args
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    args=$(ps -ww -o args= -p "$pid" 2>/dev/null) || return 1
    [[ -n $args && $args == *"$needle"* ]]
}

# Wait until pid $1 (matching $2) is gone, at most $3 seconds.
wait_gone() {
    local pid=$1 needle=$2 deadline=$((SECONDS + $3))
    while proc_matches "$pid" "$needle"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# Port allocation. Ports are drawn at random below the kernel's ephemeral
# range, so an outgoing connection can never grab a stored port between runs.
# The probe sets SO_REUSEADDR like Kafka/PostgreSQL do, so a port that merely
# has TIME_WAIT leftovers from our previous run still counts as free (otherwise
# every down/up cycle would move the ports); a live listener still makes it busy.
port_free() {
    python3 - "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}

pick_port() {  # args: ports to avoid
    python3 - "$@" <<'PY'
import random, socket, sys
avoid = {int(p) for p in sys.argv[1:] if p.isdigit()}
try:
    lo_eph = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    lo_eph = 32768
lo, hi = 20000, max(20001, min(lo_eph, 32768))
candidates = [p for p in range(lo, hi) if p not in avoid]
random.shuffle(candidates)
for port in candidates[:500]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    sys.exit(0)
sys.exit("no free port found")
PY
}

# Every port this state dir has recorded (so one service never picks another's).
known_ports() {
    cat "$KAFKA_DIR/port" "$KAFKA_DIR/controller.port" "$PG_DIR/port" 2>/dev/null || true
}

# ensure_port FILE LABEL: print the port stored in FILE, or pick (and store) a
# new one if there is none or the stored one is now used by something else.
# Only called right before *starting* a service, so "busy" really means foreign.
ensure_port() {
    local file=$1 label=$2 port=""
    [[ -s $file ]] && port=$(<"$file")
    if [[ $port =~ ^[0-9]+$ ]] && port_free "$port"; then
        printf '%s\n' "$port"
        return
    fi
    [[ -n $port ]] && log "$label port $port is taken by another process; picking a new one"
    # shellcheck disable=SC2046  # word splitting of the port list is intended
    port=$(pick_port $(known_ports))
    printf '%s\n' "$port" >"$file"
    printf '%s\n' "$port"
}

# Serialise mutating commands: `make -j` or two terminals running `up` at the
# same time would otherwise race on ports, formatting and pid files.
take_lock() {
    mkdir -p "$STATE_DIR"
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$STATE_DIR/.infra.lock"
        flock -w 600 9 || die "timed out waiting for another infra.sh on $STATE_DIR"
    fi
}

# ---------------------------------------------------------------------------
# Kafka
# ---------------------------------------------------------------------------

KAFKA_LIBS=$KAFKA_DIR/libs
KAFKA_PID_FILE=$KAFKA_DIR/kafka.pid
KAFKA_PROPS=$KAFKA_DIR/server.properties
KAFKA_LOG=$KAFKA_DIR/kafka.log          # JVM stdout/stderr: warnings, errors, crashes
KAFKA_SERVER_LOG=$KAFKA_DIR/server.log  # full INFO log written by log4j (rolled)

# Fast-starting JVM flags: a dev broker needs little heap and no C2 JIT, and
# SerialGC avoids G1's extra threads/memory on small machines and CI runners.
# kafka.logs.dir feeds ${kafka.logs.dir} in log4j.properties (as in Kafka's
# own start scripts). The classpath wildcard is expanded by java, not bash.
KAFKA_JVM=(java -Xmx512m -Xms256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1
    -Djava.awt.headless=true
    "-Dlog4j.configuration=file:$KAFKA_LOG4J"
    "-Dkafka.logs.dir=$KAFKA_DIR"
    -cp "$KAFKA_LIBS/*")
kafka_java() { "${KAFKA_JVM[@]}" "$@"; }

# Jars come from Maven Central via a tiny pom (no Apache mirror needed). The
# marker records the pom's hash and is written only after a complete copy, so
# an interrupted download is redone and a pom change (version bump) re-copies.
kafka_ensure_libs() {
    local marker=$KAFKA_LIBS/.complete want
    want=$(sha256sum "$KAFKA_POM" | cut -d' ' -f1)
    if [[ -f $marker && $(<"$marker") == "$want" ]]; then
        return
    fi
    need_cmd mvn "Install Maven (Debian: apt-get install maven) to download the Kafka jars."
    log "downloading Kafka jars via Maven into $KAFKA_LIBS (first run only; can take a few minutes)"
    local tmp=$KAFKA_DIR/libs.tmp
    rm -rf "$tmp"
    # Maven 3.8 emits stray ANSI resets even in batch/quiet mode; strip them.
    # (pipefail keeps mvn's exit status.)
    mvn -B -q -f "$KAFKA_POM" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" 2>&1 \
        | sed -e 's/\x1b\[[0-9;]*m//g' \
        || die "mvn failed to fetch the Kafka jars (see output above)"
    ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || die "mvn finished but kafka_2.13 jar is missing in $tmp"
    printf '%s\n' "$want" >"$tmp/.complete"
    rm -rf "$KAFKA_LIBS"
    mv "$tmp" "$KAFKA_LIBS"
}

# Regenerated on every start so port changes and edits to this script apply.
kafka_write_config() {
    local port=$1 cport=$2
    cat >"$KAFKA_PROPS" <<EOF
# Generated by deploy/local/infra.sh on every start -- edit the script, not this file.
# Single-node KRaft cluster: this process is both broker and controller.
process.roles=broker,controller
node.id=1
# Static quorum (one voter); storage is formatted without --standalone.
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
# Clients must only ever be sent to the broker listener.
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DIR/data
# One broker: internal topics cannot have more than one replica, and a single
# partition each keeps startup and the first consumer-group join fast.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
# Tests create consumer groups all the time; don't wait 3 s for more members.
group.initial.rebalance.delay.ms=0
# The project creates its topics explicitly; a typo must fail, not create a topic.
auto.create.topics.enable=false
num.partitions=3
EOF
}

kafka_pid() {  # prints the pid of our running broker, or fails
    local pid=""
    [[ -s $KAFKA_PID_FILE ]] && pid=$(<"$KAFKA_PID_FILE")
    if ! proc_matches "$pid" "$KAFKA_PROPS"; then
        # Pid file lost or stale but our broker still running (e.g. the state
        # dir was partly cleaned)? Re-adopt it, identified by its exact
        # server.properties path, rather than starting a second broker that
        # would fail on the data dir lock.
        # (The needle is assembled inside awk so that awk's own command line,
        # which ps also lists, cannot match it.)
        pid=$(ps -eww -o pid=,args= 2>/dev/null \
            | awk -v main=kafka.Kafka -v props="$KAFKA_PROPS" \
                'index($0, main " " props) { print $1; exit }')
        [[ -n $pid ]] || return 1
        printf '%s\n' "$pid" >"$KAFKA_PID_FILE"
    fi
    printf '%s\n' "$pid"
}

kafka_probe() {  # one Metadata round trip against our broker port
    local port
    port=$(cat "$KAFKA_DIR/port" 2>/dev/null) || return 1
    python3 "$KAFKA_READY_PY" "127.0.0.1:$port" --timeout 2 "$@"
}

kafka_show_logs() {
    log "---- tail of $KAFKA_LOG ----"
    tail -n 30 "$KAFKA_LOG" >&2 2>/dev/null || true
    log "---- tail of $KAFKA_SERVER_LOG ----"
    tail -n 30 "$KAFKA_SERVER_LOG" >&2 2>/dev/null || true
}

# Ready = the broker answers a Metadata request listing >= 1 broker (i.e. it
# has caught up with the metadata log and is unfenced), not merely "port open".
kafka_wait_ready() {
    local pid=$1 deadline=$((SECONDS + KAFKA_READY_TIMEOUT))
    until kafka_probe 2>/dev/null; do
        if ! proc_matches "$pid" "$KAFKA_PROPS"; then
            kafka_show_logs
            rm -f "$KAFKA_PID_FILE"
            die "Kafka (pid $pid) exited during startup; logs above"
        fi
        if ((SECONDS >= deadline)); then
            kafka_probe -v || true
            kafka_show_logs
            die "Kafka (pid $pid) not ready after ${KAFKA_READY_TIMEOUT}s; it is left running for inspection, stop it with: $0 down"
        fi
        sleep 0.5
    done
}

kafka_up() {
    mkdir -p "$KAFKA_DIR"
    local pid
    if pid=$(kafka_pid); then
        kafka_wait_ready "$pid"
        log "kafka: reusing running broker (pid $pid, 127.0.0.1:$(<"$KAFKA_DIR/port"))"
        return
    fi
    rm -f "$KAFKA_PID_FILE"
    need_cmd java "Install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)."
    need_cmd python3 "It is needed for port selection and the readiness probe."

    kafka_ensure_libs

    local port cport
    port=$(ensure_port "$KAFKA_DIR/port" "kafka broker")
    cport=$(ensure_port "$KAFKA_DIR/controller.port" "kafka controller")
    kafka_write_config "$port" "$cport"

    # Format the KRaft storage exactly once. The cluster id is kept in the
    # state dir so a re-format (e.g. after deleting data/) reuses it.
    if [[ ! -f $KAFKA_DIR/data/meta.properties ]]; then
        if [[ ! -s $KAFKA_DIR/cluster.id ]]; then
            kafka_java kafka.tools.StorageTool random-uuid | tail -n 1 >"$KAFKA_DIR/cluster.id.tmp"
            mv "$KAFKA_DIR/cluster.id.tmp" "$KAFKA_DIR/cluster.id"
        fi
        log "kafka: formatting storage in $KAFKA_DIR/data (cluster id $(<"$KAFKA_DIR/cluster.id"))"
        kafka_java kafka.tools.StorageTool format -t "$(<"$KAFKA_DIR/cluster.id")" \
            -c "$KAFKA_PROPS" --ignore-formatted
    fi

    log "kafka: starting broker on 127.0.0.1:$port (controller 127.0.0.1:$cport)"
    printf '\n===== %s infra.sh: starting kafka =====\n' "$(date -Is)" >>"$KAFKA_LOG"
    # setsid: own session, so Ctrl-C in the terminal that ran `make up` (and
    # the end of that shell) does not take the broker down. nohup: ignore
    # SIGHUP. Both exec, so $! is the JVM's pid.
    # 3>&- 9>&-: the long-lived JVM must not inherit the caller's stdout (fd 3;
    # `$(infra.sh up)` would never see EOF) nor our lock (fd 9; every later
    # infra.sh call would block until the broker exits).
    local launcher=()
    command -v setsid >/dev/null 2>&1 && launcher=(setsid)
    "${launcher[@]}" nohup "${KAFKA_JVM[@]}" kafka.Kafka "$KAFKA_PROPS" \
        </dev/null >>"$KAFKA_LOG" 2>&1 3>&- 9>&- &
    pid=$!
    printf '%s\n' "$pid" >"$KAFKA_PID_FILE"

    kafka_wait_ready "$pid"
    log "kafka: ready (pid $pid)"
}

kafka_down() {
    local pid
    if ! pid=$(kafka_pid); then
        rm -f "$KAFKA_PID_FILE"
        log "kafka: not running"
        return
    fi
    log "kafka: stopping pid $pid"
    # SIGTERM triggers Kafka's clean shutdown (flushes logs, writes the clean
    # shutdown marker, so the next start skips log recovery).
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" "$KAFKA_PROPS" 60; then
        log "kafka: still running after 60s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" "$KAFKA_PROPS" 10 || die "could not stop Kafka pid $pid"
    fi
    rm -f "$KAFKA_PID_FILE"
    log "kafka: stopped"
}

kafka_status() {
    local pid
    if pid=$(kafka_pid); then
        if kafka_probe 2>/dev/null; then
            echo "kafka:    running, ready   pid $pid  127.0.0.1:$(<"$KAFKA_DIR/port")  (controller :$(<"$KAFKA_DIR/controller.port"))"
        else
            echo "kafka:    running, NOT ready (starting or broken)  pid $pid  see $KAFKA_LOG"
        fi
    else
        echo "kafka:    stopped"
    fi
    echo "          state $KAFKA_DIR   logs $KAFKA_LOG, $KAFKA_SERVER_LOG"
}

# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------

PG_BIN=""
PG_BASE=""  # dir holding data/, run/ and postgres.log (see pg_layout)
PG_DATA=""
PG_SOCK=""
PG_LOG=""

# Highest installed major version, preferring Debian's versioned layout (which
# is how several majors coexist); fall back to whatever is on PATH.
pg_find_bin() {
    local want=${1:-} d
    if [[ -n $want && -x /usr/lib/postgresql/$want/bin/pg_ctl ]]; then
        echo "/usr/lib/postgresql/$want/bin"
        return
    fi
    while IFS= read -r d; do
        [[ -x $d/initdb && -x $d/pg_ctl && -x $d/postgres ]] && { echo "$d"; return; }
    done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r)
    if command -v pg_config >/dev/null 2>&1; then
        d=$(pg_config --bindir)
        [[ -x $d/initdb && -x $d/pg_ctl ]] && { echo "$d"; return; }
    fi
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return
    fi
    return 1
}

# Only ever done as root on Debian/Ubuntu. The package's postinst creates and
# starts a default "main" cluster on 5432; we do not use it (we run a private
# cluster on our own port/data dir), so stop what this installation started.
pg_install() {
    if ! is_root; then
        die "PostgreSQL server binaries not found. Install them first, e.g.
    sudo apt-get install postgresql        (Debian/Ubuntu)
    sudo dnf install postgresql-server     (Fedora/RHEL)
    brew install postgresql@15             (macOS)
then re-run: $0 up"
    fi
    need_cmd apt-get "PostgreSQL is not installed and this is not a Debian-like system; install the PostgreSQL server package manually."
    local before=""
    command -v pg_lsclusters >/dev/null 2>&1 && before=$(pg_lsclusters -h 2>/dev/null | awk '{print $1"/"$2}')
    log "postgres: installing the Debian 'postgresql' package (apt-get)"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql
    if command -v pg_lsclusters >/dev/null 2>&1; then
        local ver name
        while read -r ver name _; do
            [[ -n $ver ]] || continue
            grep -qxF "$ver/$name" <<<"$before" && continue   # existed before us: not ours to touch
            log "postgres: stopping the package's default cluster $ver/$name (unused; we run a private cluster)"
            pg_ctlcluster "$ver" "$name" stop 2>/dev/null || true
        done < <(pg_lsclusters -h 2>/dev/null)
    fi
}

# Run a PostgreSQL server command as the right user: initdb/pg_ctl refuse to
# run as root, so as root we use the `postgres` system user (created by the
# Debian package); as a normal user the cluster simply belongs to that user.
# `cd /` avoids "could not change directory" noise when the caller's cwd is
# not readable by postgres.
as_pg() {
    if is_root; then
        if command -v runuser >/dev/null 2>&1; then
            (cd / && runuser -u postgres -- "$@")
        else
            (cd / && su postgres -s /bin/bash -c "$(printf '%q ' "$@")")
        fi
    else
        "$@"
    fi
}

path_hash() { printf '%s' "$1" | sha256sum | cut -c1-12; }

# Decide where the cluster's files live. Normally $PG_DIR. But as root the
# server runs as `postgres`, which must be able to traverse every parent
# directory; if the state dir is e.g. under /root (mode 700) it cannot, so we
# fall back to /var/tmp/offramp-<hash of state dir>/ and record that choice in
# $PG_DIR/base so later runs (and `down`) find the same cluster.
# With "probe" (status/env/down) nothing is created or recorded.
pg_layout() {
    local mode=${1:-create}
    if [[ -s $PG_DIR/base ]]; then
        PG_BASE=$(<"$PG_DIR/base")
    elif [[ $mode == probe ]]; then
        PG_BASE=$PG_DIR
    else
        mkdir -p "$PG_DIR"
        PG_BASE=$PG_DIR
        if is_root; then
            getent passwd postgres >/dev/null || die "system user 'postgres' is missing (is the PostgreSQL server package installed?)"
            if ! as_pg test -x "$PG_DIR"; then
                PG_BASE=/var/tmp/offramp-$(path_hash "$STATE_DIR")
                log "postgres: user 'postgres' cannot reach $PG_DIR; keeping the cluster in $PG_BASE instead"
            fi
        fi
        printf '%s\n' "$PG_BASE" >"$PG_DIR/base"
    fi
    PG_DATA=$PG_BASE/data
    PG_LOG=$PG_BASE/postgres.log
    PG_SOCK=$PG_BASE/run
    # A unix socket path is limited to 107 bytes (".s.PGSQL.<port>" included),
    # which deep checkouts exceed; use a short per-instance dir then.
    if ((${#PG_SOCK} > 85)); then
        PG_SOCK=/var/tmp/offramp-$(path_hash "$STATE_DIR")/run
    fi
}

# The running postmaster's pid (from its own pid file), or fail. The command
# line check ("-D <our data dir>") makes sure it is our server, not a stale
# pid reused by something else.
pg_pid() {
    local pid
    [[ -n $PG_DATA && -f $PG_DATA/postmaster.pid ]] || return 1
    pid=$(head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null) || return 1
    proc_matches "$pid" "$PG_DATA" || return 1
    printf '%s\n' "$pid"
}

pg_running_port() { sed -n 4p "$PG_DATA/postmaster.pid"; }

pg_show_log() {
    log "---- tail of $PG_LOG ----"
    tail -n 30 "$PG_LOG" >&2 2>/dev/null || true
}

pg_admin_psql() {  # superuser session over our private unix socket (trust auth)
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$1" -U postgres -d postgres "${@:2}"
}

pg_url() { echo "postgresql://$PG_ROLE:$PG_PASSWORD@127.0.0.1:$1/$PG_DB"; }

pg_init() {
    if [[ -f $PG_DATA/PG_VERSION ]]; then
        return
    fi
    # A data dir without PG_VERSION is a failed/partial initdb: start over.
    rm -rf "$PG_DATA"
    mkdir -p "$PG_DATA"
    if is_root; then chown postgres:postgres "$PG_DATA"; fi
    log "postgres: initdb $PG_DATA"
    # Bootstrap superuser is always "postgres" so admin commands are the same
    # for root and normal users. Unix-socket logins are trusted (the socket dir
    # is private to this instance); TCP logins need the password, so the
    # DATABASE_URL we hand out is really exercised. No locale: UTF8 + C
    # collation is available everywhere and sorts deterministically.
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres \
        --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --no-locale >/dev/null
}

# Our settings live in an included file rewritten on every start (port may
# change), leaving initdb's postgresql.conf untouched apart from the include.
pg_write_config() {
    local port=$1 conf=$PG_DATA/offramp.conf
    cat >"$conf" <<EOF
# Generated by deploy/local/infra.sh on every start -- edit the script, not this file.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$PG_SOCK'
# Test suites open many pools in parallel.
max_connections = 300
shared_buffers = 256MB
# Durability stays as in production (fsync on); do not "optimise" it away,
# tests should see real commit behaviour.
fsync = on
EOF
    if is_root; then chown postgres:postgres "$conf"; fi
    grep -qxF "include 'offramp.conf'" "$PG_DATA/postgresql.conf" \
        || printf "\ninclude 'offramp.conf'\n" >>"$PG_DATA/postgresql.conf"
}

# Idempotently make the application role and database. ALTER on every run
# keeps the password in sync with the DATABASE_URL we print.
pg_bootstrap() {
    pg_admin_psql "$1" <<SQL
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PG_ROLE') THEN
    CREATE ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
  ELSE
    ALTER ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
  END IF;
END
\$\$;
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_ROLE'
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$PG_DB')
\gexec
SQL
}

# Ready = accepting connections (pg_isready) AND the application user can log
# in over TCP with the advertised URL and run a query.
pg_wait_ready() {
    local port=$1 deadline=$((SECONDS + PG_READY_TIMEOUT))
    until "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -t 2; do
        if ((SECONDS >= deadline)); then
            pg_show_log
            die "PostgreSQL on 127.0.0.1:$port not accepting connections after ${PG_READY_TIMEOUT}s"
        fi
        sleep 0.3
    done
}

pg_check_app_login() {
    local out
    out=$("$PG_BIN/psql" -X -At -d "$(pg_url "$1")" -c 'select 1' 2>&1) && [[ $out == 1 ]] \
        || { pg_show_log; die "PostgreSQL is up but '$PG_ROLE' cannot log in / query: $out"; }
}

pg_resolve_bin() {
    # If a cluster already exists, use binaries of *its* major version (data
    # dirs are not compatible across majors); otherwise the newest installed.
    local ver=""
    [[ -n $PG_DATA && -f $PG_DATA/PG_VERSION ]] && ver=$(<"$PG_DATA/PG_VERSION")
    PG_BIN=$(pg_find_bin "$ver") || return 1
    if [[ -n $ver ]]; then
        local have
        have=$("$PG_BIN/postgres" --version | awk '{ split($3, v, "."); print v[1] }')
        [[ $have == "$ver" ]] || die "the cluster in $PG_DATA was created by PostgreSQL $ver, but only PostgreSQL $have binaries were found ($PG_BIN). Install postgresql-$ver, or run '$0 down' and delete $PG_DATA to start fresh."
    fi
}

pg_up() {
    pg_layout
    if ! pg_resolve_bin; then
        pg_install
        pg_resolve_bin || die "PostgreSQL binaries still not found after installing"
    fi

    local pid port
    if pid=$(pg_pid); then
        port=$(pg_running_port)
        printf '%s\n' "$port" >"$PG_DIR/port"
        pg_wait_ready "$port"
        pg_bootstrap "$port"
        pg_check_app_login "$port"
        log "postgres: reusing running server (pid $pid, 127.0.0.1:$port)"
        return
    fi

    pg_init
    port=$(ensure_port "$PG_DIR/port" "postgres")
    mkdir -p "$PG_SOCK"
    touch "$PG_LOG"
    if is_root; then chown postgres:postgres "$PG_SOCK" "$PG_LOG"; fi
    pg_write_config "$port"

    log "postgres: starting PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (data $PG_DATA)"
    # pg_ctl -w waits until the server accepts connections; pg_ctl itself
    # detaches the postmaster into its own session. Close fds 3 and 9 so the
    # postmaster does not inherit the caller's stdout or our lock (see kafka_up).
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$PG_READY_TIMEOUT" -s start \
        </dev/null 3>&- 9>&- \
        || { pg_show_log; die "pg_ctl start failed"; }
    pg_wait_ready "$port"
    pg_bootstrap "$port"
    pg_check_app_login "$port"
    log "postgres: ready (pid $(pg_pid || echo '?'))"
}

pg_down() {
    pg_layout probe
    local pid
    if ! pid=$(pg_pid); then
        log "postgres: not running"
        return
    fi
    pg_resolve_bin || die "PostgreSQL binaries not found; stop pid $pid manually"
    log "postgres: stopping pid $pid"
    # -m fast: roll back open transactions and disconnect clients (tests may
    # leave idle sessions around) instead of waiting for them forever.
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 -s stop
    wait_gone "$pid" "$PG_DATA" 10 || die "PostgreSQL pid $pid did not exit"
    log "postgres: stopped"
}

pg_status() {
    pg_layout probe
    local pid
    if pid=$(pg_pid); then
        local port
        port=$(pg_running_port)
        PG_BIN=$(pg_find_bin "$(cat "$PG_DATA/PG_VERSION" 2>/dev/null)") || true
        if [[ -n $PG_BIN ]] && "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -t 2; then
            echo "postgres: running, ready   pid $pid  127.0.0.1:$port"
        else
            echo "postgres: running, NOT ready  pid $pid  see $PG_LOG"
        fi
    else
        echo "postgres: stopped"
    fi
    echo "          data $PG_DATA   log $PG_LOG"
}

# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------

print_env() {
    local kport pport
    kport=$(<"$KAFKA_DIR/port")
    pport=$(<"$PG_DIR/port")
    printf 'KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:%s\n' "$kport" >&3
    printf 'DATABASE_URL=%s\n' "$(pg_url "$pport")" >&3
}

cmd_env() {
    local problems=()
    if ! kafka_pid >/dev/null; then
        problems+=("kafka is not running")
    elif ! kafka_probe 2>/dev/null; then
        problems+=("kafka is running but not ready")
    fi
    pg_layout probe
    if ! pg_pid >/dev/null; then
        problems+=("postgres is not running")
    else
        printf '%s\n' "$(pg_running_port)" >"$PG_DIR/port"
    fi
    if ((${#problems[@]})); then
        local joined
        joined=$(printf '%s, ' "${problems[@]}")
        die "infra is not up (${joined%, }); start it with: $0 up"
    fi
    print_env
}

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
}

main() {
    local cmd=${1:-}
    case $cmd in
        up)
            take_lock
            local t0=$SECONDS
            kafka_up
            pg_up
            log "up in $((SECONDS - t0))s (state: $STATE_DIR)"
            print_env
            ;;
        kafka-up)     take_lock; kafka_up ;;
        postgres-up)  take_lock; pg_up ;;
        down)
            take_lock
            kafka_down
            pg_down
            ;;
        kafka-down)    take_lock; kafka_down ;;
        postgres-down) take_lock; pg_down ;;
        env)    cmd_env ;;
        status)
            {
                echo "state dir: $STATE_DIR"
                kafka_status
                pg_status
            } >&3
            ;;
        -h | --help | help) usage ;;
        *)
            usage
            exit 2
            ;;
    esac
}

main "$@"

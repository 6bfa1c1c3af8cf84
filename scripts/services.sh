# shellcheck shell=bash
# Local services the test suite talks to: Redis, RabbitMQ, PostgreSQL, NATS (with JetStream) and
# Mosquitto on 127.0.0.1.
#
# Sourced by scripts/test. `services_up` checks that each one answers its own protocol (an open port
# is not enough: RabbitMQ listens before it can serve), starts any that is installed but down with the
# command this machine documents, and remembers what it started; `services_down` stops only those, so
# a developer's already-running services are never touched.

SERVICES_STARTED=()
SERVICES_RABBITMQ_DEADLINE_SEC=${SERVICES_RABBITMQ_DEADLINE_SEC:-60}
SERVICES_DEADLINE_SEC=${SERVICES_DEADLINE_SEC:-30}
SERVICES_NATS_PORT=${SERVICES_NATS_PORT:-4222}
SERVICES_MOSQUITTO_PORT=${SERVICES_MOSQUITTO_PORT:-1883}
SERVICES_DIR="" # data, logs and pids of the NATS and Mosquitto servers this run starts
declare -A SERVICES_PIDS=()

# Redis answers PING with +PONG.
_redis_answers() {
    local reply=""
    { exec 3<>/dev/tcp/127.0.0.1/6379; } 2>/dev/null || return 1
    printf 'PING\r\n' >&3
    IFS= read -r -t 2 reply <&3 2>/dev/null || true
    exec 3<&-
    [[ $reply == +PONG* ]]
}

# RabbitMQ answers an AMQP 0-9-1 protocol header with a method frame (Connection.Start, type 1).
_rabbitmq_answers() {
    local frame_type=""
    { exec 3<>/dev/tcp/127.0.0.1/5672; } 2>/dev/null || return 1
    printf 'AMQP\x00\x00\x09\x01' >&3
    frame_type=$(timeout 3 head -c 1 <&3 | od -An -tx1 | tr -d ' \n') || true
    exec 3<&-
    [[ $frame_type == 01 ]]
}

# NATS greets every client with an INFO line; the transport's tests need JetStream on.
_nats_answers() {
    local info=""
    { exec 3<>"/dev/tcp/127.0.0.1/${SERVICES_NATS_PORT}"; } 2>/dev/null || return 1
    IFS= read -r -t 2 info <&3 2>/dev/null || true
    exec 3<&-
    [[ $info == INFO* && $info == *'"jetstream":true'* ]]
}

# Mosquitto answers an MQTT 3.1.1 CONNECT (clean session, empty client id) with a CONNACK (0x20).
_mosquitto_answers() {
    local packet_type=""
    { exec 3<>"/dev/tcp/127.0.0.1/${SERVICES_MOSQUITTO_PORT}"; } 2>/dev/null || return 1
    printf '\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00' >&3
    packet_type=$(timeout 3 head -c 1 <&3 | od -An -tx1 | tr -d ' \n') || true
    exec 3<&-
    [[ $packet_type == 20 ]]
}

# PostgreSQL: pg_isready tells "accepting connections" apart from "starting up".
_postgres_answers() {
    pg_isready -q -h 127.0.0.1 -p 5432 -t 2
}

_redis_installed() { command -v redis-server >/dev/null; }
_rabbitmq_installed() { command -v rabbitmq-server >/dev/null; }
_postgres_installed() {
    command -v pg_ctlcluster >/dev/null && command -v pg_isready >/dev/null \
        && [[ -n $(ls /etc/postgresql 2>/dev/null) ]]
}

_nats_installed() { command -v nats-server >/dev/null; }
_mosquitto_installed() { command -v mosquitto >/dev/null; }

# NATS and Mosquitto run as children of this shell; their pids are kept to stop them.
_services_dir() {
    [[ -n $SERVICES_DIR ]] || SERVICES_DIR=$(mktemp -d "${TMPDIR:-/tmp}/actionhooks-services.XXXXXX")
}
_nats_start() {
    _services_dir
    local dir=$SERVICES_DIR
    nats-server -js -a 127.0.0.1 -p "$SERVICES_NATS_PORT" -sd "$dir/jetstream" \
        >"$dir/nats.log" 2>&1 </dev/null &
    SERVICES_PIDS[nats]=$!
}
_mosquitto_start() {
    _services_dir
    local dir=$SERVICES_DIR
    # `user`: started as root, mosquitto would switch to the "mosquitto" user, who cannot use $dir.
    printf 'listener %s 127.0.0.1\nallow_anonymous true\nuser %s\n' \
        "$SERVICES_MOSQUITTO_PORT" "$(id -un)" >"$dir/mosquitto.conf"
    mosquitto -c "$dir/mosquitto.conf" >"$dir/mosquitto.log" 2>&1 </dev/null &
    SERVICES_PIDS[mosquitto]=$!
}
_stop_pid() { # _stop_pid NAME: SIGTERM the process this run started as NAME, and wait for it
    local pid=${SERVICES_PIDS[$1]:-} waited
    [[ -n $pid ]] || return 0
    kill "$pid" 2>/dev/null || return 0
    for ((waited = 0; waited < 40; waited++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.25 # waiting for a process we do not parent here: nothing to wait on but time
    done
    unset "SERVICES_PIDS[$1]"
}
_nats_stop() { _stop_pid nats; }
_mosquitto_stop() { _stop_pid mosquitto; }

_redis_start() {
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null
}
_rabbitmq_start() { rabbitmq-server -detached >/dev/null 2>&1; }
_postgres_start() {
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
}

_redis_stop() {
    { exec 3<>/dev/tcp/127.0.0.1/6379; } 2>/dev/null || return 0
    printf 'SHUTDOWN NOSAVE\r\n' >&3
    exec 3<&-
}
_rabbitmq_stop() { rabbitmqctl stop >/dev/null 2>&1; }
_postgres_stop() {
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main stop
}

# _service_up NAME PACKAGE PORT DEADLINE: make NAME answer, or explain what is missing.
_service_up() {
    local name=$1 package=$2 port=$3 deadline=$4 waited
    "_${name}_answers" && return 0
    if ! "_${name}_installed"; then
        echo "error: ${name} is not answering on 127.0.0.1:${port} and is not installed;" \
            "install it with: apt-get install -y ${package}" >&2
        return 1
    fi
    echo "${name} is down on 127.0.0.1:${port}: starting it" >&2
    if ! "_${name}_start"; then
        echo "error: could not start ${name} (Debian package ${package})" >&2
        return 1
    fi
    SERVICES_STARTED+=("$name")
    for ((waited = 0; waited < deadline * 4; waited++)); do
        "_${name}_answers" && return 0
        sleep 0.25 # polling a server's socket: there is nothing to wait on but time
    done
    echo "error: ${name} started but did not answer on 127.0.0.1:${port} within ${deadline} s" >&2
    return 1
}

services_up() {
    _service_up redis redis-server 6379 "$SERVICES_DEADLINE_SEC" \
        && _service_up rabbitmq rabbitmq-server 5672 "$SERVICES_RABBITMQ_DEADLINE_SEC" \
        && _service_up postgres postgresql 5432 "$SERVICES_DEADLINE_SEC" \
        && _service_up nats nats-server "$SERVICES_NATS_PORT" "$SERVICES_DEADLINE_SEC" \
        && _service_up mosquitto mosquitto "$SERVICES_MOSQUITTO_PORT" "$SERVICES_DEADLINE_SEC"
}

services_down() {
    local name
    for name in "${SERVICES_STARTED[@]}"; do
        echo "stopping ${name} (started by this run)" >&2
        "_${name}_stop" || echo "warning: could not stop ${name}" >&2
    done
    SERVICES_STARTED=()
    if [[ -n $SERVICES_DIR ]]; then
        rm -rf "$SERVICES_DIR"
        SERVICES_DIR=""
    fi
}

#!/usr/bin/env bash
# Benchmark of the asynchronous import pipeline (issue #4): latency and throughput.
#
# It builds the release binary, starts a throwaway nginx on loopback serving a 1 MiB and a
# 256 MiB file of random bytes, and runs Glint in these shapes, each on fresh state:
#   serve-sqlite       `glint serve` (API + worker + outbox relay, in-process transport), SQLite
#   serve-postgres     the same on PostgreSQL
#   rabbitmq-postgres  `glint api` + 1 `glint worker` over RabbitMQ, PostgreSQL (production shape)
#
# 1. Latency (bench/import_driver.py latency): BENCH_IMPORTS sequential rounds per shape, each
#    round interleaving, on a 1 MiB raw image:
#      * PUT /v2/images/{id}/file                     - synchronous upload, the reference;
#      * glance-direct: PUT .../stage (untimed), then POST .../import -> 202 -> polling
#        GET /v2/images/{id} every BENCH_POLL_MS until `active`;
#      * web-download from nginx: POST .../import -> `active`, polled the same way.
#    Median, p90, p99 and max, and where the time goes: the API's "import accepted" and the
#    worker's "import succeeded" log timestamps split each import into API, pipeline and poll lag.
# 2. Throughput (bench/import_driver.py throughput): BENCH_BIG_COUNT web-download imports of
#    BENCH_BIG_MIB MiB submitted at once to `glint api` + 1 worker, then + 2 workers (RabbitMQ,
#    PostgreSQL, BENCH_WORKER_CONCURRENCY tasks per worker): wall time from the first POST to the
#    last image seen `active`, MB/s, the 2w/1w ratio, the CPU seconds of each process and how busy
#    the machine's cores were. Sizes, MD5 and SHA-512 of every image are checked.
#    References on the same bytes in the same run: nginx -> curl piped to dd conv=fsync (files)
#    (4 at a time: download + store without Glint), and SHA-512 + MD5 of the file BIG_COUNT
#    times (2 at a time: the hashing Glint does per byte) with openssl.
#
# Results: markdown tables on stdout; progress on stderr. Exit status 1 if any import failed,
# timed out or stored wrong bytes.
#
# Knobs (environment):
#   BENCH_IMPORTS=200 BENCH_WARMUP=5     latency rounds per shape (+ unmeasured warm-up rounds)
#   BENCH_SMALL_KIB=1024                 latency image size
#   BENCH_POLL_MS=5                      latency polling period (throughput polls every 100 ms)
#   BENCH_LATENCY_SETUPS="serve-sqlite serve-postgres rabbitmq-postgres"   ("" skips part 1)
#   BENCH_BIG_COUNT=50 BENCH_BIG_MIB=256 throughput imports and their size
#   BENCH_THROUGHPUT_WORKERS="1 2"       worker process counts to compare ("" skips part 2)
#   BENCH_WORKER_CONCURRENCY=4           tasks per worker process
#   BENCH_REFERENCES=1                   0 skips the throughput references
#   BENCH_PROJECT_LIMIT=0                [tasks] max_running_per_project: every import is one project's,
#                                        so the default cap of 2 would measure the cap, not workers
#   BENCH_SOURCE_RATE=                   nginx's limit_rate for the big file, per connection (e.g.
#                                        10m): imports bound by their sources, not by the CPU, so
#                                        the worker-count ratios show scale-out (issue #19 item 5).
#                                        Make BENCH_BIG_COUNT a multiple of the most workers x
#                                        BENCH_WORKER_CONCURRENCY (40 imports on 16 slots take 3
#                                        rounds, so 4 workers can reach at most 3.33x), and keep
#                                        slots x rate well under the disk's and the hashing CPU's
#                                        bandwidth (16 x 10 MiB/s was near this disk's ~200 MB/s):
#                                        BENCH_THROUGHPUT_WORKERS="1 2 4" BENCH_BIG_COUNT=48
#                                        BENCH_BIG_MIB=16 BENCH_SOURCE_RATE=4m
#   BENCH_PG_HOST=127.0.0.1 BENCH_PG_PORT=5432 BENCH_PG_USER=postgres   PostgreSQL (trust auth)
#   BENCH_BROKER_URL=amqp://guest:guest@127.0.0.1:5672/%2f
#   CARGO_TARGET_DIR (default $HOME/.cache/glint/target)
#   BENCH_GLINT_BIN=/path/to/glint   benchmark that binary instead of building (skips cargo)
#   BENCH_KEEP=1                     keep the temp dir (Glint's logs, the drivers' JSON) at the end
# A quick try: BENCH_IMPORTS=50 BENCH_BIG_COUNT=8 BENCH_BIG_MIB=64 bench/import.sh
set -euo pipefail

IMPORTS=${BENCH_IMPORTS:-200}
WARMUP=${BENCH_WARMUP:-5}
SMALL_KIB=${BENCH_SMALL_KIB:-1024}
POLL_MS=${BENCH_POLL_MS:-5}
LATENCY_SETUPS=${BENCH_LATENCY_SETUPS-serve-sqlite serve-postgres rabbitmq-postgres}
BIG_COUNT=${BENCH_BIG_COUNT:-50}
BIG_MIB=${BENCH_BIG_MIB:-256}
THROUGHPUT_WORKERS=${BENCH_THROUGHPUT_WORKERS-1 2}
CONCURRENCY=${BENCH_WORKER_CONCURRENCY:-4}
WANT_REFS=${BENCH_REFERENCES:-1}
SOURCE_RATE=${BENCH_SOURCE_RATE:-}
PROJECT_LIMIT=${BENCH_PROJECT_LIMIT:-0}
KEEP=${BENCH_KEEP:-0}
PG_HOST=${BENCH_PG_HOST:-127.0.0.1}
PG_PORT=${BENCH_PG_PORT:-5432}
PG_USER=${BENCH_PG_USER:-postgres}
BROKER_URL=${BENCH_BROKER_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/glint/target}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GLINT=${BENCH_GLINT_BIN:-$CARGO_TARGET_DIR/release/glint}
DRIVER="$ROOT/bench/import_driver.py"

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

for v in IMPORTS SMALL_KIB BIG_COUNT BIG_MIB CONCURRENCY; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "BENCH_$v must be a positive integer, got '${!v}'"
done
[[ $WARMUP =~ ^[0-9]+$ ]] || die "BENCH_WARMUP must be an integer, got '$WARMUP'"

# ---------------------------------------------------------------- cleanup -------------
TMP=""
PIDS=()          # every process this script started and must stop
PG_DBS=()        # databases this script created
QUEUES=()        # RabbitMQ queues this script's processes declared

cleanup() {
    local rc=$? pid db q
    set +e
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    for db in "${PG_DBS[@]}"; do
        psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -qAt \
            -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 \
            && log "dropped database $db" || log "WARNING: could not drop database $db"
    done
    if (( ${#QUEUES[@]} )); then
        if command -v rabbitmqctl >/dev/null; then
            for q in "${QUEUES[@]}"; do
                timeout 30 rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 \
                    && log "deleted queue $q" || log "WARNING: could not delete RabbitMQ queue $q (empty, durable)"
            done
        else
            log "WARNING: no rabbitmqctl; these empty durable queues remain: ${QUEUES[*]}"
        fi
    fi
    if [[ $KEEP == 1 && -n $TMP && -d $TMP ]]; then
        rm -rf -- "$TMP"/www/*.raw "$TMP"/*/images "$TMP"/*/staging "$TMP/ref"
        log "kept $TMP (BENCH_KEEP=1)"
    elif [[ -n $TMP && -d $TMP ]]; then
        rm -rf -- "$TMP"
    fi
    exit "$rc"
}
on_exit cleanup

# ---------------------------------------------------------------- tools ---------------
need_tools curl openssl python3
find_nginx "the web-download source"
[[ -n $NGINX ]] || log "serving with python3 -m http.server instead"
[[ -z $SOURCE_RATE || -n $NGINX ]] || die "BENCH_SOURCE_RATE needs nginx (limit_rate)"
[[ -n $LATENCY_SETUPS$THROUGHPUT_WORKERS ]] || die "nothing to do: BENCH_LATENCY_SETUPS and BENCH_THROUGHPUT_WORKERS are both empty"
command -v psql >/dev/null || die "psql is needed (PostgreSQL shapes)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/glint-bench-import.XXXXXX")
chmod 755 "$TMP"   # nginx workers (user nobody) read the files under it
mkdir -p "$TMP/results"

# Peak disk use: the big file, one throughput run's images (removed after each run) and the
# latency runs' 1 MiB images (3 per round per shape).
NEED=$(( (BIG_MIB * (BIG_COUNT + 1) + 3 * 3 * (IMPORTS + WARMUP) * SMALL_KIB / 1024 + 512) * 1024 * 1024 ))
[[ -n $THROUGHPUT_WORKERS ]] || NEED=$(( (3 * 3 * (IMPORTS + WARMUP) * SMALL_KIB / 1024 + 512) * 1024 * 1024 ))
AVAIL=$(df -B1 --output=avail "$TMP" | tail -n 1 | tr -d ' ')
(( AVAIL >= NEED )) || die "$TMP's filesystem has $((AVAIL >> 20)) MiB free; this run needs $((NEED >> 20)) MiB. Lower BENCH_BIG_COUNT/BENCH_BIG_MIB or point TMPDIR elsewhere."

# ---------------------------------------------------------------- build ---------------
REV="tree $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?') at build time"
if [[ -z ${BENCH_GLINT_BIN:-} ]]; then
    log "cargo build --release --bin glint (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$ROOT" && cargo build --release --bin glint) >&2 || die "cargo build failed"
else
    log "using BENCH_GLINT_BIN=$GLINT (no build)"
    REV="prebuilt $GLINT"
fi
[[ -x $GLINT ]] || die "no binary at $GLINT"

UPTIME_START=$(uptime)
T_START=$SECONDS

# ---------------------------------------------------------------- data + nginx --------
WWW="$TMP/www"
mkdir -p "$WWW" && chmod 755 "$WWW"
head -c $((SMALL_KIB * 1024)) /dev/urandom >"$WWW/small.raw"
if [[ -n $THROUGHPUT_WORKERS ]]; then
    log "writing a $BIG_MIB MiB random file"
    head -c $((BIG_MIB * 1024 * 1024)) /dev/urandom >"$WWW/big.raw"
fi
chmod 644 "$WWW"/*.raw
read -r SMALL_MD5 _ < <(python3 "$DRIVER" digest "$WWW/small.raw")

WEB_PORT=$(free_port)
WEB="http://127.0.0.1:$WEB_PORT"
if [[ -n $NGINX ]]; then
    mkdir -p "$TMP/nginx/tmp"
    cat >"$TMP/nginx/nginx.conf" <<EOF
daemon off;
worker_processes $(nproc);
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path $TMP/nginx/tmp/body;
    proxy_temp_path $TMP/nginx/tmp/proxy;
    fastcgi_temp_path $TMP/nginx/tmp/fastcgi;
    uwsgi_temp_path $TMP/nginx/tmp/uwsgi;
    scgi_temp_path $TMP/nginx/tmp/scgi;
    server {
        listen 127.0.0.1:$WEB_PORT;
        root $WWW;
        location = /big.raw { limit_rate ${SOURCE_RATE:-0}; }
    }
}
EOF
    "$NGINX" -e "$TMP/nginx/error.log" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" >"$TMP/nginx/stdout.log" 2>&1 &
    WEB_PID=$!
    WEB_NAME=nginx
    WEB_LOG="$TMP/nginx/error.log"
else
    (cd "$WWW" && exec python3 -m http.server --bind 127.0.0.1 "$WEB_PORT") >"$TMP/http.log" 2>&1 &
    WEB_PID=$!
    WEB_NAME=http.server
    WEB_LOG="$TMP/http.log"
fi
PIDS+=("$WEB_PID")
wait_http "$WEB/small.raw" "$WEB_PID" "$WEB_LOG"
log "$WEB_NAME serves $WWW on $WEB"

# ---------------------------------------------------------------- glint helpers -------
PG_PREFIX="glint_bench_import_$$"

DB_URL=""
new_database() {   # new_database NAME: a fresh PostgreSQL database, its URL in DB_URL
    local db="${PG_PREFIX}_$1"
    psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -qAt -c "CREATE DATABASE \"$db\"" >/dev/null \
        || die "cannot create database $db"
    PG_DBS+=("$db")
    DB_URL="postgres://$PG_USER@$PG_HOST:$PG_PORT/$db"
}

write_config() {   # write_config DIR TRANSPORT DB_URL QUEUE PORT: DIR/glint.toml
    local dir=$1 transport=$2 url=$3 queue=$4 port=$5
    mkdir -p "$dir/images" "$dir/staging"
    cat >"$dir/glint.toml" <<EOF
[server]
bind = "127.0.0.1:$port"

[database]
url = "$url"

[storage.backends.local]
type = "filesystem"
path = "$dir/images"

[import]
staging_dir = "$dir/staging"

[import.filtering]
allowed_ports = [$WEB_PORT]
allow_private_addresses = true

[tasks]
transport = "$transport"
broker_url = "$BROKER_URL"
queue_name = "$queue"
worker_concurrency = $CONCURRENCY
max_running_per_project = $PROJECT_LIMIT
EOF
}

LAST_PID=""
start_glint() {    # start_glint DIR NAME COMMAND: DIR/NAME.log, pid in LAST_PID
    local dir=$1 name=$2 command=$3
    (cd "$dir" && exec env RUST_LOG=info NO_COLOR=1 GLINT_CONFIG="$dir/glint.toml" "$GLINT" "$command") \
        >"$dir/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

wait_log() {       # wait_log FILE PATTERN PID
    local i
    for i in $(seq 300); do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        kill -0 "$3" 2>/dev/null || { tail -n 30 "$1" >&2; die "$1: process exited before logging '$2'"; }
        sleep 0.1
    done
    tail -n 30 "$1" >&2
    die "$1: no '$2' within 30 s"
}

wait_consumers() { # wait_consumers QUEUE N: until the broker shows N consumers (best effort)
    local i n
    command -v rabbitmqctl >/dev/null || { sleep 2; return 0; }
    for i in $(seq 30); do
        n=$(timeout 20 rabbitmqctl -q list_queues name consumers 2>/dev/null | awk -v q="$1" '$1 == q {print $2}')
        [[ ${n:-0} -ge $2 ]] && return 0
        sleep 1
    done
    log "WARNING: queue $1 did not show $2 consumers within ~30 s; going on"
}

stop_all() {       # stop_all PID...: stop these and forget them
    local pid keep=() p
    for pid in "$@"; do stop_pid "$pid"; done
    for p in "${PIDS[@]}"; do [[ " $* " == *" $p "* ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

check_logs() {     # check_logs FILE...: errors, panics, warnings and retries are reported, not fatal
    local f
    for f in "$@"; do
        if grep -qE ' (ERROR|WARN) |panicked' "$f"; then
            log "WARNING: $f has $(grep -cE ' (ERROR|WARN) |panicked' "$f") error/warning lines" \
                "($(grep -c 'task will be retried' "$f") task retries):"
            grep -E ' (ERROR|WARN) |panicked' "$f" | head -10 >&2
        fi
    done
}

# ---------------------------------------------------------------- 1. latency ----------
FAILED=0
latency_setup() {
    local setup=$1 dir="$TMP/$1" port base logs=() pids=()
    mkdir -p "$dir"
    port=$(free_port)
    base="http://127.0.0.1:$port"
    case $setup in
        serve-sqlite)
            write_config "$dir" memory "sqlite://$dir/glint.db?mode=rwc" unused "$port"
            start_glint "$dir" serve serve; pids+=("$LAST_PID"); logs+=("$dir/serve.log")
            wait_log "$dir/serve.log" "task worker started" "$LAST_PID" ;;
        serve-postgres)
            new_database serve
            write_config "$dir" memory "$DB_URL" unused "$port"
            start_glint "$dir" serve serve; pids+=("$LAST_PID"); logs+=("$dir/serve.log")
            wait_log "$dir/serve.log" "task worker started" "$LAST_PID" ;;
        rabbitmq-postgres)
            new_database rabbit
            local queue="glint.bench.$$.latency"
            QUEUES+=("$queue")
            write_config "$dir" rabbitmq "$DB_URL" "$queue" "$port"
            # The API first: it applies the migrations the worker then finds done.
            start_glint "$dir" api api; pids+=("$LAST_PID"); logs+=("$dir/api.log")
            wait_http "$base/healthcheck" "$LAST_PID" "$dir/api.log"
            start_glint "$dir" worker worker; pids+=("$LAST_PID"); logs+=("$dir/worker.log")
            wait_log "$dir/worker.log" "task worker started" "$LAST_PID"
            wait_consumers "$queue" 1 ;;
        *) die "unknown setup $setup (serve-sqlite, serve-postgres, rabbitmq-postgres)" ;;
    esac
    wait_http "$base/healthcheck" "${pids[0]}" "${logs[0]}"
    log "[$setup] $IMPORTS rounds of PUT /file, glance-direct and web-download of $SMALL_KIB KiB (poll ${POLL_MS} ms; load: $(cut -d' ' -f1-3 /proc/loadavg))"
    local args=(latency --base "$base" --label "$setup" --file "$WWW/small.raw" --md5 "$SMALL_MD5"
                --web-url "$WEB/small.raw" --n "$IMPORTS" --warmup "$WARMUP" --poll-ms "$POLL_MS"
                --out "$TMP/results/1-latency-$setup.json")
    local l; for l in "${logs[@]}"; do args+=(--log "$l"); done
    python3 "$DRIVER" "${args[@]}" || FAILED=1
    stop_all "${pids[@]}"
    check_logs "${logs[@]}"
    rm -rf -- "$dir/images" "$dir/staging"
}

for setup in $LATENCY_SETUPS; do latency_setup "$setup"; done

# ---------------------------------------------------------------- 2. throughput -------
BIG_BYTES=$((BIG_COUNT * BIG_MIB * 1024 * 1024))
if [[ -n $THROUGHPUT_WORKERS ]]; then
    read -r BIG_MD5 BIG_SHA512 < <(python3 "$DRIVER" digest "$WWW/big.raw")
fi

throughput_run() { # throughput_run WORKERS
    local n=$1 dir="$TMP/tp-$1w" port base queue="glint.bench.$$.tp$1" pids=() watch=() logs=() i
    QUEUES+=("$queue")
    mkdir -p "$dir"
    port=$(free_port)
    base="http://127.0.0.1:$port"
    new_database "tp$n"
    write_config "$dir" rabbitmq "$DB_URL" "$queue" "$port"
    start_glint "$dir" api api; pids+=("$LAST_PID"); logs+=("$dir/api.log"); watch+=(--watch "api=$LAST_PID")
    wait_http "$base/healthcheck" "$LAST_PID" "$dir/api.log"
    for ((i = 1; i <= n; i++)); do
        start_glint "$dir" "worker$i" worker; pids+=("$LAST_PID"); logs+=("$dir/worker$i.log")
        watch+=(--watch "worker$i=$LAST_PID")
        wait_log "$dir/worker$i.log" "task worker started" "$LAST_PID"
    done
    wait_consumers "$queue" "$n"
    [[ $WEB_NAME == nginx ]] && watch+=(--watch "nginx=$WEB_PID")
    python3 "$DRIVER" throughput --base "$base" --label "$n worker(s) x $CONCURRENCY" --file "$WWW/big.raw" \
        --md5 "$BIG_MD5" --sha512 "$BIG_SHA512" --web-url "$WEB/big.raw" --count "$BIG_COUNT" \
        "${watch[@]}" --out "$TMP/results/2-throughput-${n}w.json" || FAILED=1
    stop_all "${pids[@]}"
    check_logs "${logs[@]}"
    rm -rf -- "$dir/images" "$dir/staging"
}

if [[ -n $THROUGHPUT_WORKERS ]]; then
    log "throughput: $BIG_COUNT x $BIG_MIB MiB web-downloads per run (load: $(cut -d' ' -f1-3 /proc/loadavg))"
    for n in $THROUGHPUT_WORKERS; do
        [[ $n =~ ^[1-9][0-9]*$ ]] || die "BENCH_THROUGHPUT_WORKERS holds '$n', not a count"
        throughput_run "$n"
    done
    if [[ $WANT_REFS == 1 ]]; then
        mkdir -p "$TMP/ref"
        python3 "$DRIVER" reference --label "$WEB_NAME -> curl, piped to dd conv=fsync, $BIG_COUNT files, 4 at a time" \
            --bytes "$BIG_BYTES" --out "$TMP/results/3-ref-curl.json" \
            --command "seq $BIG_COUNT | xargs -P4 -I{} sh -c 'curl -sf $WEB/big.raw | dd of=$TMP/ref/{} bs=1M conv=fsync status=none'"
        rm -rf -- "$TMP/ref"
        python3 "$DRIVER" reference --label "openssl dgst -sha512 and -md5 of the file, $BIG_COUNT times, 2 at a time (page cache)" \
            --bytes "$BIG_BYTES" --out "$TMP/results/4-ref-hash.json" \
            --command "seq $BIG_COUNT | xargs -P2 -I{} sh -c 'openssl dgst -sha512 $WWW/big.raw >/dev/null && openssl dgst -md5 $WWW/big.raw >/dev/null'"
    fi
fi

# ---------------------------------------------------------------- report --------------
{
    echo
    echo "Glint import benchmark — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores shared by clients," \
         "nginx, PostgreSQL, RabbitMQ and Glint; $REV; $((SECONDS - T_START)) s"
    echo
    echo "uptime at start: $UPTIME_START"
    echo "uptime at end:   $(uptime)"
    echo
    python3 "$DRIVER" report --dir "$TMP/results" \
        --order "serve-sqlite,serve-postgres,rabbitmq-postgres"
    if (( FAILED )); then echo "**FAILED: some import failed, timed out or stored wrong bytes (see stderr).**"; fi
}
exit $(( FAILED ))

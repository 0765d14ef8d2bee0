#!/usr/bin/env bash
# Loopback load benchmark of the Glint images metadata API.
#
# For each metadata backend (SQLite, PostgreSQL) it builds the release binary, starts
# `glint serve` in a temp dir on a free 127.0.0.1 port, seeds 1,000 images and measures with wrk:
#   * GET /healthcheck             - no database: the HTTP stack's floor on the same server;
#   * GET /v2/images/{id}          - one existing image out of 1,000;
#   * GET /v2/images?limit=100...  - the 10 pages of a full 1,000-image listing, cycled by a
#                                    wrk Lua script over the URLs found by walking `next` once.
# As a reference it also runs a throwaway nginx (if it installs from Debian) serving the same
# bytes as static files: the image JSON and the 10 page JSONs, cycled the same way.
#
# Results: a markdown table on stdout; progress and raw wrk output on stderr.
# Exit status 1 if any wrk run saw a socket error or a non-2xx/3xx response.
#
# Knobs (environment):
#   BENCH_THREADS=2 BENCH_CONNS=32 BENCH_DURATION=10s BENCH_WARMUP=2s  wrk settings
#   BENCH_IMAGES=1000 BENCH_PAGE=100                                  data set / page size
#   BENCH_BACKENDS="sqlite postgres"                                 which backends
#   BENCH_NGINX=1                                                    0 skips the nginx reference
#   BENCH_PG_HOST=127.0.0.1 BENCH_PG_PORT=5432 BENCH_PG_USER=postgres PostgreSQL (trust auth)
#   CARGO_TARGET_DIR (default $HOME/.cache/glint/target)
#   BENCH_GLINT_BIN=/path/to/glint   benchmark that binary instead of building (skips cargo)
set -euo pipefail

THREADS=${BENCH_THREADS:-2}
CONNS=${BENCH_CONNS:-32}
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}
IMAGES=${BENCH_IMAGES:-1000}
PAGE=${BENCH_PAGE:-100}
BACKENDS=${BENCH_BACKENDS:-sqlite postgres}
WANT_NGINX=${BENCH_NGINX:-1}
PG_HOST=${BENCH_PG_HOST:-127.0.0.1}
PG_PORT=${BENCH_PG_PORT:-5432}
PG_USER=${BENCH_PG_USER:-postgres}
PG_DB="glint_bench_$$"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/glint/target}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GLINT=${BENCH_GLINT_BIN:-$CARGO_TARGET_DIR/release/glint}

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---------------------------------------------------------------- cleanup -------------
TMP=""
PIDS=()          # every process this script started and must stop
PG_CREATED=0


cleanup() {
    local rc=$? pid
    set +e
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if (( PG_CREATED )); then
        psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -qAt \
            -c "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null 2>&1 \
            && log "dropped database $PG_DB" || log "WARNING: could not drop database $PG_DB"
    fi
    [[ -n $TMP && -d $TMP ]] && rm -rf -- "$TMP"
    exit "$rc"
}
on_exit cleanup

# ---------------------------------------------------------------- tools ---------------
need_tools curl jq
if ! command -v wrk >/dev/null; then
    log "installing wrk from Debian"
    apt_install wrk || die "cannot install wrk"
fi
NGINX=""
if [[ $WANT_NGINX == 1 ]]; then
    find_nginx "reference only"
    [[ -n $NGINX ]] || log "the nginx reference is skipped"
fi
if [[ " $BACKENDS " == *" postgres "* ]]; then
    command -v psql >/dev/null || die "psql is needed for the postgres backend"
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/glint-bench.XXXXXX")
chmod 755 "$TMP"   # nginx workers (user nobody) read the static files under it

# ---------------------------------------------------------------- build ---------------
# What the binary was built from (the tree may move under us while we measure).
REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')
if [[ -z ${BENCH_GLINT_BIN:-} ]]; then
    log "cargo build --release --bin glint (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$ROOT" && cargo build --release --bin glint) >&2 || die "cargo build failed"
else
    log "using BENCH_GLINT_BIN=$GLINT (no build)"
fi
[[ -x $GLINT ]] || die "no binary at $GLINT"

# ---------------------------------------------------------------- helpers -------------


expect_200() {   # expect_200 URL: the preflight for each wrk target (wrk only counts >399)
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' "$1")
    [[ $code == 200 ]] || die "preflight GET $1 answered $code, not 200"
}

# wrk's summary as one parseable line (latency percentiles in microseconds)
cat >"$TMP/report.lua" <<'LUA'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d bytes=%d p50_us=%d p99_us=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
LUA

# cycle_lua FILE PATH...: a wrk script that requests the paths round-robin (per thread)
cycle_lua() {
    local out=$1; shift
    {
        echo "local paths = {"
        local p
        for p in "$@"; do
            [[ $p != *[\"\\]* ]] || die "unexpected quote or backslash in $p"
            printf '  "%s",\n' "$p"
        done
        echo "}"
        echo "local i = 0"
        echo "request = function()"
        echo "  i = i % #paths + 1"
        echo "  return wrk.format(\"GET\", paths[i])"
        echo "end"
        cat "$TMP/report.lua"
    } >"$out"
}

ROWS=()          # "group|workload|rps|p50ms|p99ms|bytes_per_resp|errors|load1|divisor"
declare -A RPS   # key -> req/s, for the ratios
FAILED=0
RUSTC_SEEN=0
RUNS=0

# run_wrk KEY GROUP WORKLOAD URL LUA [DIVISOR]
run_wrk() {
    local key=$1 group=$2 workload=$3 url=$4 lua=$5 div=${6:-}
    local out="$TMP/wrk-$key.txt" load1 rustc
    wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" -s "$lua" "$url" >/dev/null 2>&1 || true
    load1=$(cut -d' ' -f1 /proc/loadavg)
    rustc=$(pgrep -c -x rustc 2>/dev/null || true)
    RUNS=$((RUNS + 1))
    if (( ${rustc:-0} > 0 )); then RUSTC_SEEN=$((RUSTC_SEEN + 1)); fi
    log "wrk -t$THREADS -c$CONNS -d$DURATION $url  ($workload; load1=$load1, rustc procs=${rustc:-0})"
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --timeout 5s -s "$lua" "$url" >"$out" 2>&1 \
        || { cat "$out" >&2; die "wrk failed"; }
    grep -v '^RESULT' "$out" | sed 's/^/    /' >&2
    local line; line=$(grep '^RESULT' "$out") || die "no RESULT line from wrk"
    local requests duration_us bytes p50_us p99_us connect read write status timeout
    eval "$(sed 's/^RESULT //; s/ /;/g' <<<"$line")"
    local errs=$((connect + read + write + status + timeout))
    if (( errs > 0 )) || grep -q 'Non-2xx' "$out"; then
        FAILED=1
        log "FAILURE: $workload: connect=$connect read=$read write=$write status(non-2xx/3xx)=$status timeout=$timeout"
    fi
    local rps; rps=$(awk -v r="$requests" -v d="$duration_us" 'BEGIN{printf "%.1f", r / (d / 1e6)}')
    RPS[$key]=$rps
    ROWS+=("$group|$workload|$rps|$(awk -v v="$p50_us" 'BEGIN{printf "%.2f", v/1000}')|$(awk -v v="$p99_us" 'BEGIN{printf "%.2f", v/1000}')|$(( requests > 0 ? bytes / requests : 0 ))|connect=$connect read=$read write=$write non2xx=$status timeout=$timeout|$load1|$div|$key")
}

# ---------------------------------------------------------------- one backend ---------
SERVER_PID=""
NGINX_IMAGE=""   # bodies saved from the first backend, served by nginx later
NGINX_PAGES=()

bench_backend() {
    local backend=$1 dir="$TMP/$1" url port base
    mkdir -p "$dir"
    case $backend in
        sqlite) url="sqlite://$dir/glint.db?mode=rwc" ;;
        postgres)
            psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -qAt \
                -c "CREATE DATABASE \"$PG_DB\"" >/dev/null
            PG_CREATED=1
            url="postgres://$PG_USER@$PG_HOST:$PG_PORT/$PG_DB" ;;
        *) die "unknown backend $backend" ;;
    esac
    port=$(free_port)
    base="http://127.0.0.1:$port"
    log "[$backend] glint serve on $base"
    (cd "$dir" && exec env RUST_LOG=warn GLINT__SERVER__BIND="127.0.0.1:$port" \
        GLINT__DATABASE__URL="$url" "$GLINT" serve) >"$dir/glint.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    wait_http "$base/healthcheck" "$SERVER_PID" "$dir/glint.log"

    log "[$backend] seeding $IMAGES images (4 parallel curls)"
    local t0=$SECONDS codes
    codes=$(seq -f 'img-%04g' 1 "$IMAGES" | xargs -P4 -I{} curl -s -o /dev/null -w '%{http_code}\n' \
        -X POST "$base/v2/images" -H 'Content-Type: application/json' \
        -d '{"name":"{}","disk_format":"qcow2","container_format":"bare","os_distro":"cirros","tags":["bench"]}' \
        | sort | uniq -c | tr -s ' ' | tr '\n' ';')
    [[ $codes == " $IMAGES 201;" ]] || die "[$backend] seeding answered: $codes (want $IMAGES x 201)"
    log "[$backend] seeded in $((SECONDS - t0)) s"

    # Walk the `next` links once: the listing must be exactly IMAGES/PAGE full pages.
    local next="/v2/images?limit=$PAGE" total=0 n i=0 pages=()
    while [[ -n $next && $total -lt $IMAGES ]]; do
        curl -sf "$base$next" >"$dir/page-$i.json" || die "[$backend] GET $next failed"
        n=$(jq '.images | length' "$dir/page-$i.json")
        (( n > 0 )) || break
        pages+=("$next")
        total=$((total + n))
        next=$(jq -r '.next // empty' "$dir/page-$i.json")
        i=$((i + 1))
    done
    (( total == IMAGES && ${#pages[@]} == (IMAGES + PAGE - 1) / PAGE )) \
        || die "[$backend] walking next gave $total images in ${#pages[@]} pages"
    local id mid=$(( ${#pages[@]} / 2 ))
    id=$(jq -r '.images[0].id' "$dir/page-$mid.json")
    curl -sf "$base/v2/images/$id" >"$dir/image.json" || die "[$backend] GET image $id failed"
    log "[$backend] ${#pages[@]} pages ($(stat -c %s "$dir/page-0.json") bytes first page); image $id ($(stat -c %s "$dir/image.json") bytes)"

    for u in "/healthcheck" "/v2/images/$id" "${pages[@]}"; do expect_200 "$base$u"; done
    cycle_lua "$dir/pages.lua" "${pages[@]}"

    run_wrk "$backend-health" "$backend" "GET /healthcheck" "$base/healthcheck" "$TMP/report.lua"
    run_wrk "$backend-image" "$backend" "GET /v2/images/{id}" "$base/v2/images/$id" "$TMP/report.lua"
    run_wrk "$backend-list" "$backend" "GET /v2/images?limit=$PAGE (${#pages[@]} pages cycled)" \
        "$base/" "$dir/pages.lua" "${#pages[@]}"

    stop_pid "$SERVER_PID"
    if grep -qiE 'error|panic' "$dir/glint.log"; then
        log "[$backend] WARNING: server log has errors:"; grep -iE 'error|panic' "$dir/glint.log" | head -20 >&2
    fi
    if [[ -z $NGINX_IMAGE ]]; then
        NGINX_IMAGE="$dir/image.json"
        for ((i = 0; i < ${#pages[@]}; i++)); do NGINX_PAGES+=("$dir/page-$i.json"); done
    fi
}

# ---------------------------------------------------------------- nginx reference -----
bench_nginx() {
    local dir="$TMP/nginx" port base i
    mkdir -p "$dir/www" "$dir/tmp" && chmod 755 "$dir" "$dir/www"
    cp "$NGINX_IMAGE" "$dir/www/image.json"
    local paths=()
    for i in "${!NGINX_PAGES[@]}"; do
        cp "${NGINX_PAGES[$i]}" "$dir/www/page-$i.json"; paths+=("/page-$i.json")
    done
    chmod 644 "$dir"/www/*
    port=$(free_port)
    base="http://127.0.0.1:$port"
    cat >"$dir/nginx.conf" <<EOF
daemon off;
worker_processes $(nproc);
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    default_type application/json;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    server {
        listen 127.0.0.1:$port;
        root $dir/www;
    }
}
EOF
    log "[nginx] throwaway instance on $base"
    "$NGINX" -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" >"$dir/stdout.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_http "$base/image.json" "$pid" "$dir/error.log"
    for i in /image.json "${paths[@]}"; do expect_200 "$base$i"; done
    cycle_lua "$dir/pages.lua" "${paths[@]}"
    run_wrk "nginx-image" "nginx" "static image JSON" "$base/image.json" "$TMP/report.lua"
    run_wrk "nginx-list" "nginx" "static $PAGE-image page JSONs (${#paths[@]} cycled)" \
        "$base/" "$dir/pages.lua" "${#paths[@]}"
    stop_pid "$pid"
}

# ---------------------------------------------------------------- main ----------------
log "$(nproc) cores; wrk -t$THREADS -c$CONNS -d$DURATION (warm-up $WARMUP); $IMAGES images, pages of $PAGE"
for b in $BACKENDS; do bench_backend "$b"; done
if [[ -n $NGINX && -n $NGINX_IMAGE ]]; then bench_nginx; fi

{
    echo
    echo "Glint API benchmark — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores shared by wrk and the server," \
         "wrk -t$THREADS -c$CONNS -d$DURATION, $IMAGES images, tree $REV at build time"
    echo
    echo "| backend | workload | req/s | p50 ms | p99 ms | bytes/resp | full $IMAGES-image listings/s | vs /healthcheck (same server) | vs nginx static (same bytes) | load1 at start |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for row in "${ROWS[@]}"; do
        IFS='|' read -r group workload rps p50 p99 bpr errs load1 div key <<<"$row"
        listings="-"; [[ -n $div ]] && listings=$(awk -v r="$rps" -v d="$div" 'BEGIN{printf "%.1f", r / d}')
        vs_health="-"; vs_nginx="-"
        case $key in
            *-health) vs_health="1.00"; vs_nginx=$(ratio "$rps" "${RPS[nginx-image]:-}") ;;
            nginx-*) ;;
            *-image) vs_health=$(ratio "$rps" "${RPS[$group-health]:-}"); vs_nginx=$(ratio "$rps" "${RPS[nginx-image]:-}") ;;
            *-list) vs_health=$(ratio "$rps" "${RPS[$group-health]:-}"); vs_nginx=$(ratio "$rps" "${RPS[nginx-list]:-}") ;;
        esac
        [[ $errs == "connect=0 read=0 write=0 non2xx=0 timeout=0" ]] || workload="$workload **ERRORS: $errs**"
        echo "| $group | $workload | $rps | $p50 | $p99 | $bpr | $listings | $vs_health | $vs_nginx | $load1 |"
    done
    echo
    echo "Ratios are req/s divided by the reference's req/s. /healthcheck's nginx ratio is against the static image JSON."
    echo "bytes/resp includes headers. Runs started while rustc was compiling on this machine: $RUSTC_SEEN of $RUNS."
    if (( FAILED )); then echo "**FAILED: some run saw socket errors or non-2xx/3xx responses (see stderr).**"; fi
    if [[ -z $NGINX ]]; then echo "nginx reference skipped (not installed)."; fi
}
exit $(( FAILED ))

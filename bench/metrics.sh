#!/usr/bin/env bash
# What metrics and access logs cost: requests/s of GET /v2/images/{id} on loopback with both
# on (the defaults: [metrics] enabled, one access line per request at info, written to a file)
# against both off ([metrics] enabled = false, RUST_LOG=warn). Two `glint serve` processes on
# SQLite, one image each; wrk alternates between them for BENCH_ROUNDS rounds so drift in the
# machine's load hits both alike.
#
# Results: a markdown table on stdout (per round and the ratio of the sums), with the server's
# CPU time per request beside requests/s: on a busy machine the latter swings with whatever
# else runs, the former much less. Progress on stderr.
#
# Knobs (environment):
#   BENCH_THREADS=2 BENCH_CONNS=32 BENCH_DURATION=10s BENCH_WARMUP=2s BENCH_ROUNDS=3
#   CARGO_TARGET_DIR (default $HOME/.cache/glint/target)
#   BENCH_GLINT_BIN=/path/to/glint   benchmark that binary instead of building (skips cargo)
set -euo pipefail

THREADS=${BENCH_THREADS:-2}
CONNS=${BENCH_CONNS:-32}
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}
ROUNDS=${BENCH_ROUNDS:-3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/glint/target}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GLINT=${BENCH_GLINT_BIN:-$CARGO_TARGET_DIR/release/glint}

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TMP=""
PIDS=()
cleanup() {
    local rc=$? pid
    set +e
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    [[ -n $TMP && -d $TMP ]] && rm -rf -- "$TMP"
    exit "$rc"
}
on_exit cleanup

need_tools curl jq
command -v wrk >/dev/null || apt_install wrk || die "cannot install wrk"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/glint-bench-metrics.XXXXXX")

REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')
if [[ -z ${BENCH_GLINT_BIN:-} ]]; then
    log "cargo build --release --bin glint (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$ROOT" && cargo build --release --bin glint) >&2 || die "cargo build failed"
fi
[[ -x $GLINT ]] || die "no binary at $GLINT"

cat >"$TMP/report.lua" <<'LUA'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_us=%d errors=%d\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout))
end
LUA

# start NAME ENV...: glint serve in $TMP/NAME with ENV; sets URL to its image's URL
start() {
    local name=$1 dir="$TMP/$1" port base id
    shift
    mkdir -p "$dir"
    port=$(free_port)
    base="http://127.0.0.1:$port"
    (cd "$dir" && exec env "$@" GLINT__SERVER__BIND="127.0.0.1:$port" \
        GLINT__DATABASE__URL="sqlite://$dir/glint.db?mode=rwc" "$GLINT" serve) >"$dir/glint.log" 2>&1 &
    PIDS+=("$!")
    PID=$!
    wait_http "$base/healthcheck" "$!" "$dir/glint.log"
    id=$(curl -sf -X POST "$base/v2/images" -H 'Content-Type: application/json' \
        -d '{"name":"bench","disk_format":"qcow2","container_format":"bare","os_distro":"cirros","tags":["bench"]}' \
        | jq -r .id)
    curl -sf -o /dev/null "$base/v2/images/$id" || die "[$name] GET /v2/images/$id failed"
    URL="$base/v2/images/$id"
}

start on RUST_LOG=info GLINT__METRICS__ENABLED=true
ON_URL=$URL
ON_PID=$PID
start off RUST_LOG=warn GLINT__METRICS__ENABLED=false
OFF_URL=$URL
OFF_PID=$PID
TICK=$(getconf CLK_TCK)
curl -sf "${ON_URL%%/v2/*}/metrics" | grep -q '^glint_http_requests_total' || die "metrics are not on"
[[ $(curl -s -o /dev/null -w '%{http_code}' "${OFF_URL%%/v2/*}/metrics") != 200 ]] || die "metrics are not off"

ratio3() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.3f", a / b; else print "-" }'; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

measure() {   # measure URL PID -> "req/s cpu_us_per_request" (dies on any wrk error)
    local out="$TMP/wrk.txt" line requests duration_us errors before after
    wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" "$1" >/dev/null 2>&1 || true
    before=$(cpu_ticks "$2")
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --timeout 5s -s "$TMP/report.lua" "$1" >"$out" 2>&1 \
        || { cat "$out" >&2; die "wrk failed"; }
    after=$(cpu_ticks "$2")
    line=$(grep '^RESULT' "$out") || die "no RESULT line from wrk"
    eval "$(sed 's/^RESULT //; s/ /;/g' <<<"$line")"
    (( errors == 0 )) || die "wrk saw $errors errors on $1"
    awk -v r="$requests" -v d="$duration_us" -v t=$((after - before)) -v hz="$TICK" \
        'BEGIN{printf "%.1f %.1f", r / (d / 1e6), t / hz * 1e6 / r}'
}

echo "## GET /v2/images/{id}: metrics + access logs on vs off ($REV, wrk -t$THREADS -c$CONNS -d$DURATION, $(nproc) cores)"
echo
echo "| round | on (req/s) | off (req/s) | on/off | on (CPU µs/req) | off (CPU µs/req) | on/off |"
echo "|---|---|---|---|---|---|---|"
SUM_ON=0; SUM_OFF=0; CPU_ON=0; CPU_OFF=0
add() { awk -v a="$1" -v b="$2" 'BEGIN{print a + b}'; }
for round in $(seq "$ROUNDS"); do
    log "round $round: on"
    read -r on on_cpu <<<"$(measure "$ON_URL" "$ON_PID")"
    log "round $round: off"
    read -r off off_cpu <<<"$(measure "$OFF_URL" "$OFF_PID")"
    [[ -n ${on_cpu:-} && -n ${off_cpu:-} ]] || die "round $round: a measurement failed"
    echo "| $round | $on | $off | $(ratio3 "$on" "$off") | $on_cpu | $off_cpu | $(ratio3 "$on_cpu" "$off_cpu") |"
    SUM_ON=$(add "$SUM_ON" "$on"); SUM_OFF=$(add "$SUM_OFF" "$off")
    CPU_ON=$(add "$CPU_ON" "$on_cpu"); CPU_OFF=$(add "$CPU_OFF" "$off_cpu")
done
mean() { awk -v s="$1" -v n="$ROUNDS" 'BEGIN{printf "%.1f", s / n}'; }
echo "| mean | $(mean "$SUM_ON") | $(mean "$SUM_OFF") | $(ratio3 "$SUM_ON" "$SUM_OFF") | $(mean "$CPU_ON") | $(mean "$CPU_OFF") | $(ratio3 "$CPU_ON" "$CPU_OFF") |"
echo
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
lines=$(grep -c 'glint::access' "$TMP/on/glint.log" || true)
echo
echo "The 'on' server wrote $lines access lines to its log file."

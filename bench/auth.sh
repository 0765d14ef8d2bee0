#!/usr/bin/env bash
# What Keystone validation costs: requests/s of GET /v2/images/{id} on `glint serve` (SQLite)
#   * no-auth (the embedded default: no identity at all)          - the reference;
#   * keystone mode, warm token cache (cache_ttl = 300)           - the normal case;
#   * keystone mode, no cache (cache_ttl = 0: Keystone asked on every request).
# Keystone is the real one from pip (tests/integration/support/keystone_server.py, SQLite,
# fernet), on loopback; its venv is $GLINT_KEYSTONE_VENV or ~/.cache/glint/keystone-venv
# (installed if missing).
#
# Results: a markdown table on stdout; progress and raw wrk output on stderr.
# Knobs: BENCH_THREADS=2 BENCH_CONNS=32 BENCH_NOCACHE_CONNS=4 BENCH_DURATION=10s BENCH_WARMUP=2s,
#        CARGO_TARGET_DIR,
#        BENCH_GLINT_BIN=/path/to/glint (skip the build).
set -euo pipefail

THREADS=${BENCH_THREADS:-2}
CONNS=${BENCH_CONNS:-32}
NOCACHE_CONNS=${BENCH_NOCACHE_CONNS:-4}
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/glint/target}
KEYSTONE_VENV=${GLINT_KEYSTONE_VENV:-$HOME/.cache/glint/keystone-venv}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GLINT=${BENCH_GLINT_BIN:-$CARGO_TARGET_DIR/release/glint}

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/glint-bench-auth.XXXXXX")
PIDS=()
cleanup() {
    local rc=$? pid
    set +e
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    rm -rf -- "$TMP"
    exit "$rc"
}
on_exit cleanup

need_tools curl jq wrk
if [[ ! -x $KEYSTONE_VENV/bin/keystone-manage ]]; then
    log "installing keystone into $KEYSTONE_VENV"
    python3 -m venv "$KEYSTONE_VENV"
    "$KEYSTONE_VENV/bin/pip" install -q keystone
fi
if [[ -z ${BENCH_GLINT_BIN:-} ]]; then
    log "cargo build --release --bin glint"
    (cd "$ROOT" && cargo build --release --bin glint) >&2 || die "cargo build failed"
fi
[[ -x $GLINT ]] || die "no binary at $GLINT"

# ---------------------------------------------------------------- keystone ------------
mkdir -p "$TMP/keystone"
"$KEYSTONE_VENV/bin/python" "$ROOT/tests/integration/support/keystone_server.py" "$TMP/keystone" \
    >"$TMP/keystone.out" 2>"$TMP/keystone.log" &
PIDS+=($!)
for _ in $(seq 600); do grep -q '^port ' "$TMP/keystone.out" && break; sleep 0.1; done
KS_PORT=$(awk '/^port /{print $2}' "$TMP/keystone.out")
[[ -n $KS_PORT ]] || { tail -20 "$TMP/keystone.log" >&2; die "keystone did not start"; }
KS=http://127.0.0.1:$KS_PORT/v3
log "keystone at $KS"

token() {  # token USER PASSWORD PROJECT: a project-scoped token
    curl -sf -D - -o /dev/null -H 'Content-Type: application/json' "$KS/auth/tokens?nocatalog" -d "$(jq -n \
        --arg u "$1" --arg p "$2" --arg proj "$3" '{auth: {identity: {methods: ["password"], password: {user:
        {name: $u, domain: {id: "default"}, password: $p}}}, scope: {project: {name: $proj, domain: {id: "default"}}}}}')" \
        | awk 'tolower($1) == "x-subject-token:" {print $2}' | tr -d '\r'
}
ADMIN=$(token admin secret admin)
ks() {  # ks METHOD PATH [JSON]: an admin call, its JSON body
    curl -sf -X "$1" -H "X-Auth-Token: $ADMIN" -H 'Content-Type: application/json' "$KS$2" ${3:+-d "$3"}
}
role_id() { ks GET "/roles?name=$1" | jq -r '.roles[0].id // empty'; }
SERVICE_ROLE=$(role_id service)
[[ -n $SERVICE_ROLE ]] || SERVICE_ROLE=$(ks POST /roles '{"role": {"name": "service"}}' | jq -r .role.id)
MEMBER_ROLE=$(role_id member)
for name in service bench; do
    id=$(ks POST /projects "{\"project\": {\"name\": \"$name\", \"domain_id\": \"default\"}}" | jq -r .project.id)
    user=$(ks POST /users "{\"user\": {\"name\": \"$name-user\", \"password\": \"pw\", \"domain_id\": \"default\"}}" | jq -r .user.id)
    role=$([[ $name == service ]] && echo "$SERVICE_ROLE" || echo "$MEMBER_ROLE")
    ks PUT "/projects/$id/users/$user/roles/$role" >/dev/null
done
BENCH_TOKEN=$(token bench-user pw bench)

# ---------------------------------------------------------------- one server ----------
declare -A RPS P50 P99 CONNS_OF
cat >"$TMP/report.lua" <<'LUA'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
LUA

# measure KEY CONNS HEADER ENV...: start glint serve with ENV, create one image, wrk GET it
# with HEADER over CONNS connections
measure() {
    local key=$1 conns=$2 header=$3; shift 3
    local dir="$TMP/$key" port pid id out
    mkdir -p "$dir"
    port=$(free_port)
    (cd "$dir" && exec env GLINT__SERVER__BIND="127.0.0.1:$port" GLINT__DATABASE__URL="sqlite://$dir/glint.db?mode=rwc" \
        RUST_LOG=warn "$@" "$GLINT" serve >"$dir/glint.log" 2>&1) &
    pid=$!
    PIDS+=("$pid")
    wait_http "http://127.0.0.1:$port/healthcheck" "$pid" "$dir/glint.log"
    id=$(curl -sf -H "$header" -H 'Content-Type: application/json' "http://127.0.0.1:$port/v2/images" \
        -d '{"name": "bench", "visibility": "private"}' | jq -r .id)
    [[ -n $id && $id != null ]] || die "$key: could not create the image"
    url="http://127.0.0.1:$port/v2/images/$id"
    [[ $(curl -s -o /dev/null -w '%{http_code}' -H "$header" "$url") == 200 ]] || die "$key: GET $url is not 200"
    wrk -t"$THREADS" -c"$conns" -d"$WARMUP" -H "$header" "$url" >/dev/null 2>&1 || true
    log "wrk -t$THREADS -c$conns -d$DURATION GET /v2/images/{id} ($key; load1=$(cut -d' ' -f1 /proc/loadavg))"
    out=$(wrk -t"$THREADS" -c"$conns" -d"$DURATION" --timeout 5s -H "$header" -s "$TMP/report.lua" "$url")
    grep -v '^RESULT' <<<"$out" | sed 's/^/    /' >&2
    local requests duration_us p50_us p99_us errors
    eval "$(grep '^RESULT' <<<"$out" | sed 's/^RESULT //; s/ /;/g')"
    (( errors == 0 )) || die "$key: $errors errors or non-2xx answers"
    CONNS_OF[$key]=$conns
    RPS[$key]=$(awk -v r="$requests" -v d="$duration_us" 'BEGIN{printf "%.0f", r / (d / 1e6)}')
    P50[$key]=$(awk -v v="$p50_us" 'BEGIN{printf "%.2f", v/1000}')
    P99[$key]=$(awk -v v="$p99_us" 'BEGIN{printf "%.2f", v/1000}')
    stop_pid "$pid"
}

KEYSTONE_ENV=(GLINT__AUTH__MODE=keystone GLINT__AUTH__KEYSTONE__AUTH_URL="$KS"
    GLINT__AUTH__KEYSTONE__USERNAME=service-user GLINT__AUTH__KEYSTONE__PASSWORD=pw
    GLINT__AUTH__KEYSTONE__PROJECT_NAME=service)
# No-auth as `glint serve` runs by default: no identity headers, the anonymous admin.
measure noauth "$CONNS" "Accept: application/json" GLINT__AUTH__MODE=noauth
measure keystone "$CONNS" "X-Auth-Token: $BENCH_TOKEN" "${KEYSTONE_ENV[@]}"
# Without the cache every request waits for Keystone (one Python process here), which drowns
# under 32 connections: fewer, so that the figure is its throughput rather than timeouts.
measure keystone_nocache "$NOCACHE_CONNS" "X-Auth-Token: $BENCH_TOKEN" "${KEYSTONE_ENV[@]}" GLINT__AUTH__KEYSTONE__CACHE_TTL=0

REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')
echo "GET /v2/images/{id}, glint serve (SQLite), wrk -t$THREADS -d$DURATION, $(nproc) cores, rev $REV"
echo
echo "| auth | connections | req/s | p50 ms | p99 ms | vs no-auth |"
echo "|---|---|---|---|---|---|"
for key in noauth keystone keystone_nocache; do
    ratio=$(awk -v a="${RPS[$key]}" -v b="${RPS[noauth]}" 'BEGIN{printf "%.2fx", a / b}')
    echo "| $key | ${CONNS_OF[$key]} | ${RPS[$key]} | ${P50[$key]} | ${P99[$key]} | $ratio |"
done

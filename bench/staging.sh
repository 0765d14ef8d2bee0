#!/usr/bin/env bash
# Benchmark of glance-direct without a second pass, conversion without a staged copy, and
# sparse storage (issue #19 item 2, issue #16 items 3 and 4).
#
# It starts `glint serve` (SQLite, filesystem store ./data/images and staging ./data/staging on
# one filesystem) and measures, each figure checked against md5sum of the same bytes:
#   (a) glance-direct of a BENCH_MIB MiB raw image of random bytes, BENCH_ROUNDS times:
#       the stage (PUT .../stage), the import step (POST .../import -> `active`, polled every
#       10 ms) and their total; a plain PUT .../file of the same file beside it as reference.
#   (b) a qcow2 of BENCH_MIB MiB virtual size, 60% of it random data, imported by glance-direct
#       with `conversion_output_format = "raw"`: the peak of the staging directory's allocated
#       bytes (du, sampled every 20 ms from the stage's end to `active`) against the source's.
#   (c) a raw disk of BENCH_SPARSE_GIB GiB holding BENCH_SPARSE_DATA_MIB MiB of random data,
#       uploaded with PUT .../file: the stored file's allocated bytes (st_blocks * 512).
# Run it with BENCH_GLINT_BIN of the build before a change and after it to compare.
#
# Knobs (environment):
#   BENCH_GLINT_BIN=/path/to/glint   benchmark that binary instead of building the release one
#   BENCH_MIB=1024 BENCH_ROUNDS=3    image size of (a) and (b), rounds of (a)
#   BENCH_SPARSE_GIB=8 BENCH_SPARSE_DATA_MIB=100   (c); BENCH_SPARSE_GIB=0 skips it
#   BENCH_PARTS="a b c"              which parts to run
#   BENCH_TMP=/var/tmp               where the temp dir goes (needs room for the sparse disk's data)
#   CARGO_TARGET_DIR (default $HOME/.cache/glint/target)
# Results: a markdown table on stdout; progress on stderr. Exit status 1 if any import failed
# or stored other bytes.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"

MIB=${BENCH_MIB:-1024}
ROUNDS=${BENCH_ROUNDS:-3}
SPARSE_GIB=${BENCH_SPARSE_GIB:-8}
SPARSE_DATA_MIB=${BENCH_SPARSE_DATA_MIB:-100}
PARTS=${BENCH_PARTS:-a b c}

need_tools curl jq qemu-img md5sum du
if [[ -n ${BENCH_GLINT_BIN:-} ]]; then
    GLINT=$BENCH_GLINT_BIN
else
    log "building the release binary"
    (cd "$HERE/.." && cargo build --release -q -p glint)
    GLINT=${CARGO_TARGET_DIR:-$HOME/.cache/glint/target}/release/glint
fi
[[ -x $GLINT ]] || die "no glint binary at $GLINT"

TMP=$(mktemp -d "${BENCH_TMP:-/var/tmp}/glint-bench-staging.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    rm -rf "$TMP"
}
on_exit cleanup

FAILED=0
fail() { FAILED=1; log "FAILURE: $*"; }
declare -a ROWS=()
row() { ROWS+=("| $1 | $2 |"); log "$1: $2"; }

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", b - a}'; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR]=$1} END{print (NR ? v[int((NR+1)/2)] : "-")}'; }

# start_glint NAME [VAR=VALUE...]: a fresh `glint serve` in $TMP/NAME; sets GDIR and GBASE.
start_glint() {
    local name=$1 port
    shift
    GDIR="$TMP/$name"
    mkdir -p "$GDIR"
    port=$(free_port)
    GBASE="http://127.0.0.1:$port"
    (cd "$GDIR" && exec env RUST_LOG=warn GLINT__SERVER__BIND="127.0.0.1:$port" \
        GLINT__DATABASE__URL="sqlite://$GDIR/glint.db?mode=rwc" "$@" "$GLINT" serve) >"$GDIR/glint.log" 2>&1 &
    GPID=$!
    PIDS+=("$GPID")
    wait_http "$GBASE/healthcheck" "$GPID" "$GDIR/glint.log"
}

create_image() { # create_image DISK_FORMAT -> id
    curl -sS -f -X POST "$GBASE/v2/images" -H 'Content-Type: application/json' \
        -d "{\"name\":\"bench\",\"disk_format\":\"$1\",\"container_format\":\"bare\"}" | jq -er .id
}

show() { curl -sS -f "$GBASE/v2/images/$1"; }

# send METHOD ID WHAT FILE: PUT FILE to /v2/images/ID/WHAT, expecting 204.
send() {
    local code
    code=$(curl -sS -o "$TMP/body" -w '%{http_code}' -X PUT -H 'Content-Type: application/octet-stream' \
        -T "$4" "$GBASE/v2/images/$2/$3")
    [[ $code == 204 ]] || fail "PUT $3 answered $code: $(head -c 300 "$TMP/body")"
}

start_import() {
    local code
    code=$(curl -sS -o "$TMP/body" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
        -d '{"method":{"name":"glance-direct"}}' "$GBASE/v2/images/$1/import")
    [[ $code == 202 ]] || fail "POST import answered $code: $(head -c 300 "$TMP/body")"
}

wait_active() { # wait_active ID: polls every 10 ms, 10 minutes at most
    local status i
    for i in $(seq 60000); do
        status=$(show "$1" | jq -r .status)
        case $status in
            active) return 0 ;;
            queued) fail "import of $1 failed: $(curl -sS "$GBASE/v2/images/$1/tasks" | jq -c '.tasks[0].message')"; return 1 ;;
        esac
        sleep 0.01
    done
    fail "import of $1 did not finish"
    return 1
}

check_digest() { # check_digest ID FILE: the image's checksum is md5sum of FILE
    local want got
    want=$(md5sum "$2" | cut -d' ' -f1)
    got=$(show "$1" | jq -r .checksum)
    [[ $got == "$want" ]] || fail "image $1 has checksum $got, md5sum says $want"
}

allocated() { du -sB1 "$1" | cut -f1; }

# ---------------------------------------------------------------- (a) ------------------
part_a() {
    local file="$TMP/random.raw" id t0 t1 t2 stage=() import=() total=() put=()
    head -c "$((MIB << 20))" /dev/urandom >"$file"
    start_glint a
    for _ in $(seq "$ROUNDS"); do
        id=$(create_image raw)
        t0=$(now); send PUT "$id" stage "$file"; t1=$(now)
        start_import "$id"; wait_active "$id" || continue; t2=$(now)
        check_digest "$id" "$file"
        stage+=("$(secs "$t0" "$t1")"); import+=("$(secs "$t1" "$t2")"); total+=("$(secs "$t0" "$t2")")
        curl -sS -o /dev/null -X DELETE "$GBASE/v2/images/$id"
        id=$(create_image raw)
        t0=$(now); send PUT "$id" file "$file"; t1=$(now)
        check_digest "$id" "$file"
        put+=("$(secs "$t0" "$t1")")
        curl -sS -o /dev/null -X DELETE "$GBASE/v2/images/$id"
    done
    row "(a) stage of $MIB MiB, median s (${stage[*]})" "$(echo "${stage[*]}" | median)"
    row "(a) import step of the staged $MIB MiB, median s (${import[*]})" "$(echo "${import[*]}" | median)"
    row "(a) stage + import, median s (${total[*]})" "$(echo "${total[*]}" | median)"
    row "(a) reference: PUT .../file of the same bytes, median s (${put[*]})" "$(echo "${put[*]}" | median)"
    stop_pid "$GPID"
    rm -f "$file"
}

# ---------------------------------------------------------------- (b) ------------------
part_b() {
    local plain="$TMP/plain.raw" image="$TMP/source.qcow2" id peak=0 now_bytes sampler source_bytes
    truncate -s "$((MIB << 20))" "$plain"
    # 60% of the disk in 8 MiB runs of random data (three runs in five), holes between them.
    local runs=$((MIB / 8)) r
    for r in $(seq 0 $((runs - 1))); do
        (( r % 5 < 3 )) || continue
        dd if=/dev/urandom of="$plain" bs=1M seek=$((r * 8)) count=8 conv=notrunc status=none
    done
    qemu-img convert -f raw -O qcow2 "$plain" "$image"
    source_bytes=$(allocated "$image")
    start_glint b GLINT__IMPORT__CONVERSION_OUTPUT_FORMAT=raw
    id=$(create_image qcow2)
    send PUT "$id" stage "$image"
    (
        while :; do
            allocated "$GDIR/data/staging" >>"$TMP/staging-samples" 2>/dev/null || true
            sleep 0.02
        done
    ) &
    sampler=$!
    PIDS+=("$sampler")
    start_import "$id"
    wait_active "$id" || true
    stop_pid "$sampler"
    peak=$(sort -g "$TMP/staging-samples" | tail -n 1)
    check_digest "$id" "$plain"
    row "(b) qcow2 -> raw import of $MIB MiB virtual: source allocated bytes" "$source_bytes"
    row "(b) peak staging bytes during the import (du, every 20 ms)" "$peak"
    row "(b) peak staging / source" "$(ratio "$peak" "$source_bytes")"
    row "(b) stored raw file: allocated bytes / apparent bytes" \
        "$(allocated "$GDIR/data/images/$id") / $(stat -c %s "$GDIR/data/images/$id")"
    stop_pid "$GPID"
    rm -f "$plain" "$image"
}

# ---------------------------------------------------------------- (c) ------------------
part_c() {
    local disk="$TMP/sparse.raw" id t0 t1 stored blocks
    truncate -s "$((SPARSE_GIB << 30))" "$disk"
    # The data: a 10 MiB head, the rest in 10 MiB pieces spread over the disk.
    local pieces=$((SPARSE_DATA_MIB / 10)) p
    for p in $(seq 0 $((pieces - 1))); do
        dd if=/dev/urandom of="$disk" bs=1M seek=$((p * (SPARSE_GIB << 10) / pieces)) count=10 conv=notrunc status=none
    done
    start_glint c
    id=$(create_image raw)
    t0=$(now); send PUT "$id" file "$disk"; t1=$(now)
    check_digest "$id" "$disk"
    stored="$GDIR/data/images/$id"
    blocks=$(stat -c '%b * %B' "$stored")
    row "(c) PUT of a $SPARSE_GIB GiB raw disk with $SPARSE_DATA_MIB MiB of data, s" "$(secs "$t0" "$t1")"
    row "(c) stored file: apparent bytes" "$(stat -c %s "$stored")"
    row "(c) stored file: allocated bytes (st_blocks * 512)" "$((blocks))"
    stop_pid "$GPID"
    rm -f "$disk"
}

log "glint: $GLINT; temp dir $TMP"
for part in $PARTS; do
    case $part in
        a) part_a ;;
        b) part_b ;;
        c) (( SPARSE_GIB > 0 )) && part_c ;;
        *) die "unknown part $part" ;;
    esac
done

echo "| figure | value |"
echo "|---|---|"
printf '%s\n' "${ROWS[@]}"
exit "$FAILED"

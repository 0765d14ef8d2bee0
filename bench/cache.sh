#!/usr/bin/env bash
# Loopback benchmark of the image cache: GET /v2/images/{id}/file of one image (1 GiB of random
# bytes) served from the API node's cache, from the filesystem store and from the S3 store.
#
# It starts moto_server (S3, from the test virtualenv as tests/integration/support/s3.rs does)
# and `glint serve` with two stores, `fs` (filesystem, the default) and `s3` (moto), and
# `[cache] enabled`. One image is uploaded into each store; the one in `fs` is then queued with
# PUT /v2/cache/{id} and prefetched. Each round, interleaved so a burst of load hits every
# contender alike, downloads with curl to /dev/null (page cache warm):
#   * cache      GET .../file                - served from the cache directory;
#   * fs         GET .../file?prefer=fs      - the same image, from the store (the cache is
#                                              bypassed when a request names its stores);
#   * s3         GET .../file?prefer=s3      - the other image, from moto;
#   * fs+fill    GET .../file of a second fs image after DELETE /v2/cache/{id}: the store read
#                                              that also fills the cache (the tee's cost).
# Every figure is the median of BENCH_RUNS runs; each body's md5 is checked once per contender.
#
# Results: a markdown table on stdout (MB/s and ratios to the cache); progress on stderr.
#
# Knobs (environment):
#   BENCH_SIZE=1G        image size (numfmt IEC syntax)
#   BENCH_RUNS=3         runs per figure (median)
#   CARGO_TARGET_DIR (default $HOME/.cache/glint/target)
#   BENCH_GLINT_BIN=/path/to/glint   benchmark that binary instead of building (skips cargo)
#   GLINT_TEST_VENV      the virtualenv with moto_server (default $HOME/.cache/glint/venv)
set -euo pipefail

SIZE_SPEC=${BENCH_SIZE:-1G}
RUNS=${BENCH_RUNS:-3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/glint/target}
VENV=${GLINT_TEST_VENV:-$HOME/.cache/glint/venv}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GLINT=${BENCH_GLINT_BIN:-$CARGO_TARGET_DIR/release/glint}

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer, got '$RUNS'"

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
MOTO=$VENV/bin/moto_server
[[ -x $MOTO ]] || MOTO=$(command -v moto_server || true)
[[ -n $MOTO && -x $MOTO ]] || die "moto_server not found (install 'moto[server]' into $VENV, as .ci/run does)"

SIZE=$(numfmt --from=iec "$SIZE_SPEC") || die "BENCH_SIZE '$SIZE_SPEC' is not a size"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/glint-bench-cache.XXXXXX")
# The file, two fs copies, one cached copy, moto's copy (in memory) and a partial fill.
AVAIL=$(df -B1 --output=avail "$TMP" | tail -n 1 | tr -d ' ')
(( AVAIL >= 5 * SIZE )) || die "$TMP has $(numfmt --to=iec "$AVAIL") free; this run needs 5 x $SIZE_SPEC"

REV="tree $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')"
if [[ -z ${BENCH_GLINT_BIN:-} ]]; then
    log "cargo build --release --bin glint (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$ROOT" && cargo build --release --bin glint) >&2 || die "cargo build failed"
else
    REV="prebuilt $GLINT"
fi
[[ -x $GLINT ]] || die "no binary at $GLINT"

FILE="$TMP/data.bin"
log "writing $SIZE_SPEC of random bytes"
head -c "$SIZE" /dev/urandom >"$FILE"
MD5=$(md5sum "$FILE" | cut -d' ' -f1)

MPORT=$(free_port)
"$MOTO" -H 127.0.0.1 -p "$MPORT" >"$TMP/moto.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$MPORT/" && break; sleep 0.1; done
curl -sf -X PUT -o /dev/null "http://127.0.0.1:$MPORT/glint-bench" || die "cannot create the moto bucket"

GDIR="$TMP/glint"
mkdir -p "$GDIR"
GPORT=$(free_port)
BASE="http://127.0.0.1:$GPORT"
log "glint serve on $BASE, stores fs and s3 (moto on $MPORT), cache in $GDIR/data/cache"
(cd "$GDIR" && exec env RUST_LOG=warn GLINT__SERVER__BIND="127.0.0.1:$GPORT" \
    GLINT__DATABASE__URL="sqlite://$GDIR/glint.db?mode=rwc" \
    GLINT__CACHE__ENABLED=true \
    GLINT__STORAGE__DEFAULT=fs \
    GLINT__STORAGE__BACKENDS__FS__TYPE=filesystem GLINT__STORAGE__BACKENDS__FS__PATH="$GDIR/fs" \
    GLINT__STORAGE__BACKENDS__S3__TYPE=s3 GLINT__STORAGE__BACKENDS__S3__BUCKET=glint-bench \
    GLINT__STORAGE__BACKENDS__S3__ENDPOINT="http://127.0.0.1:$MPORT" \
    GLINT__STORAGE__BACKENDS__S3__ACCESS_KEY_ID=testing GLINT__STORAGE__BACKENDS__S3__SECRET_ACCESS_KEY=testing \
    GLINT__STORAGE__BACKENDS__S3__ALLOW_HTTP=true \
    "$GLINT" serve) >"$GDIR/glint.log" 2>&1 &
GPID=$!
PIDS+=("$GPID")
wait_http "$BASE/healthcheck" "$GPID" "$GDIR/glint.log"

upload() {       # upload STORE -> image id
    local id
    id=$(curl -sf -X POST -H 'Content-Type: application/json' \
        -d '{"disk_format": "raw", "container_format": "bare"}' "$BASE/v2/images" | jq -r .id)
    curl -sf -X PUT -H 'Content-Type: application/octet-stream' -H "x-image-meta-store: $1" \
        -T "$FILE" "$BASE/v2/images/$id/file" || die "upload to $1 failed"
    echo "$id"
}
log "uploading into fs (twice) and s3"
FS_ID=$(upload fs)
FILL_ID=$(upload fs)
S3_ID=$(upload s3)

curl -sf -X PUT -o /dev/null "$BASE/v2/cache/$FS_ID" || die "queueing failed"
for _ in $(seq 600); do
    curl -sf "$BASE/v2/cache" | jq -e --arg id "$FS_ID" '.cached_images[] | select(.image_id == $id)' >/dev/null && break
    sleep 0.2
done
curl -sf "$BASE/v2/cache" | jq -e --arg id "$FS_ID" '.cached_images[] | select(.image_id == $id)' >/dev/null \
    || die "the image was not prefetched: $(tail -n 20 "$GDIR/glint.log")"

declare -A MBPS
FAILED=0
get() {          # get KEY URL: one timed download into /dev/null (its md5 checked on the first run)
    local seconds
    if [[ -z ${MBPS[$1]:-} ]]; then
        [[ $(curl -sf "$2" | md5sum | cut -d' ' -f1) == "$MD5" ]] || { FAILED=1; log "FAILURE: $1 md5"; }
    fi
    seconds=$(curl -sf -o /dev/null -w '%{time_total}' "$2") || { FAILED=1; log "FAILURE: $1"; return; }
    MBPS[$1]="${MBPS[$1]:-} $(awk -v b="$SIZE" -v s="$seconds" 'BEGIN{printf "%.1f", b / s / 1e6}')"
    log "  $1: ${MBPS[$1]##* } MB/s"
}
fill_once() {    # the download that fills the cache, after emptying it of that image
    local seconds
    curl -sf -X DELETE -o /dev/null "$BASE/v2/cache/$FILL_ID" || true
    seconds=$(curl -sf -o /dev/null -w '%{time_total}' "$BASE/v2/images/$FILL_ID/file") || { FAILED=1; return; }
    MBPS[fill]="${MBPS[fill]:-} $(awk -v b="$SIZE" -v s="$seconds" 'BEGIN{printf "%.1f", b / s / 1e6}')"
    log "  fs+fill: ${MBPS[fill]##* } MB/s"
    for _ in $(seq 300); do
        curl -sf "$BASE/v2/cache" | jq -e --arg id "$FILL_ID" '.cached_images[] | select(.image_id == $id)' >/dev/null && return
        sleep 0.2
    done
    log "note: the fill of run $r did not commit within 60 s (its writer fell behind and the copy was abandoned, or it is still writing)"
}

for r in $(seq "$RUNS"); do
    log "round $r/$RUNS"
    get cache "$BASE/v2/images/$FS_ID/file"
    get fs "$BASE/v2/images/$FS_ID/file?prefer=fs"
    get s3 "$BASE/v2/images/$S3_ID/file?prefer=s3"
    fill_once
done
HITS=$(curl -sf "$BASE/v2/cache" | jq --arg id "$FS_ID" '.cached_images[] | select(.image_id == $id) | .hits')

med() { printf '%s\n' $1 | sort -g | awk '{v[NR]=$1} END{ if (NR % 2) print v[(NR+1)/2]; else printf "%.1f\n", (v[NR/2]+v[NR/2+1])/2 }'; }
C=$(med "${MBPS[cache]}"); F=$(med "${MBPS[fs]}"); S=$(med "${MBPS[s3]}"); L=$(med "${MBPS[fill]:-0}")
cat <<EOF
### Image cache: GET of a $SIZE_SPEC image ($REV, $RUNS runs, median)

| served from | MB/s | cache / this |
|---|---:|---:|
| cache (local disk) | $C | 1.00 |
| filesystem store (?prefer=fs) | $F | $(ratio "$C" "$F") |
| S3 store, moto (?prefer=s3) | $S | $(ratio "$C" "$S") |
| filesystem store, filling the cache | $L | $(ratio "$C" "$L") |

Cache hits recorded for the cached image: $HITS (expected $RUNS plus 1 md5 check).
EOF
exit "$FAILED"

#!/usr/bin/env bash
# The RBD store's data path against Ceph's own command-line client on the same cluster: a
# one-node Ceph (tests/integration/support/ceph.sh: one mon, one mgr, one bluestore OSD on a
# sparse file) and `glint serve` (release, SQLite) with an rbd store as its only store, on loopback.
#
# Each round, interleaved so drift in the machine's load hits both alike, measures wall-clock:
#   * rbd import FILE                vs  curl -T FILE: PUT /v2/images/{id}/file (Content-Length)
#   * rbd export IMG - >/dev/null    vs  curl: GET /v2/images/{id}/file >/dev/null
# with the same object size on both sides (BENCH_OBJECT_MIB). Glint's upload also hashes (md5 +
# sha512), inspects, snapshots and protects; `rbd import` does none of that. Every upload's
# os_hash_value is checked against sha512sum. Figures are medians of the rounds. After the
# rounds, `rados bench` (16 writes/reads in flight, objects of the same size) shows the
# cluster's ceiling. The report also gives the cluster's set-up time.
#
# Knobs (environment):
#   BENCH_SIZE=1G         file size (numfmt IEC syntax)
#   BENCH_RUNS=3          rounds
#   BENCH_OBJECT_MIB=8    RBD object size (Glint's chunk_size, `rbd import --object-size`)
#   BENCH_RADOS_SECONDS=10  each `rados bench` phase; 0 skips it
#   CARGO_TARGET_DIR      (default $HOME/.cache/glint/target)
#   BENCH_GLINT_BIN=/path/to/glint   that binary instead of a release build
set -euo pipefail
SIZE_SPEC=${BENCH_SIZE:-1G}
RUNS=${BENCH_RUNS:-3}
OBJECT_MIB=${BENCH_OBJECT_MIB:-8}
RADOS_SECONDS=${BENCH_RADOS_SECONDS:-10}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/glint/target}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer, got '$RUNS'"
SIZE=$(numfmt --from=iec "$SIZE_SPEC") || die "BENCH_SIZE '$SIZE_SPEC' is not a size"
need_tools curl jq

TMP=""
PIDS=()
cleanup() {
    local rc=$? pid
    set +e
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    stop_ceph
    [[ -n $TMP && -d $TMP ]] && rm -rf -- "$TMP"
    exit "$rc"
}
on_exit cleanup
TMP=$(mktemp -d "${TMPDIR:-/tmp}/glint-bench-rbd.XXXXXX")

build_glint
start_ceph "$TMP/ceph"
rbd_cli() { rbd -c "$CEPH_CONF" --no-progress "$@"; }

log "writing $SIZE_SPEC of random data"
head -c "$SIZE" /dev/urandom >"$TMP/file"
SHA=$(sha512sum "$TMP/file" | cut -d' ' -f1)

start_glint "$TMP/glint" TYPE=rbd POOL=images USER=glance CONF_FILE="$CEPH_CONF" \
    KEYRING="$CEPH_DIR/glance.keyring" CHUNK_SIZE="$OBJECT_MIB"

cli_up=() cli_down=() glint_up=() glint_down=()
for run in $(seq "$RUNS"); do
    log "round $run/$RUNS"
    cli_up+=("$(seconds rbd_cli import --object-size "${OBJECT_MIB}M" "$TMP/file" "images/bench-$run")")
    cli_down+=("$(seconds rbd_cli export "images/bench-$run" -)")
    rbd_cli rm "images/bench-$run" >/dev/null
    out=$(glint_upload "$TMP/file" "$SHA")
    id=${out% *}
    glint_up+=("${out#* }")
    glint_down+=("$(glint_download "$id")")
    glint_delete "$id"
done

rados_up=- rados_down=-
if ((RADOS_SECONDS > 0)); then
    log "rados bench, $RADOS_SECONDS s write and $RADOS_SECONDS s sequential read"
    # rados bench's "MB/sec" is MiB/s.
    bandwidth() { awk -F: '/^Bandwidth \(MB\/sec\)/ { printf "%.0f", $2 * 1.048576 }'; }
    rados_up=$(rados -c "$CEPH_CONF" bench -p images "$RADOS_SECONDS" write -b "${OBJECT_MIB}M" -t 16 \
        --no-cleanup | bandwidth)
    rados_down=$(rados -c "$CEPH_CONF" bench -p images "$RADOS_SECONDS" seq -t 16 | bandwidth)
    rados -c "$CEPH_CONF" -p images cleanup >/dev/null
fi

med() { printf '%s\n' "$@" | median; }
gu=$(med "${glint_up[@]}") gd=$(med "${glint_down[@]}")
store_report "$SIZE" "$RUNS" "rbd CLI" \
    "upload (rbd import / PUT file)" "$(med "${cli_up[@]}")" "$gu" \
    "download (rbd export / GET file)" "$(med "${cli_down[@]}")" "$gd"
echo
echo "rados bench (16 in flight, ${OBJECT_MIB} MiB objects): write $rados_up MB/s, seq read $rados_down MB/s;"
echo "Glint upload / rados write: $(ratio "$(mbps "$SIZE" "$gu")" "$rados_up"), Glint download / rados read: $(ratio "$(mbps "$SIZE" "$gd")" "$rados_down")."
echo "Cluster set-up: ${SETUP} s (mon, mgr, OSD, pool, user). Rounds: $RUNS; all round times: rbd up ${cli_up[*]}, Glint up ${glint_up[*]}, rbd down ${cli_down[*]}, Glint down ${glint_down[*]}."

#!/usr/bin/env bash
# The RBD store's data path against Ceph's own command-line client on the same cluster: a
# one-node Ceph (tests/integration/support/ceph.sh: one mon, one mgr, one OSD on a sparse file)
# and `glint serve` with an rbd store as its default, on loopback.
#
# Each round, interleaved so drift in the machine's load hits both alike, measures wall-clock:
#   * rbd import FILE          vs  curl -T FILE PUT /v2/images/{id}/file (Content-Length)
#   * rbd export IMG - >/dev/null vs curl GET /v2/images/{id}/file >/dev/null
# Glint's upload also hashes (md5 + sha512) and inspects; `rbd import` does neither. Every
# upload's os_hash_value is checked against sha512sum. The figure is the median of the rounds;
# the table also shows the cluster's set-up time.
#
# Knobs (environment):
#   BENCH_SIZE=1G       file size (head -c syntax)
#   BENCH_RUNS=3        rounds
#   CARGO_TARGET_DIR    (default $HOME/.cache/glint/target)
#   BENCH_GLINT_BIN=/path/to/glint   that binary instead of a release build
set -euo pipefail
SIZE=${BENCH_SIZE:-1G}
RUNS=${BENCH_RUNS:-3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/glint/target}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GLINT=${BENCH_GLINT_BIN:-$CARGO_TARGET_DIR/release/glint}
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_tools curl jq
command -v ceph-mon >/dev/null || die "ceph-mon missing (apt-get install ceph-mon ceph-mgr ceph-osd ceph-common)"
TMP=""
PIDS=()
cleanup() {
    local rc=$? pid
    set +e
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [[ -n $TMP && -d $TMP/ceph/run ]]; then
        for pid in "$TMP"/ceph/run/*.pid; do stop_pid "$(cat "$pid")"; done
    fi
    [[ -n $TMP && -d $TMP ]] && rm -rf -- "$TMP"
    exit "$rc"
}
on_exit cleanup
TMP=$(mktemp -d)

if [[ -z ${BENCH_GLINT_BIN:-} ]]; then
    log "building glint (release)"
    cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" --bin glint
fi

log "starting a one-node Ceph cluster"
start=$(date +%s.%N)
CEPH_PORT=$(free_port)
bash "$ROOT/tests/integration/support/ceph.sh" "$TMP/ceph" "$CEPH_PORT" $$ >"$TMP/ceph.log" 2>&1 \
    || { cat "$TMP/ceph.log" >&2; die "the cluster did not come up"; }
setup=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN{printf "%.1f", e - s}')
CONF=$TMP/ceph/ceph.conf

log "writing $SIZE of random data"
head -c "$SIZE" /dev/urandom >"$TMP/file"
SHA=$(sha512sum "$TMP/file" | cut -d' ' -f1)

GPORT=$(free_port)
GBASE="http://127.0.0.1:$GPORT"
mkdir -p "$TMP/glint"
(cd "$TMP/glint" && exec env RUST_LOG=warn GLINT__SERVER__BIND="127.0.0.1:$GPORT" \
    GLINT__DATABASE__URL="sqlite://$TMP/glint/glint.db?mode=rwc" \
    GLINT__STORAGE__DEFAULT=ceph GLINT__STORAGE__BACKENDS__CEPH__TYPE=rbd \
    GLINT__STORAGE__BACKENDS__CEPH__POOL=images GLINT__STORAGE__BACKENDS__CEPH__USER=glance \
    GLINT__STORAGE__BACKENDS__CEPH__CONF_FILE="$CONF" \
    GLINT__STORAGE__BACKENDS__CEPH__KEYRING="$TMP/ceph/glance.keyring" "$GLINT" serve) >"$TMP/glint.log" 2>&1 &
PIDS+=($!)
wait_http "$GBASE/versions" "${PIDS[0]}" "$TMP/glint.log"

seconds() { local s; s=$(date +%s.%N); "$@"; awk -v s="$s" -v e="$(date +%s.%N)" 'BEGIN{printf "%.3f", e - s}'; }
median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

rbd_up=() rbd_down=() glint_up=() glint_down=()
for run in $(seq "$RUNS"); do
    log "round $run/$RUNS"
    rbd_up+=("$(seconds rbd -c "$CONF" import --no-progress "$TMP/file" "images/bench-$run")")
    rbd_down+=("$(seconds sh -c "rbd -c '$CONF' export --no-progress images/bench-$run - >/dev/null")")
    rbd -c "$CONF" rm --no-progress "images/bench-$run" >/dev/null
    id=$(curl -sf -X POST -H 'Content-Type: application/json' \
        -d '{"disk_format":"raw","container_format":"bare"}' "$GBASE/v2/images" | jq -r .id)
    glint_up+=("$(seconds curl -sf -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' \
        -T "$TMP/file" "$GBASE/v2/images/$id/file")")
    got=$(curl -sf "$GBASE/v2/images/$id" | jq -r .os_hash_value)
    [[ $got == "$SHA" ]] || die "upload $run: os_hash_value $got, sha512sum $SHA"
    glint_down+=("$(seconds sh -c "curl -sf '$GBASE/v2/images/$id/file' >/dev/null")")
    curl -sf -X DELETE "$GBASE/v2/images/$id" >/dev/null
done

ru=$(printf '%s\n' "${rbd_up[@]}" | median) rd=$(printf '%s\n' "${rbd_down[@]}" | median)
gu=$(printf '%s\n' "${glint_up[@]}" | median) gd=$(printf '%s\n' "${glint_down[@]}" | median)
echo "| $SIZE, median of $RUNS | rbd CLI (s) | Glint (s) | Glint speed / rbd CLI speed |"
echo "|---|---|---|---|"
echo "| upload (rbd import / PUT file) | $ru | $gu | $(ratio "$ru" "$gu") |"
echo "| download (rbd export / GET file) | $rd | $gd | $(ratio "$rd" "$gd") |"
echo
echo "Cluster set-up: ${setup} s (mon, mgr, OSD, pool, user)."

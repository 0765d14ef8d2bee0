#!/usr/bin/env bash
# The Swift store's data path against Swift's own command-line client on the same cluster: a
# Swift all-in-one (tests/integration/support/swift.sh: tempauth proxy, account, container and
# object servers, one replica on a directory) and `glint serve` (release, SQLite) with a swift
# store as its only store, on loopback.
#
# Each round, interleaved so drift in the machine's load hits both alike, measures wall-clock:
#   * swift upload --use-slo --segment-size S   vs  curl -T FILE: PUT /v2/images/{id}/file
#   * swift download -o - >/dev/null            vs  curl: GET /v2/images/{id}/file >/dev/null
# with the same segment size S on both sides (Glint: large_object_size = large_object_chunk_size
# = S, so the file is a static large object of the same segments). `swift upload` sends up to 10
# segments at once (its default); Glint streams one while up to 4 await Swift's answer, and also
# hashes (md5 + sha512) and inspects. `swift` is python3-swiftclient (installed from Debian if
# missing), so its times include a Python start-up. Every upload's os_hash_value is checked
# against sha512sum. Figures are medians of the rounds; the report also gives the all-in-one's
# set-up time.
#
# Knobs (environment):
#   BENCH_SIZE=1G          file size (numfmt IEC syntax)
#   BENCH_RUNS=3           rounds
#   BENCH_SEGMENT_MIB=200  segment size (Glance's default swift_store_large_object_chunk_size)
#   CARGO_TARGET_DIR       (default $HOME/.cache/glint/target)
#   BENCH_GLINT_BIN=/path/to/glint   that binary instead of a release build
set -euo pipefail
SIZE_SPEC=${BENCH_SIZE:-1G}
RUNS=${BENCH_RUNS:-3}
SEGMENT_MIB=${BENCH_SEGMENT_MIB:-200}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/glint/target}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer, got '$RUNS'"
[[ $SEGMENT_MIB =~ ^[1-9][0-9]*$ ]] || die "BENCH_SEGMENT_MIB must be a positive integer, got '$SEGMENT_MIB'"
SIZE=$(numfmt --from=iec "$SIZE_SPEC") || die "BENCH_SIZE '$SIZE_SPEC' is not a size"
need_tools curl jq
command -v swift >/dev/null || apt_install python3-swiftclient || die "cannot install python3-swiftclient"
command -v swift-proxy-server >/dev/null \
    || die "swift-proxy-server missing (apt-get install swift swift-proxy swift-account swift-container swift-object memcached)"

TMP=""
PIDS=()
cleanup() {
    local rc=$? pid
    set +e
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    stop_swift
    [[ -n $TMP && -d $TMP ]] && rm -rf -- "$TMP"
    exit "$rc"
}
on_exit cleanup
# The object server keeps metadata in user extended attributes: ext4 and xfs have them.
TMP=$(mktemp -d "${TMPDIR:-/tmp}/glint-bench-swift.XXXXXX")

build_glint
start_swift "$TMP/swift"
swift_cli() { swift -A "$SWIFT_AUTH_URL" -U "$SWIFT_USER" -K "$SWIFT_KEY" "$@"; }

log "writing $SIZE_SPEC of random data"
head -c "$SIZE" /dev/urandom >"$TMP/file"
SHA=$(sha512sum "$TMP/file" | cut -d' ' -f1)

start_glint "$TMP/glint" TYPE=swift AUTH_URL="$SWIFT_AUTH_URL" AUTH_VERSION=1 USER="$SWIFT_USER" \
    KEY="$SWIFT_KEY" CONTAINER=glint CREATE_CONTAINER_ON_PUT=true \
    LARGE_OBJECT_SIZE="$SEGMENT_MIB" LARGE_OBJECT_CHUNK_SIZE="$SEGMENT_MIB"

cli_up=() cli_down=() glint_up=() glint_down=()
for run in $(seq "$RUNS"); do
    log "round $run/$RUNS"
    cli_up+=("$(seconds swift_cli upload --use-slo --segment-size "${SEGMENT_MIB}M" \
        --object-name "bench-$run" bench "$TMP/file")")
    cli_down+=("$(seconds swift_cli download bench "bench-$run" -o -)")
    swift_cli delete bench "bench-$run" >/dev/null
    out=$(glint_upload "$TMP/file" "$SHA")
    id=${out% *}
    glint_up+=("${out#* }")
    glint_down+=("$(glint_download "$id")")
    glint_delete "$id"
done

med() { printf '%s\n' "$@" | median; }
store_report "$SIZE" "$RUNS" "swift CLI" \
    "upload (swift upload / PUT file)" "$(med "${cli_up[@]}")" "$(med "${glint_up[@]}")" \
    "download (swift download / GET file)" "$(med "${cli_down[@]}")" "$(med "${glint_down[@]}")"
echo
echo "Segments of $SEGMENT_MIB MiB on both sides. All-in-one set-up: ${SETUP} s (rings, memcached, four servers, a first login)."
echo "Rounds: $RUNS; all round times: swift up ${cli_up[*]}, Glint up ${glint_up[*]}, swift down ${cli_down[*]}, Glint down ${glint_down[*]}."

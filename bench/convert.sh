#!/usr/bin/env bash
# Benchmark of Glint's in-process conversion against qemu-img, for every readable format
# (issue #16), and of the staging space a converting import needs.
#
# Images (in BENCH_TMP), each of BENCH_SIZE virtual size with ~60% of it allocated: 3 MiB
# written by qemu-io every 5 MiB from 1 MiB on (the first MiB stays empty: a disk that starts
# with text would inspect as a VMDK descriptor). Random bytes, except where the format
# compresses, which gets text-like bytes (random data would not compress: qemu would store
# it as it is):
#   qcow2         the qemu-io-written qcow2 itself (L2 tables among the data)
#   qcow2-zlib    `qemu-img convert -c -O qcow2` of the text-like one
#   vmdk-sparse   `-O vmdk -o subformat=monolithicSparse`
#   vmdk-stream   `-O vmdk -o subformat=streamOptimized` of the text-like one (deflated grains)
#   vhd           `-O vpc -o subformat=dynamic`
#   vhdx          `-O vhdx`
#   vdi           `-O vdi`
# (1) For each image, BENCH_RUNS runs of each, interleaved, page cache warm (the image is
#     read once before), the output removed and `sync` run before each run:
#       qemu-img convert -O raw IMAGE OUT        the reference;
#       glint convert IMAGE OUT --output-format raw
#                                                the whole conversion: the format detected,
#                                                the source inspected, converted, the output
#                                                inspected (release build);
#     wall time (median) as speed vs qemu-img (>1: Glint is faster), peak RSS of each
#     (/usr/bin/time, the largest of the runs), and the output's allocated bytes (st_blocks) vs
#     qemu-img's. The outputs are compared with cmp.
# (2) Imports with conversion through `glint serve` (SQLite, filesystem store and staging on
#     one filesystem): glance-direct of the vmdk-sparse image with conversion_output_format
#     qcow2, and of the vhd image with raw. The staging directory's allocated bytes are sampled
#     every 20 ms from the end of the stage to `active`: the peak against the staged source's.
#     The stored image must equal the source (qemu-img compare). Then the vhd image
#     zstd-compressed, with [import] decompress on, converted to qcow2: a compressed source is
#     decompressed into a second staging file first, since conversion reads at random.
#
# Results: markdown tables on stdout; progress on stderr. Exit status 1 if a conversion or
# import failed or an output differed.
#
# Knobs (environment):
#   BENCH_SIZE=2G        virtual size (numfmt IEC syntax: 2G, 512M, 1073741824)
#   BENCH_RUNS=3         runs per figure (median time, largest RSS)
#   BENCH_FORMATS="qcow2 qcow2-zlib vmdk-sparse vmdk-stream vhd vhdx vdi"
#   BENCH_IMPORTS=1      0 skips part (2)
#   BENCH_GLINT_BIN=/path/to/glint   use that binary instead of building the release one
#   BENCH_TMP=/var/tmp   where the images go (needs about 5x BENCH_SIZE free)
#   CARGO_TARGET_DIR (default $HOME/.cache/glint/target)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"

SIZE=$(numfmt --from=iec "${BENCH_SIZE:-2G}")
RUNS=${BENCH_RUNS:-3}
FORMATS=${BENCH_FORMATS:-qcow2 qcow2-zlib vmdk-sparse vmdk-stream vhd vhdx vdi}
IMPORTS=${BENCH_IMPORTS:-1}

need_tools qemu-img qemu-io curl jq python3 zstd
[[ -x /usr/bin/time ]] || apt_install time || die "cannot install time"
if [[ -n ${BENCH_GLINT_BIN:-} ]]; then
    GLINT=$BENCH_GLINT_BIN
else
    log "building the release binary"
    (cd "$HERE/.." && cargo build --release -q -p glint --bin glint)
    GLINT=${CARGO_TARGET_DIR:-$HOME/.cache/glint/target}/release/glint
fi
[[ -x $GLINT ]] || die "no glint binary at $GLINT"

TMP=$(mktemp -d "${BENCH_TMP:-/var/tmp}/glint-bench-convert.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    rm -rf "$TMP"
}
on_exit cleanup
free=$(($(df --output=avail -B1 "$TMP" | tail -n 1)))
(( free >= SIZE * 5 )) || die "needs $(numfmt --to=iec $((SIZE * 5))) free in $TMP, has $(numfmt --to=iec "$free")"

FAILED=0
fail() { FAILED=1; log "FAILURE: $*"; }
allocated() { echo $(( $(stat -c '%b * %B' "$1") )); }
mib() { awk -v b="$1" 'BEGIN{printf "%.0f MiB", b / 1048576}'; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR]=$1} END{print (NR ? v[int((NR+1)/2)] : "-")}'; }
largest() { tr ' ' '\n' | grep -v '^$' | sort -g | tail -n 1; }

# ------------------------------------------------------------------ images -------------
log "glint: $GLINT; generating $(numfmt --to=iec "$SIZE") images in $TMP"
head -c $((3 << 20)) /dev/urandom >"$TMP/random.bin"
python3 - "$TMP/text.bin" <<'PY'
import random, sys
random.seed(5)
words = ["".join(random.choice("etaoinshrdlucmfw") for _ in range(random.randint(2, 9)))
         for _ in range(4000)]
out = bytearray()
while len(out) < 3 << 20:
    out += " ".join(random.choice(words) for _ in range(12)).encode() + b"\n"
open(sys.argv[1], "wb").write(out[: 3 << 20])
PY
base() { # base NAME DATA-FILE: a qcow2 with the data every 5 MiB
    local commands=() offset
    qemu-img create -q -f qcow2 "$TMP/$1.qcow2" "$SIZE"
    for ((offset = 1 << 20; offset + (3 << 20) <= SIZE; offset += 5 << 20)); do
        commands+=(-c "write -q -s $2 $offset $((3 << 20))")
    done
    qemu-io -f qcow2 "${commands[@]}" "$TMP/$1.qcow2" >/dev/null
}
base random "$TMP/random.bin"
base text "$TMP/text.bin"
declare -A QEMU_FORMAT=([qcow2]=qcow2 [qcow2-zlib]=qcow2 [vmdk-sparse]=vmdk [vmdk-stream]=vmdk [vhd]=vpc
    [vhdx]=vhdx [vdi]=vdi)
derive() { # derive NAME BASE QEMU-ARGS...
    local name=$1 from=$2
    shift 2
    qemu-img convert -f qcow2 "$@" "$TMP/$from.qcow2" "$TMP/$name.img"
}
for format in $FORMATS; do
    [[ -n ${QEMU_FORMAT[$format]:-} ]] || die "unknown format $format"
    log "making $format"
    case $format in
        qcow2) cp "$TMP/random.qcow2" "$TMP/qcow2.img" ;;
        qcow2-zlib) derive "$format" text -c -O qcow2 ;;
        vmdk-sparse) derive "$format" random -O vmdk -o subformat=monolithicSparse ;;
        vmdk-stream) derive "$format" text -O vmdk -o subformat=streamOptimized ;;
        vhd) derive "$format" random -O vpc -o subformat=dynamic ;;
        vhdx) derive "$format" random -O vhdx ;;
        vdi) derive "$format" random -O vdi ;;
    esac
done
rm -f "$TMP/random.qcow2" "$TMP/text.qcow2"

# ------------------------------------------------------------ (1) conversion ------------
timed() { # timed OUTFILE-OF-TIME COMMAND...: "seconds max-rss-KiB" in the file
    /usr/bin/time -f '%e %M' -o "$1" "${@:2}" >/dev/null
}
ROWS=()
for format in $FORMATS; do
    image=$TMP/$format.img qf=${QEMU_FORMAT[$format]}
    cat "$image" >/dev/null
    declare -A times=() rss=()
    for ((run = 1; run <= RUNS; run++)); do
        for contender in qemu glint; do
            out=$TMP/out.$contender.raw
            rm -f "$out"
            sync
            case $contender in
                qemu) timed "$TMP/time" qemu-img convert -f "$qf" -O raw "$image" "$out" ||
                    fail "$format: qemu-img failed" ;;
                glint) timed "$TMP/time" "$GLINT" convert "$image" "$out" --output-format raw ||
                    fail "$format: glint convert failed" ;;
            esac
            read -r t kib <"$TMP/time"
            times[$contender]+="$t " rss[$contender]+="$kib "
            log "$format run $run: $contender ${t}s, ${kib} KiB peak RSS"
        done
        if ((run == 1)) && ! cmp -s "$TMP/out.qemu.raw" "$TMP/out.glint.raw"; then
            fail "$format: glint's raw output differs from qemu-img's"
        fi
    done
    q=$(echo "${times[qemu]}" | median) g=$(echo "${times[glint]}" | median)
    qr=$(echo "${rss[qemu]}" | largest) gr=$(echo "${rss[glint]}" | largest)
    qa=$(allocated "$TMP/out.qemu.raw") ga=$(allocated "$TMP/out.glint.raw")
    ROWS+=("| $format | $(mib "$(stat -c %s "$image")") | $q s | $g s | $(ratio "$q" "$g") | $((qr / 1024)) MiB | $((gr / 1024)) MiB | $(mib "$qa") | $(mib "$ga") | $(ratio "$ga" "$qa") |")
    rm -f "$TMP/out.qemu.raw" "$TMP/out.glint.raw"
    unset times rss
done

# --------------------------------------------------------------- (2) imports ------------
IMPORT_ROWS=()
# import_peak FORMAT OUTPUT-FORMAT [zstd]: glance-direct of the FORMAT image (zstd-compressed,
# with [import] decompress on) converted to OUTPUT-FORMAT.
import_peak() {
    local format=$1 output=$2 image=$TMP/$1.img dir port base pid sampler id status peak t0 t1 source_bytes i
    local compress=${3:-} staged label
    dir=$TMP/serve-$format-$output
    staged=$image label="$format -> $output"
    if [[ -n $compress ]]; then
        staged=$TMP/$format.img.zst label="$format.zst -> $output"
        zstd -q -1 -T0 -c "$image" >"$staged"
    fi
    mkdir -p "$dir"
    port=$(free_port)
    base="http://127.0.0.1:$port"
    (cd "$dir" && exec env RUST_LOG=warn GLINT__SERVER__BIND="127.0.0.1:$port" \
        GLINT__DATABASE__URL="sqlite://$dir/glint.db?mode=rwc" \
        GLINT__IMPORT__CONVERSION_OUTPUT_FORMAT="$output" GLINT__IMPORT__DECOMPRESS=true \
        "$GLINT" serve) >"$dir/glint.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_http "$base/healthcheck" "$pid" "$dir/glint.log"
    local declared=${QEMU_FORMAT[$format]/vpc/vhd}
    id=$(curl -sS -f -X POST "$base/v2/images" -H 'Content-Type: application/json' \
        -d "{\"name\":\"bench\",\"disk_format\":\"$declared\",\"container_format\":\"bare\"}" | jq -er .id)
    curl -sS -f -X PUT -H 'Content-Type: application/octet-stream' -T "$staged" "$base/v2/images/$id/stage"
    source_bytes=$(du -sB1 "$dir/data/staging" | cut -f1)
    : >"$dir/samples"
    (
        while :; do
            du -sB1 "$dir/data/staging" 2>/dev/null | cut -f1 >>"$dir/samples" || true
            sleep 0.02
        done
    ) &
    sampler=$!
    PIDS+=("$sampler")
    t0=$(date +%s.%N)
    curl -sS -f -o /dev/null -X POST -H 'Content-Type: application/json' \
        -d '{"method":{"name":"glance-direct"}}' "$base/v2/images/$id/import"
    status=importing
    for i in $(seq 60000); do
        status=$(curl -sS "$base/v2/images/$id" | jq -r .status)
        [[ $status == active || $status == queued ]] && break
        sleep 0.01
    done
    t1=$(date +%s.%N)
    stop_pid "$sampler"
    peak=$(sort -g "$dir/samples" | tail -n 1)
    if [[ $status != active ]]; then
        fail "import $label: $status, $(curl -sS "$base/v2/images/$id/tasks" | jq -c '.tasks[0].message')"
    elif ! qemu-img compare -q -f "${QEMU_FORMAT[$format]}" -F "$output" "$image" "$dir/data/images/$id"; then
        fail "import $label: the stored image differs from the source"
    fi
    IMPORT_ROWS+=("| $label | $(mib "$source_bytes") | $(mib "$(allocated "$image")") | $(mib "$peak") | $(ratio "$peak" "$source_bytes") | $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b - a}') s | $(mib "$(allocated "$dir/data/images/$id")") |")
    stop_pid "$pid"
    rm -rf "$dir"
    [[ -z $compress ]] || rm -f "$staged"
}
if ((IMPORTS)); then
    [[ " $FORMATS " == *" vmdk-sparse "* ]] && import_peak vmdk-sparse qcow2
    [[ " $FORMATS " == *" vhd "* ]] && import_peak vhd raw
    [[ " $FORMATS " == *" vhd "* ]] && import_peak vhd qcow2 zstd
fi

echo
echo "(1) conversion to raw of $(numfmt --to=iec "$SIZE") virtual, ~60% allocated; median of $RUNS runs, page cache warm"
echo
echo "| format | file | qemu-img convert -O raw | glint convert | speed vs qemu-img | qemu-img peak RSS | glint peak RSS | qemu-img output allocated | glint output allocated | allocated vs qemu-img |"
echo "|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
if ((${#IMPORT_ROWS[@]})); then
    echo
    echo "(2) glance-direct import with conversion (glint serve): staging directory, sampled every 20 ms"
    echo
    echo "| import | staged source | image (decompressed) | peak staging | peak / staged source | import step | stored allocated |"
    echo "|---|---|---|---|---|---|---|"
    printf '%s\n' "${IMPORT_ROWS[@]}"
fi
exit "$FAILED"

#!/usr/bin/env bash
# Benchmark of glint-formats' in-process conversion and inspection, against qemu-img.
#
# Builds the timing driver (formats/examples/convert.rs, release) and, in a temp dir:
#   * alloc.qcow2      - a BENCH_SIZE qcow2 (64 KiB clusters) with 60% of its clusters
#                        allocated: 3 MiB of random bytes written by qemu-io every 5 MiB
#                        from 1 MiB on;
#   * compressed.qcow2 - `qemu-img convert -c` of the same layout filled with compressible
#                        text-like bytes (random data would not compress: qemu would store it
#                        uncompressed);
# then, for each image, interleaved so a burst of load hits every contender alike:
#   * qemu-img convert -O raw IMAGE OUT            - the reference;
#   * convert qcow2-raw IMAGE OUT                  - our qcow2 reader alone;
#   * convert convert IMAGE qcow2 OUT raw          - glint_formats::convert: inspection of the
#                                                    source, conversion, re-inspection of the output;
# and the outputs are compared with cmp. Every figure is the median of BENCH_RUNS runs, page
# cache warm (the image is read once before), the output removed and `sync` run before each run.
# Inspection cost per upload: the inspector fed BENCH_SIZE bytes in 256 KiB chunks from memory
# against a loop that only touches the chunks, and over the raw output read from the page cache
# against the same read loop without the inspector (fastest of three alternating rounds each).
#
# Results: a markdown table on stdout; progress on stderr. Exit status 1 if a conversion failed
# or an output differed from qemu-img's.
#
# Knobs (environment):
#   BENCH_SIZE=2G        virtual size (numfmt IEC syntax: 2G, 512M, 1073741824)
#   BENCH_RUNS=3         runs per figure (median)
#   CARGO_TARGET_DIR (default $HOME/.cache/glint/target)
set -euo pipefail
cd "$(dirname "$0")/.."

size=$(numfmt --from=iec "${BENCH_SIZE:-2G}")
runs=${BENCH_RUNS:-3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/glint/target}
say() { echo "bench: $*" >&2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/glint-convert-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
# alloc.qcow2 and compressed.qcow2, the staging copy of the text-like image, and one output.
need=$((size * 3))
free=$(($(df --output=avail -B1 "$work" | tail -n 1)))
if [ "$free" -lt "$need" ]; then
    say "needs $(numfmt --to=iec $need) free in $work, has $(numfmt --to=iec $free)"
    exit 1
fi

say "building the timing driver"
cargo build --quiet --release -p glint-formats --example convert
driver=$CARGO_TARGET_DIR/release/examples/convert

say "generating $(numfmt --to=iec "$size") images"
head -c $((3 << 20)) /dev/urandom >"$work/random.bin"
python3 - "$work/text.bin" <<'PY'
import random, sys
random.seed(5)
words = ["".join(random.choice("etaoinshrdlucmfw") for _ in range(random.randint(2, 9)))
         for _ in range(4000)]
out = bytearray()
while len(out) < 3 << 20:
    out += " ".join(random.choice(words) for _ in range(12)).encode() + b"\n"
open(sys.argv[1], "wb").write(out[: 3 << 20])
PY
fill() { # image data-file
    local commands=() offset
    # From 1 MiB on: a disk that starts with text would inspect as a VMDK descriptor.
    for ((offset = 1 << 20; offset + (3 << 20) <= size; offset += 5 << 20)); do
        commands+=(-c "write -q -s $2 $offset $((3 << 20))")
    done
    qemu-io -f qcow2 "${commands[@]}" "$1" >/dev/null
}
qemu-img create -q -f qcow2 "$work/alloc.qcow2" "$size"
fill "$work/alloc.qcow2" "$work/random.bin"
qemu-img create -q -f qcow2 "$work/text.qcow2" "$size"
fill "$work/text.qcow2" "$work/text.bin"
qemu-img convert -c -f qcow2 -O qcow2 "$work/text.qcow2" "$work/compressed.qcow2"
rm -f "$work/text.qcow2"

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
seconds() { # command...: wall seconds
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null
    end=$(date +%s.%N)
    echo "$end - $start" | bc -l
}
status=0
rows=()
for image in alloc compressed; do
    src=$work/$image.qcow2
    out=$work/out.raw
    reference=$work/reference.raw
    cat "$src" >/dev/null
    qemu-img convert -f qcow2 -O raw "$src" "$reference"
    declare -A times=()
    for ((run = 1; run <= runs; run++)); do
        for contender in qemu reader convert; do
            rm -f "$out"
            sync
            case $contender in
            qemu) t=$(seconds qemu-img convert -f qcow2 -O raw "$src" "$out") ;;
            reader) t=$(seconds "$driver" qcow2-raw "$src" "$out") ;;
            convert) t=$(seconds "$driver" convert "$src" qcow2 "$out" raw) ;;
            esac
            if ! cmp -s "$out" "$reference"; then
                say "$image: $contender output differs from qemu-img's"
                status=1
            fi
            times[$contender]+="$t "
            say "$image run $run: $contender ${t}s"
        done
    done
    med() { tr ' ' '\n' <<<"${times[$1]}" | grep . | median; }
    q=$(med qemu) r=$(med reader) c=$(med convert)
    mib() { echo "$size / 1048576 / $1" | bc -l; }
    stored=$(stat -c %s "$src")
    rows+=("| $image ($(numfmt --to=iec "$stored") file) | $(printf %.2f "$q") s ($(printf %.0f "$(mib "$q")") MiB/s) | $(printf %.2f "$r") s ($(printf %.0f "$(mib "$r")") MiB/s) | $(printf '%.2f' "$(echo "$q / $r" | bc -l)") | $(printf %.2f "$c") s | $(printf '%.2f' "$(echo "$q / $c" | bc -l)") |")
    unset times
done

say "inspection cost"
memory=$("$driver" inspect-memory "$size")
cat "$work/reference.raw" >/dev/null
file=$("$driver" inspect-file "$work/reference.raw")
field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<<"$2"; }

echo
echo "qcow2 -> raw, $(numfmt --to=iec "$size") virtual, median of $runs runs, page cache warm"
echo
echo "| image | qemu-img convert -O raw | our reader | speed vs qemu-img | convert() with both inspections | speed vs qemu-img |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "Inspection of a $(numfmt --to=iec "$size") stream in 256 KiB chunks"
echo
echo "| source | bytes | with the inspector | loop without it | inspector's own cost per GiB |"
echo "|---|---|---|---|---|"
for line in "memory:$memory" "page cache (the raw output):$file"; do
    name=${line%%:*} values=${line#*:}
    bytes=$(field bytes "$values") i=$(field inspector_seconds "$values") b=$(field baseline_seconds "$values")
    per_gib=$(echo "($i - $b) * 1073741824 / $bytes * 1000" | bc -l)
    echo "| $name | $bytes | ${i} s | ${b} s | $(printf %.2f "$per_gib") ms |"
done
exit "$status"

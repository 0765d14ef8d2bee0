#!/usr/bin/env bash
# Regenerates the seed corpus from qemu-img images: small images of every format, with data
# written by qemu-io, cut to their first KiBs where the rest is only guest data. The corpus is
# committed; run this only to rebuild it (the fuzzer's own finds are not kept here, but the
# regression-* inputs, crashes it found once, are kept).
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

qcow2=corpus/qcow2_reader
inspector=corpus/inspector
reader=corpus/image_reader
mkdir -p "$qcow2" "$inspector" "$reader"
find "$qcow2" "$inspector" "$reader" -type f ! -name 'regression-*' -delete

# name, qemu-img create options, size, bytes kept (0: all)
make_qcow2() {
    local name=$1 options=$2 size=$3 keep=$4
    qemu-img create -q -f qcow2 -o "$options" "$work/$name" "$size"
    qemu-io -f qcow2 -c 'write -P 0x5a 0 1536' -c 'write -P 0xa5 3000 700' \
        -c "write -z 8192 1024" "$work/$name" >/dev/null
    if [ "$keep" -gt 0 ]; then truncate -s "$keep" "$work/$name"; fi
    cp "$work/$name" "$qcow2/$name"
}
make_qcow2 v2-512 compat=0.10,cluster_size=512 64K 0
make_qcow2 v3-512 compat=1.1,cluster_size=512 64K 0
make_qcow2 v3-4k compat=1.1,cluster_size=4096 64K 0
# A compressed image (qemu-img convert -c), and one whose 64 KiB clusters are cut short.
qemu-img convert -q -c -O qcow2 -o cluster_size=512 "$qcow2/v3-512" "$qcow2/compressed-512"
qemu-img convert -q -c -O qcow2 -o cluster_size=4096,compat=0.10 "$qcow2/v3-512" "$qcow2/compressed-v2-4k"
# 64 KiB clusters put the L1 table at 192 KiB: keep only the header cluster's first KiBs.
make_qcow2 v3-64k-header compat=1.1 1M 4096

cp "$qcow2"/v2-512 "$qcow2"/compressed-512 "$inspector/"
# Only the first KiBs matter to the inspector for these; the rest is guest data and tables.
for spec in "vmdk subformat=monolithicSparse 12288" "vpc subformat=dynamic 4096" \
    "vdi static=off 4096" "qed cluster_size=65536 4096"; do
    set -- $spec
    qemu-img create -q -f "$1" -o "$2" "$work/image" 1M
    qemu-io -f "$1" -c 'write -P 0x5a 0 512' "$work/image" >/dev/null 2>&1 || true
    truncate -s "$3" "$work/image"
    cp "$work/image" "$inspector/$1-${2#*=}"
done
# A stream-optimized VMDK is checked at both ends (its footer): kept whole, made small.
head -c 65536 /dev/zero | tr '\0' '\132' >"$work/small.raw"
qemu-img convert -q -f raw -O vmdk -o subformat=streamOptimized "$work/small.raw" \
    "$inspector/vmdk-streamOptimized"
qemu-img convert -q -f raw -O vpc -o subformat=fixed "$work/small.raw" "$inspector/vhd-fixed"
# An MBR with one partition.
printf '\x80\x00\x02\x00\x83\x00\x00\x00\x00\x08\x00\x00\x00\x08\x00\x00' | \
    dd of="$work/mbr" bs=1 seek=446 conv=notrunc status=none
printf '\x55\xaa' | dd of="$work/mbr" bs=1 seek=510 conv=notrunc status=none
cp "$work/mbr" "$inspector/mbr"
# image_reader: the first byte picks the reader (0 vmdk, 1 vhd, 2 vhdx, 3 vdi, 4 qcow2), the
# rest is a whole small image with data, zeros and (vmdk, qcow2) compressed grains.
# Formats with 1 MiB blocks are cut after their tables and first block, to keep inputs small.
seed() { # name selector qemu-format options bytes-kept (0: all)
    qemu-img create -q -f qcow2 "$work/seed.qcow2" 1M
    qemu-io -f qcow2 -c 'write -P 0x5a 0 1536' -c 'write -P 0xa5 300000 70000' "$work/seed.qcow2" >/dev/null
    qemu-img convert -q -f qcow2 -O "$3" ${4:+-o "$4"} "$work/seed.qcow2" "$work/seed.img"
    if [ "$5" -gt 0 ]; then truncate -s "$5" "$work/seed.img"; fi
    { printf "\\$(printf %o "$2")"; cat "$work/seed.img"; } >"$reader/$1"
}
seed vmdk-sparse 0 vmdk subformat=monolithicSparse 0
seed vmdk-stream 0 vmdk subformat=streamOptimized 0
seed vhd-dynamic 1 vpc subformat=dynamic 8192
seed vhdx 2 vhdx block_size=1M,log_size=1M 4194304
seed vdi 3 vdi "" 8192
seed qcow2-zstd 4 qcow2 compression_type=zstd,cluster_size=4096 0
du -sh corpus

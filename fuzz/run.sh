#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS (default 60) each, from the committed seed corpus,
# and exits non-zero if any target crashes, hangs (10 s per input) or fails to build. Inputs
# found on the way go to a scratch corpus, not into the committed one; a crashing input is
# left in fuzz/artifacts/<target>/ for a regression test.
#
# cargo-fuzz needs nightly compiler flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept
# them, so no nightly toolchain is needed.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-"inspector qcow2_reader"}

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cargo fuzz build --release
status=0
for target in $targets; do
    mkdir -p "$scratch/$target"
    echo "fuzz: $target for ${seconds}s"
    if ! cargo fuzz run --release "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        2>"$scratch/$target.log"; then
        status=1
        echo "fuzz: $target FAILED; the crashing input is in fuzz/artifacts/$target/"
    fi
    grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb|^(==[0-9]+==|SUMMARY|panicked)' \
        "$scratch/$target.log" || true
    tail -n 30 "$scratch/$target.log" | grep -E 'panicked|ERROR|Test unit written' || true
done
exit "$status"

#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS (default 40) each, from the committed seed corpus,
# and exits non-zero if any target crashes, hangs (10 s per input), overflows an integer
# (debug assertions are on) or fails to build. Inputs found on the way go to a scratch corpus,
# not into the committed one; a crashing input is left in fuzz/artifacts/<target>/ and printed
# in base64, so that it can be taken from a CI log, added to corpus/<target>/ and replayed by
# formats/tests/conversion/fuzz_corpus.rs as a regression test.
#
# Each target ends with one line `fuzz result: passed|FAILED <target>: ...`, which .ci/run
# adds to the test count.
#
# cargo-fuzz needs nightly compiler flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept
# them, so no nightly toolchain is needed. cargo-fuzz itself is installed into ~/.cargo/bin
# once, and the sanitizer build is kept in GLINT_FUZZ_TARGET_DIR (default
# ~/.cache/glint/fuzz-target), outside the clone, so a later run only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${FUZZ_SECONDS:-40}
targets=${FUZZ_TARGETS:-"inspector qcow2_reader image_reader"}
cargo_fuzz_version=0.13.2

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz $cargo_fuzz_version into ~/.cargo/bin"
    # Built in a temporary directory, not in a CARGO_TARGET_DIR the caller may have set.
    env -u CARGO_TARGET_DIR cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked
fi
export RUSTC_BOOTSTRAP=1
# Not the workspace's target dir: other RUSTFLAGS would make the two builds evict each other.
export CARGO_TARGET_DIR="${GLINT_FUZZ_TARGET_DIR:-$HOME/.cache/glint/fuzz-target}"
mkdir -p "$CARGO_TARGET_DIR"
build=(--release --debug-assertions)

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
if ! cargo fuzz build "${build[@]}"; then
    for target in $targets; do
        echo "fuzz result: FAILED $target: the fuzz build failed"
    done
    exit 1
fi
status=0
for target in $targets; do
    mkdir -p "$scratch/$target" "artifacts/$target"
    echo "fuzz: $target for ${seconds}s"
    before=$(ls "artifacts/$target")
    ok=true
    start=$SECONDS
    if ! cargo fuzz run "${build[@]}" "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        2>"$scratch/$target.log"; then
        ok=false
    fi
    grep -E '^(==[0-9]+==|SUMMARY|INFO: seed corpus)|Test unit written' \
        "$scratch/$target.log" || true
    runs=$(awk '/^stat::number_of_executed_units:/ { print $2 }' "$scratch/$target.log")
    rate=$(awk '/^stat::average_exec_per_sec:/ { print $2 }' "$scratch/$target.log")
    stats="${runs:-?} runs in $((SECONDS - start))s, ${rate:-?} exec/s, $(ls "$scratch/$target" | wc -l) new inputs"
    if $ok; then
        echo "fuzz result: passed $target: $stats"
        continue
    fi
    status=1
    grep -m 1 -A 2 'panicked at' "$scratch/$target.log" || true
    # cargo-fuzz ends with the input as a Rust byte array on one long line: dropped, the
    # base64 below carries it.
    tail -n 60 "$scratch/$target.log" | awk 'length($0) <= 1000'
    for found in $(comm -13 <(echo "$before") <(ls "artifacts/$target")); do
        echo "fuzz: input artifacts/$target/$found, $(wc -c <"artifacts/$target/$found") bytes, base64:"
        head -c 65536 "artifacts/$target/$found" | base64 -w 76
    done
    echo "fuzz result: FAILED $target: $stats"
done
exit "$status"

#!/usr/bin/env bash
# Loopback benchmark of Glint's image data path: PUT and GET /v2/images/{id}/file.
#
# It builds the release binary, writes one file of random bytes (2 GiB) in a temp dir and starts
# `glint serve` there (SQLite, filesystem store in ./data/images) on a free 127.0.0.1 port, plus a
# throwaway nginx (sendfile on) serving the same file. Each round, interleaved so a burst of load
# hits every contender alike, measures with wall-clock times:
#   * openssl dgst -sha512 FILE      - the fastest SHA-512 here: the upload reference;
#   * sha512sum FILE                 - coreutils, for context;
#   * md5sum FILE                    - the MD5 reference (an upload also computes Glance's checksum);
#   * dd FILE -> copy, conv=fsync    - the disk's write+fsync floor (Glint fsyncs every upload);
#   * curl -T FILE PUT .../file      - with Content-Length, then with Transfer-Encoding: chunked,
#                                      each into a new image (raw/bare); 204, os_hash_value =
#                                      openssl's SHA-512, checksum = md5sum and size are checked;
#   * curl GET .../file              - Glint, against nginx sending the same file (reference)
#                                      and `cat FILE >/dev/null` (floor), page cache warm.
# While each Glint transfer runs, the server's VmRSS is sampled every ~50 ms; the table reports
# the peak above the VmRSS read just before the transfer, and VmHWM at the end; the server's
# CPU time (utime+stime) over each transfer shows how many of the cores it kept busy, and the CPU
# seconds per GB (for the timed commands too: openssl's is the upload's CPU reference).
# Every figure is the median of BENCH_RUNS runs. The previous image is deleted after each upload,
# so the disk holds at most 3x the file size (checked with df first).
#
# Results: a markdown table on stdout; progress on stderr. Exit status 1 if any transfer failed
# or a digest, size or status code was wrong.
#
# Knobs (environment):
#   BENCH_SIZE=2G        file size (head -c / numfmt IEC syntax: 2G, 512M, 100000000)
#   BENCH_RUNS=3         runs per figure (median)
#   BENCH_CHUNKED=1      0 skips the chunked upload
#   BENCH_NGINX=1        0 skips the nginx reference
#   BENCH_SAMPLE=0.05    RSS sampling period, seconds
#   CARGO_TARGET_DIR (default $HOME/.cache/glint/target)
#   BENCH_GLINT_BIN=/path/to/glint   benchmark that binary instead of building (skips cargo)
set -euo pipefail

SIZE_SPEC=${BENCH_SIZE:-2G}
RUNS=${BENCH_RUNS:-3}
WANT_CHUNKED=${BENCH_CHUNKED:-1}
WANT_NGINX=${BENCH_NGINX:-1}
SAMPLE=${BENCH_SAMPLE:-0.05}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/glint/target}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GLINT=${BENCH_GLINT_BIN:-$CARGO_TARGET_DIR/release/glint}

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer, got '$RUNS'"

# ---------------------------------------------------------------- cleanup -------------
TMP=""
PIDS=()          # every process this script started and must stop


cleanup() {
    local rc=$? pid
    set +e
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    [[ -n $TMP && -d $TMP ]] && rm -rf -- "$TMP"
    exit "$rc"
}
on_exit cleanup

# ---------------------------------------------------------------- tools ---------------
need_tools curl jq openssl
for tool in sha512sum md5sum numfmt dd; do
    command -v "$tool" >/dev/null || apt_install coreutils || die "cannot install coreutils ($tool)"
done
NGINX=""
if [[ $WANT_NGINX == 1 ]]; then
    find_nginx "reference only"
    [[ -n $NGINX ]] || log "the nginx reference is skipped"
fi

SIZE=$(numfmt --from=iec "$SIZE_SPEC" 2>/dev/null) || die "BENCH_SIZE '$SIZE_SPEC' is not a size (2G, 512M, bytes)"
(( SIZE > 0 )) || die "BENCH_SIZE must be more than 0 bytes"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/glint-bench-data.XXXXXX")
chmod 755 "$TMP"   # nginx workers (user nobody) read the file under it

# The file, one stored image and the next upload's partial file (or the dd copy) at once.
AVAIL=$(df -B1 --output=avail "$TMP" | tail -n 1 | tr -d ' ')
NEED=$(( 3 * SIZE + 64 * 1024 * 1024 ))
(( AVAIL >= NEED )) || die "$TMP's filesystem has $(numfmt --to=iec "$AVAIL") free; this run needs $(numfmt --to=iec "$NEED") (3 x BENCH_SIZE=$SIZE_SPEC + 64M). Free space, point TMPDIR elsewhere or lower BENCH_SIZE."

# ---------------------------------------------------------------- build ---------------
REV="tree $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?') at build time"
if [[ -z ${BENCH_GLINT_BIN:-} ]]; then
    log "cargo build --release --bin glint (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$ROOT" && cargo build --release --bin glint) >&2 || die "cargo build failed"
else
    log "using BENCH_GLINT_BIN=$GLINT (no build)"
    REV="prebuilt $GLINT"
fi
[[ -x $GLINT ]] || die "no binary at $GLINT"

# ---------------------------------------------------------------- helpers -------------


mbps() { awk -v b="$1" -v s="$2" 'BEGIN{ if (s > 0) printf "%.1f", b / s / 1e6; else print "-" }'; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.6f", b - a}'; }   # seconds since $1

median() {       # median NUMBER...
    printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END{ if (NR == 0) print "-"; else if (NR % 2) print v[(NR+1)/2]; else printf "%.1f\n", (v[NR/2]+v[NR/2+1])/2 }'
}

status_kb() {    # status_kb PID FIELD: a /proc/PID/status figure in kB (VmRSS, VmHWM)
    local k v rest
    while read -r k v rest; do
        [[ $k == "$2:" ]] && { echo "$v"; return 0; }
    done <"/proc/$1/status"
    return 1
}

CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
cpu_ticks() {    # cpu_ticks PID: utime + stime of the whole process (all threads), clock ticks
    local stat rest
    stat=$(<"/proc/$1/stat")
    rest=${stat##*) }                  # fields 3.. (the command name may hold spaces)
    read -r -a f <<<"$rest"
    echo $(( f[11] + f[12] ))          # fields 14 and 15
}
cores() {        # cores TICKS_BEFORE TICKS_AFTER SECONDS -> "1.62 (8.1 s/GB)"
    awk -v a="$1" -v b="$2" -v s="$3" -v hz="$CLK_TCK" -v n="$SIZE" \
        'BEGIN{ c = (b - a) / hz; if (s > 0) printf "%.2f|%.2f", c / s, c / (n / 1e9); else print "-|-" }'
}

# sample_rss PID OUT: VmRSS (kB) of PID every $SAMPLE s into OUT until killed. Pure bash (the
# wait is a read with a timeout on a FIFO nobody writes), so sampling forks nothing.
mkfifo "$TMP/tick"
sample_rss() {
    trap - EXIT INT TERM
    set +e
    local pid=$1 out=$2 k v rest
    exec 3<>"$TMP/tick"
    while :; do
        { while read -r k v rest; do [[ $k == VmRSS: ]] && { echo "$v"; break; }; done <"/proc/$pid/status"; } 2>/dev/null || break
        read -r -t "$SAMPLE" -u 3 _
    done >"$out"
}

SAMPLER=""
PEAK=""          # set by stop_sampler (not run in a subshell: it must reap its sampler)
start_sampler() { sample_rss "$1" "$2" & SAMPLER=$!; PIDS+=("$SAMPLER"); }
stop_sampler() {  # stop_sampler OUT IDLE_KB: PEAK = highest sample above idle, MiB
    stop_pid "$SAMPLER"
    local peak
    peak=$(sort -n "$1" | tail -n 1)
    [[ -n $peak ]] || die "no RSS samples in $1"
    PEAK=$(awk -v p="$peak" -v i="$2" 'BEGIN{printf "%.1f", (p - i) / 1024}')
}

FAILED=0
fail() { FAILED=1; log "FAILURE: $*"; }

declare -A MBPS RSS CORES CPUGB LOADS   # key -> space-separated per-run figures
record() {       # record KEY MB/s [RSS_MIB [CORES|S_PER_GB]]
    MBPS[$1]="${MBPS[$1]:-} $2"
    if [[ -n ${3:-} ]]; then RSS[$1]="${RSS[$1]:-} $3"; fi
    if [[ -n ${4:-} ]]; then CORES[$1]="${CORES[$1]:-} ${4%|*}"; CPUGB[$1]="${CPUGB[$1]:-} ${4#*|}"; fi
    LOADS[$1]="${LOADS[$1]:-} $(cut -d' ' -f1 /proc/loadavg)"
    log "  $1: $2 MB/s${3:+, peak RSS +$3 MiB}${4:+, glint CPU ${4%|*} cores (${4#*|} s/GB)}"
}

# ---------------------------------------------------------------- data ----------------
WWW="$TMP/www"
mkdir -p "$WWW" && chmod 755 "$WWW"
FILE="$WWW/data.bin"
log "writing $SIZE_SPEC ($SIZE bytes) of random bytes to $FILE"
head -c "$SIZE" /dev/urandom >"$FILE"
chmod 644 "$FILE"
[[ $(stat -c %s "$FILE") == "$SIZE" ]] || die "$FILE is not $SIZE bytes"
SHA512=$(openssl dgst -sha512 -r "$FILE" | cut -d' ' -f1)
MD5=$(md5sum "$FILE" | cut -d' ' -f1)
log "sha512 ${SHA512:0:32}... md5 $MD5"

# ---------------------------------------------------------------- servers -------------
GDIR="$TMP/glint"
mkdir -p "$GDIR"
GPORT=$(free_port)
GBASE="http://127.0.0.1:$GPORT"
log "glint serve on $GBASE (cwd $GDIR, store ./data/images)"
(cd "$GDIR" && exec env RUST_LOG=warn GLINT__SERVER__BIND="127.0.0.1:$GPORT" \
    GLINT__DATABASE__URL="sqlite://$GDIR/glint.db?mode=rwc" "$GLINT" serve) >"$GDIR/glint.log" 2>&1 &
GPID=$!
PIDS+=("$GPID")
wait_http "$GBASE/healthcheck" "$GPID" "$GDIR/glint.log"
sleep 1
IDLE0=$(status_kb "$GPID" VmRSS)
log "glint pid $GPID idle VmRSS $IDLE0 kB"

NBASE=""
if [[ -n $NGINX ]]; then
    NDIR="$TMP/nginx"
    mkdir -p "$NDIR/tmp"
    NPORT=$(free_port)
    NBASE="http://127.0.0.1:$NPORT"
    cat >"$NDIR/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $NDIR/nginx.pid;
error_log $NDIR/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path $NDIR/tmp/body;
    proxy_temp_path $NDIR/tmp/proxy;
    fastcgi_temp_path $NDIR/tmp/fastcgi;
    uwsgi_temp_path $NDIR/tmp/uwsgi;
    scgi_temp_path $NDIR/tmp/scgi;
    server {
        listen 127.0.0.1:$NPORT;
        root $WWW;
    }
}
EOF
    log "throwaway nginx on $NBASE (sendfile on)"
    "$NGINX" -e "$NDIR/error.log" -p "$NDIR" -c "$NDIR/nginx.conf" >"$NDIR/stdout.log" 2>&1 &
    NPID=$!
    PIDS+=("$NPID")
    wait_http "$NBASE/data.bin" "$NPID" "$NDIR/error.log"
fi

# ---------------------------------------------------------------- glint transfers -----
create_image() { # create_image NAME -> id
    local body
    body=$(curl -sS -f -X POST "$GBASE/v2/images" -H 'Content-Type: application/json' \
        -d "{\"name\":\"$1\",\"disk_format\":\"raw\",\"container_format\":\"bare\"}") || die "POST /v2/images failed"
    jq -er .id <<<"$body" || die "no id in $body"
}

delete_image() { # delete_image ID: 204, and its file gone from the store
    local code
    code=$(curl -sS -o /dev/null -w '%{http_code}' -X DELETE "$GBASE/v2/images/$1")
    [[ $code == 204 ]] || fail "DELETE image $1 answered $code"
    [[ ! -e $GDIR/data/images/$1 ]] || fail "image $1 deleted but $GDIR/data/images/$1 is still there"
}

KEEP=""          # the image downloads read; replaced by each upload
# upload KEY MODE(length|chunked): one timed upload into a new image, checked, then recorded.
upload() {
    local key=$1 mode=$2 id idle out code secs sent peak img t0 t1 extra=()
    [[ $mode == chunked ]] && extra=(-H 'Transfer-Encoding: chunked')
    id=$(create_image "bench-$key-$RANDOM")
    idle=$(status_kb "$GPID" VmRSS)
    start_sampler "$GPID" "$TMP/rss-$key"
    t0=$(cpu_ticks "$GPID")
    out=$(curl -sS -X PUT -H 'Content-Type: application/octet-stream' "${extra[@]}" -T "$FILE" \
        -o "$TMP/put-body" -w '%{http_code} %{time_total} %{size_upload}' "$GBASE/v2/images/$id/file") \
        || out="curl-error 0 0"
    t1=$(cpu_ticks "$GPID")
    stop_sampler "$TMP/rss-$key" "$idle"; peak=$PEAK
    read -r code secs sent <<<"$out"
    if [[ $code != 204 ]]; then
        fail "$key: PUT answered $code: $(head -c 300 "$TMP/put-body")"
        return
    fi
    # size_upload counts what went on the wire: chunked framing must be there, and only there.
    if [[ $mode == chunked ]]; then
        (( sent > SIZE )) || fail "$key: curl sent $sent bytes for $SIZE: no chunk framing?"
    else
        (( sent == SIZE )) || fail "$key: curl sent $sent bytes, not $SIZE"
    fi
    img=$(curl -sS -f "$GBASE/v2/images/$id") || die "GET image $id failed"
    [[ $(jq -r .status <<<"$img") == active ]] || fail "$key: image $id is $(jq -r .status <<<"$img") after the upload"
    [[ $(jq -r .os_hash_algo <<<"$img") == sha512 ]] || fail "$key: os_hash_algo is $(jq -r .os_hash_algo <<<"$img")"
    [[ $(jq -r .os_hash_value <<<"$img") == "$SHA512" ]] || fail "$key: os_hash_value $(jq -r .os_hash_value <<<"$img") is not openssl's $SHA512"
    [[ $(jq -r .checksum <<<"$img") == "$MD5" ]] || fail "$key: checksum $(jq -r .checksum <<<"$img") is not md5sum's $MD5"
    [[ $(jq -r .size <<<"$img") == "$SIZE" ]] || fail "$key: size $(jq -r .size <<<"$img") is not $SIZE"
    record "$key" "$(mbps "$SIZE" "$secs")" "$peak" "$(cores "$t0" "$t1" "$secs")"
    [[ -n $KEEP ]] && delete_image "$KEEP"
    KEEP=$id
}

download() {     # download KEY BASE_URL PATH SAMPLE_PID: one timed GET to /dev/null
    local key=$1 url=$2$3 pid=${4:-} idle out code secs got peak="" t0 t1 cpu=""
    if [[ -n $pid ]]; then idle=$(status_kb "$pid" VmRSS); start_sampler "$pid" "$TMP/rss-$key"; t0=$(cpu_ticks "$pid"); fi
    out=$(curl -sS -o /dev/null -w '%{http_code} %{time_total} %{size_download}' "$url") || out="curl-error 0 0"
    if [[ -n $pid ]]; then t1=$(cpu_ticks "$pid"); stop_sampler "$TMP/rss-$key" "$idle"; peak=$PEAK; fi
    read -r code secs got <<<"$out"
    [[ $code == 200 ]] || { fail "$key: GET $url answered $code"; return; }
    (( got == SIZE )) || { fail "$key: GET $url gave $got bytes, not $SIZE"; return; }
    [[ -n $pid ]] && cpu=$(cores "$t0" "$t1" "$secs")
    record "$key" "$(mbps "$SIZE" "$secs")" "$peak" "$cpu"
}

timed() {        # timed KEY CMD...: wall time of CMD (stdout kept for check_digest) as MB/s, and its CPU
    local key=$1 t0 secs user sys TIMEFORMAT='%3U %3S'; shift
    t0=$EPOCHREALTIME
    { time "$@" >"$TMP/timed-out" 2>"$TMP/timed-err"; } 2>"$TMP/timed-cpu" || die "$key: $* failed: $(head -c 300 "$TMP/timed-err")"
    secs=$(since "$t0")
    read -r user sys <"$TMP/timed-cpu"
    record "$key" "$(mbps "$SIZE" "$secs")" "" "$(awk -v u="$user" -v s="$sys" -v w="$secs" -v n="$SIZE" \
        'BEGIN{ c = u + s; if (w > 0) printf "%.2f|%.2f", c / w, c / (n / 1e9); else print "-|-" }')"
}

check_digest() { [[ $(cut -d' ' -f1 "$TMP/timed-out") == "${2:-$SHA512}" ]] || fail "$1 printed $(cut -c1-32 "$TMP/timed-out")..., not ${2:-$SHA512}"; }
copy_fsync() { dd if="$FILE" of="$TMP/copy.bin" bs=256K conv=fsync status=none; }
cat_null() { cat "$FILE" >/dev/null; }

# ---------------------------------------------------------------- main ----------------
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
RUSTC_START=$(pgrep -c -x rustc 2>/dev/null || true)
log "$(nproc) cores; load average at start $LOAD_START; rustc processes ${RUSTC_START:-0}"

cat "$FILE" >/dev/null   # page cache warm for everyone

# One untimed upload + download first: warms the server, and proves the bytes come back intact.
log "warm-up: upload, then download checked with openssl"
upload warmup length
[[ -n $KEEP ]] || die "the warm-up upload failed; see above and $GDIR/glint.log"
unset 'MBPS[warmup]' 'RSS[warmup]' 'LOADS[warmup]'
GOT=$(curl -sS -f "$GBASE/v2/images/$KEEP/file" | openssl dgst -sha512 -r | cut -d' ' -f1) || die "warm-up download failed"
[[ $GOT == "$SHA512" ]] || fail "downloaded bytes hash to ${GOT:0:32}..., not ${SHA512:0:32}..."
if [[ -n $NBASE ]]; then
    GOT=$(curl -sS -f "$NBASE/data.bin" | openssl dgst -sha512 -r | cut -d' ' -f1) || die "nginx download failed"
    [[ $GOT == "$SHA512" ]] || die "nginx serves bytes hashing to ${GOT:0:32}..."
fi

RUSTC_SEEN=0
for r in $(seq "$RUNS"); do
    rustc=$(pgrep -c -x rustc 2>/dev/null || true)
    (( ${rustc:-0} > 0 )) && RUSTC_SEEN=$((RUSTC_SEEN + 1))
    log "round $r/$RUNS (load1 $(cut -d' ' -f1 /proc/loadavg), rustc processes ${rustc:-0})"
    timed openssl openssl dgst -sha512 -r "$FILE"; check_digest "openssl dgst -sha512"
    timed sha512sum sha512sum "$FILE"; check_digest sha512sum
    timed md5sum md5sum "$FILE"; check_digest md5sum "$MD5"
    timed ddsync copy_fsync; rm -f "$TMP/copy.bin"
    upload put-length length
    if [[ $WANT_CHUNKED == 1 ]]; then upload put-chunked chunked; fi
    if [[ -n $NBASE ]]; then download nginx "$NBASE" /data.bin; fi
    timed cat cat_null
    download get "$GBASE" "/v2/images/$KEEP/file" "$GPID"
done

HWM=$(status_kb "$GPID" VmHWM)
IDLE_END=$(status_kb "$GPID" VmRSS)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
[[ -n $KEEP ]] && delete_image "$KEEP"
LEFT=$(find "$GDIR/data/images" -mindepth 1 | wc -l)
(( LEFT == 0 )) || fail "$LEFT file(s) left in the store after deleting every image: $(ls -A "$GDIR/data/images" | head -5 | tr '\n' ' ')"
stop_pid "$GPID"
if grep -qiE 'error|panic' "$GDIR/glint.log"; then
    log "WARNING: server log has errors:"; grep -iE 'error|panic' "$GDIR/glint.log" | head -20 >&2
fi

# ---------------------------------------------------------------- report --------------
cell() {         # cell KEY -> "median|runs|rss median|rss max|load range|cores|s per GB"
    local k=$1 m runs rss="-" rmax="-" loads cores="-" cpugb="-"
    [[ -n ${MBPS[$k]:-} ]] || { echo "-|-|-|-|-|-|-"; return; }
    # shellcheck disable=SC2086
    m=$(median ${MBPS[$k]}); runs=$(tr -s ' ' <<<"${MBPS[$k]# }" | sed 's/ /, /g')
    if [[ -n ${RSS[$k]:-} ]]; then
        # shellcheck disable=SC2086
        rss=$(median ${RSS[$k]}); rmax=$(printf '%s\n' ${RSS[$k]} | sort -g | tail -n 1)
    fi
    # shellcheck disable=SC2086
    loads=$(printf '%s\n' ${LOADS[$k]} | sort -g | sed -n '1p;$p' | paste -sd- | sed 's/-/–/')
    if [[ -n ${CORES[$k]:-} ]]; then
        # shellcheck disable=SC2086
        cores=$(median ${CORES[$k]}); cpugb=$(median ${CPUGB[$k]})
    fi
    echo "$m|$runs|$rss|$rmax|$loads|$cores|$cpugb"
}
med() { local c; c=$(cell "$1"); echo "${c%%|*}"; }
cpu_per_gb() { local c; c=$(cell "$1"); echo "${c##*|}"; }   # median CPU s per GB of KEY, or -

row() {          # row KEY LABEL REF_KEY FLOOR_KEY
    local c m runs rss rmax loads cores cpugb
    [[ -n ${MBPS[$1]:-} ]] || return 0
    c=$(cell "$1"); IFS='|' read -r m runs rss rmax loads cores cpugb <<<"$c"
    local vr="-" vf="-"
    [[ -n $3 ]] && vr=$(ratio "$m" "$(med "$3")")
    [[ -n $4 ]] && vf=$(ratio "$m" "$(med "$4")")
    [[ $rss == - ]] || rss="+$rss (max +$rmax)"
    [[ $cores == - ]] || cores="$cores ($cpugb s/GB)"
    echo "| $2 | $m | $runs | $vr | $vf | $rss | $cores | $loads |"
}

HASHES=$(awk -v a="$(cpu_per_gb openssl)" -v b="$(cpu_per_gb md5sum)" 'BEGIN{ if (a == "-" || b == "-") print "-"; else printf "%.2f", a + b }')
{
    echo
    echo "Glint data benchmark — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores shared by curl and the server," \
         "$(numfmt --to=iec "$SIZE") file ($SIZE bytes) of random bytes, median of $RUNS runs, $REV," \
         "load average $LOAD_START at start, $LOAD_END at end"
    echo
    echo "| measurement | MB/s (median) | runs (MB/s) | vs reference | vs floor | glint peak RSS above idle, MiB (median, max) | CPU (glint's, or the command's), cores busy (CPU s per GB) | load1 at runs |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    row openssl "\`openssl dgst -sha512\` (upload reference)" "" ""
    row sha512sum "\`sha512sum\` (context)" openssl ""
    row md5sum "\`md5sum\` (MD5 reference)" openssl ""
    row ddsync "\`dd bs=256K conv=fsync\` copy (disk write floor)" openssl ""
    row put-length "**glint PUT /file, Content-Length**" openssl ddsync
    row put-chunked "**glint PUT /file, chunked**" openssl ddsync
    row nginx "nginx GET, sendfile (download reference)" "" cat
    row cat "\`cat FILE >/dev/null\` (floor)" "" ""
    row get "**glint GET /file**" nginx cat
    echo
    echo "MB = 10^6 bytes; times are curl's time_total or the command's wall time, page cache warm." \
         "Upload rows: reference = openssl, floor = dd+fsync (every upload is fsynced);" \
         "download rows: reference = nginx, floor = cat."
    echo "glint VmRSS: idle $(awk -v k="$IDLE0" 'BEGIN{printf "%.1f", k/1024}') MiB after start," \
         "$(awk -v k="$IDLE_END" 'BEGIN{printf "%.1f", k/1024}') MiB idle at the end;" \
         "VmHWM at the end $(awk -v k="$HWM" 'BEGIN{printf "%.1f", k/1024}') MiB" \
         "(+$(awk -v k="$HWM" -v i="$IDLE0" 'BEGIN{printf "%.1f", (k-i)/1024}') MiB above the idle after start)." \
         "RSS sampled every ${SAMPLE}s during each transfer; CPU = utime+stime of the glint process over the transfer (medians)."
    echo "Upload CPU per GB: glint $(cpu_per_gb put-length) s (Content-Length), $(cpu_per_gb put-chunked) s (chunked);" \
         "\`openssl dgst -sha512\` $(cpu_per_gb openssl) s, \`md5sum\` $(cpu_per_gb md5sum) s, the two together $HASHES s;" \
         "ratio glint/openssl $(ratio "$(cpu_per_gb put-length)" "$(cpu_per_gb openssl)")," \
         "glint/(openssl + md5sum) $(ratio "$(cpu_per_gb put-length)" "$HASHES") (glint also receives the bytes and writes them)."
    echo "Rounds started while rustc was compiling on this machine: $RUSTC_SEEN of $RUNS."
    if (( FAILED )); then echo "**FAILED: a transfer, status code, size or digest was wrong (see stderr).**"; fi
    if [[ -z $NBASE ]]; then echo "nginx reference skipped."; fi
}
exit $(( FAILED ))

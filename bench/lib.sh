# Shell helpers shared by the bench/*.sh scripts (sourced, not run).

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

die() { log "FATAL: $*"; exit 1; }

stop_pid() {     # stop_pid PID: TERM, up to 5 s grace, then KILL; never a broad pattern
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

APT_UPDATED=0

# on_exit FUNCTION: run FUNCTION when the script ends, whatever ends it (status 130 on ^C, 143 on TERM).
on_exit() {
    trap "$1" EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

as_root() { if (( EUID == 0 )); then "$@"; else sudo "$@"; fi; }

apt_install() {  # apt_install PKG...: returns non-zero instead of aborting
    if (( ! APT_UPDATED )); then as_root apt-get update -qq || return 1; APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >&2
}

need_tools() {   # need_tools TOOL...: each on PATH, else installed from the Debian package of that name
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || apt_install "$tool" || die "cannot install $tool"
    done
}

find_nginx() {   # find_nginx WHAT: NGINX=its path, installed from Debian if missing; empty if that fails
    NGINX=$(command -v nginx || true)
    [[ -z $NGINX && -x /usr/sbin/nginx ]] && NGINX=/usr/sbin/nginx
    if [[ -z $NGINX ]]; then
        # Debian's postinst would start a system nginx unless policy-rc.d forbids it (it does
        # in most containers); the scripts only ever run their own throwaway instance.
        log "installing nginx from Debian ($1)"
        if apt_install nginx; then
            NGINX=$(command -v nginx || echo /usr/sbin/nginx)
        else
            log "WARNING: nginx did not install"
        fi
    fi
}

ratio() {        # ratio A B -> "0.42" or "-"
    [[ -n ${1:-} && -n ${2:-} && $1 != - && $2 != - ]] || { echo "-"; return; }
    awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else print "-" }'
}

free_port() {
    if command -v python3 >/dev/null; then
        python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
    else
        local p
        while :; do
            p=$(( 20000 + RANDOM % 20000 ))
            (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
        done
    fi
}

wait_http() {    # wait_http URL PID LOGFILE
    local url=$1 pid=$2 logf=$3 i
    for i in $(seq 300); do
        curl -sf -o /dev/null "$url" && return 0
        kill -0 "$pid" 2>/dev/null || { tail -n 30 "$logf" >&2; die "server exited before answering $url"; }
        sleep 0.1
    done
    tail -n 30 "$logf" >&2
    die "no answer from $url within 30 s"
}

seconds() {      # seconds COMMAND...: runs it (its stdout discarded), prints its wall-clock seconds
    local s
    s=$(date +%s.%N)
    "$@" >/dev/null || return
    awk -v s="$s" -v e="$(date +%s.%N)" 'BEGIN{printf "%.3f", e - s}'
}

median() {       # median of the numbers on stdin, one a line
    sort -g | awk '{a[NR]=$1} END{print (NR ? a[int((NR+1)/2)] : "-")}'
}

mbps() {         # mbps BYTES SECONDS -> MB/s, "-" without a time
    [[ -n ${2:-} && $2 != - ]] || { echo "-"; return; }
    awk -v b="$1" -v s="$2" 'BEGIN{ if (s > 0) printf "%.0f", b / s / 1e6; else print "-" }'
}

# --- Store benchmarks (bench/rbd.sh, bench/swift.sh): a real cluster from the integration
# tests' support scripts, `glint serve` with that cluster as its only store, and rounds that
# time the cluster's own command-line client against Glint's PUT and GET of the same file.

build_glint() {  # GLINT=the release binary (built unless BENCH_GLINT_BIN names one)
    GLINT=${BENCH_GLINT_BIN:-$CARGO_TARGET_DIR/release/glint}
    if [[ -z ${BENCH_GLINT_BIN:-} ]]; then
        log "cargo build --release --bin glint (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
        (cd "$ROOT" && cargo build --release --bin glint) >&2 || die "cargo build failed"
    fi
    [[ -x $GLINT ]] || die "no binary at $GLINT"
}

since() {        # since START (date +%s.%N) -> seconds elapsed, one decimal
    awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN{printf "%.1f", e - s}'
}

start_ceph() {   # start_ceph DIR: one-node Ceph (support/ceph.sh) in DIR; sets CEPH_CONF, SETUP
    local dir=$1 start
    command -v ceph-mon >/dev/null || die "ceph-mon missing (apt-get install ceph-mon ceph-mgr ceph-osd ceph-common)"
    log "starting a one-node Ceph cluster"
    start=$(date +%s.%N)
    # Its watchdog also stops the daemons once this script's process is gone, however it ends.
    bash "$ROOT/tests/integration/support/ceph.sh" "$dir" "$(free_port)" $$ >"$dir.log" 2>&1 \
        || { cat "$dir.log" >&2; die "the Ceph cluster did not come up"; }
    SETUP=$(since "$start")
    CEPH_CONF=$dir/ceph.conf
    CEPH_DIR=$dir
}

stop_ceph() {    # stops the daemons of start_ceph's cluster, if any
    local pidfile
    [[ -n ${CEPH_DIR:-} && -d $CEPH_DIR/run ]] || return 0
    for pidfile in "$CEPH_DIR"/run/*.pid; do
        [[ -f $pidfile ]] && stop_pid "$(cat "$pidfile")"
    done
}

start_swift() {  # start_swift DIR: Swift all-in-one (support/swift.sh) in DIR; sets SWIFT_AUTH_URL,
                 # SWIFT_USER, SWIFT_KEY, SETUP, SWIFT_PID; stop_swift stops it
    local dir=$1 start line words port ports=()
    log "starting a Swift all-in-one"
    for port in 1 2 3 4 5; do ports+=("$(free_port)"); done
    start=$(date +%s.%N)
    # The script runs until its standard input closes: a FIFO this shell holds open on fd 7.
    mkfifo "$dir.stdin"
    bash "$ROOT/tests/integration/support/swift.sh" "$dir" "${ports[@]}" <"$dir.stdin" >"$dir.out" 2>"$dir.log" &
    SWIFT_PID=$!
    exec 7>"$dir.stdin"
    for _ in $(seq 600); do
        line=$(head -n 1 "$dir.out" 2>/dev/null)
        [[ -n $line ]] && break
        kill -0 "$SWIFT_PID" 2>/dev/null || break
        sleep 0.1
    done
    read -r -a words <<<"$line"
    [[ ${words[0]:-} == ready ]] || { cat "$dir.log" >&2; die "the Swift all-in-one did not come up"; }
    SETUP=$(since "$start")
    SWIFT_AUTH_URL=${words[1]} SWIFT_USER=${words[2]} SWIFT_KEY=${words[3]}
}

stop_swift() {   # closes the all-in-one's standard input, then stops it for sure
    [[ -n ${SWIFT_PID:-} ]] || return 0
    exec 7>&-
    stop_pid "$SWIFT_PID"
}

start_glint() {  # start_glint DIR KEY=VALUE...: `glint serve` on SQLite whose default and only
                 # store `bench` is configured by the KEY=VALUEs (GLINT__STORAGE__BACKENDS__BENCH__KEY);
                 # sets GBASE, appends the pid to PIDS
    local dir=$1 port setting env=()
    shift
    for setting in "$@"; do env+=("GLINT__STORAGE__BACKENDS__BENCH__${setting%%=*}=${setting#*=}"); done
    port=$(free_port)
    GBASE="http://127.0.0.1:$port"
    mkdir -p "$dir"
    (cd "$dir" && exec env RUST_LOG=warn GLINT__SERVER__BIND="127.0.0.1:$port" \
        GLINT__DATABASE__URL="sqlite://$dir/glint.db?mode=rwc" GLINT__STORAGE__DEFAULT=bench \
        "${env[@]}" "$GLINT" serve) >"$dir/glint.log" 2>&1 &
    PIDS+=($!)
    wait_http "$GBASE/versions" "$!" "$dir/glint.log"
}

glint_upload() { # glint_upload FILE SHA512 -> "ID SECONDS": PUT /v2/images/{id}/file with a length
    local file=$1 sha=$2 id took got
    id=$(curl -sf -X POST -H 'Content-Type: application/json' \
        -d '{"disk_format":"raw","container_format":"bare"}' "$GBASE/v2/images" | jq -r .id)
    took=$(seconds curl -sf -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' \
        -T "$file" "$GBASE/v2/images/$id/file") || die "PUT of $file to image $id failed"
    got=$(curl -sf "$GBASE/v2/images/$id" | jq -r .os_hash_value)
    [[ $got == "$sha" ]] || die "image $id: os_hash_value $got, sha512sum $sha"
    echo "$id $took"
}

glint_download() { # glint_download ID -> SECONDS of GET /v2/images/{id}/file to /dev/null
    seconds curl -sf -o /dev/null "$GBASE/v2/images/$1/file" || die "GET of image $1 failed"
}

glint_delete() { curl -sf -o /dev/null -X DELETE "$GBASE/v2/images/$1" || die "DELETE of image $1 failed"; }

store_report() { # store_report SIZE RUNS TOOL "UP CLI" "UP GLINT" "DOWN CLI" "DOWN GLINT" ... :
                 # a markdown table of medians, MB/s and Glint/CLI speed ratios; the arguments
                 # after TOOL are LABEL CLI-SECONDS GLINT-SECONDS triples
    local bytes=$1 runs=$2 tool=$3
    shift 3
    echo "| $(numfmt --to=iec "$bytes"), median of $runs | $tool (s) | Glint (s) | $tool MB/s | Glint MB/s | Glint speed / $tool speed |"
    echo "|---|---|---|---|---|---|"
    while (($# >= 3)); do
        echo "| $1 | $2 | $3 | $(mbps "$bytes" "$2") | $(mbps "$bytes" "$3") | $(ratio "$2" "$3") |"
        shift 3
    done
}

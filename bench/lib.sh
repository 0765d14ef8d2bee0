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

as_root() { if (( EUID == 0 )); then "$@"; else sudo "$@"; fi; }

apt_install() {  # apt_install PKG...: returns non-zero instead of aborting
    if (( ! APT_UPDATED )); then as_root apt-get update -qq || return 1; APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >&2
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

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

#!/usr/bin/env bash
# A Swift all-in-one on loopback for the Swift store tests: memcached, one proxy with tempauth,
# one account, one container and one object server, one replica on one directory-backed device
# (mount_check off). Debian's swift 2.30 packages (swift, swift-proxy, swift-account,
# swift-container, swift-object) and memcached provide the programs; .ci/run installs them.
#
#   swift.sh DIR PROXY_PORT ACCOUNT_PORT CONTAINER_PORT OBJECT_PORT MEMCACHED_PORT
#
# Writes its configuration, rings and data under DIR (which must be on a filesystem with user
# extended attributes, as the object server keeps metadata in them), starts the servers, waits
# until a tempauth login works and prints one line:
#
#   ready AUTH_URL USER KEY
#
# then runs until its standard input closes (the test process that started it exited, however
# it ended) or it gets SIGINT/SIGTERM, and then stops the servers and removes DIR. Any failure
# before "ready" prints the servers' last log lines on stderr and exits non-zero.
#
#   swift.sh keystone-proxy DIR PORT KEYSTONE_URL SERVICE_USER SERVICE_PASSWORD SERVICE_PROJECT
#
# Runs a second proxy in front of the all-in-one in DIR that takes Keystone tokens instead of
# tempauth's (keystonemiddleware's authtoken, Debian's python3-keystonemiddleware, then
# keystoneauth: the admin and member roles own their project's account AUTH_<project id>);
# prints "ready" once it answers, and stops it when its standard input closes.
set -euo pipefail

# Debian's Python, which the swift packages use (a python3 earlier in PATH may be a slow shim).
python=/usr/bin/python3

if [[ ${1:-} == keystone-proxy ]]; then
    if (($# != 7)); then
        echo "usage: $0 keystone-proxy DIR PORT KEYSTONE_URL SERVICE_USER SERVICE_PASSWORD SERVICE_PROJECT" >&2
        exit 2
    fi
    dir=$2 port=$3 keystone=$4 service_user=$5 service_password=$6 service_project=$7
    "$python" -c 'import keystonemiddleware.auth_token' 2>/dev/null || {
        echo "keystonemiddleware is not installed (Debian: python3-keystonemiddleware)" >&2
        exit 3
    }
    conf=$dir/etc/proxy-keystone.conf log=$dir/log/proxy-keystone.log
    sed -e "s/^bind_port = .*/bind_port = $port/" -e "s/^log_name = .*/log_name = proxy-keystone/" \
        -e "s/ tempauth / authtoken keystoneauth /" "$dir/etc/proxy-server.conf" >"$conf"
    cat >>"$conf" <<EOF

[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
www_authenticate_uri = $keystone
auth_url = $keystone
auth_type = password
username = $service_user
password = $service_password
project_name = $service_project
user_domain_id = default
project_domain_id = default
delay_auth_decision = true
# The test Keystone's catalog has its public identity endpoint only.
interface = public

[filter:keystoneauth]
use = egg:swift#keystoneauth
operator_roles = admin, member
EOF
    swift-proxy-server "$conf" -v >"$log" 2>&1 &
    pid=$!
    trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
    trap 'exit 0' INT TERM
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$log" >&2; exit 1; }
        if "$python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
            "http://127.0.0.1:$port/healthcheck" 2>/dev/null; then
            echo ready
            while read -r _; do :; done
            exit 0
        fi
        sleep 0.1
    done
    tail -n 20 "$log" >&2
    exit 1
fi

if (($# != 6)); then
    echo "usage: $0 DIR PROXY_PORT ACCOUNT_PORT CONTAINER_PORT OBJECT_PORT MEMCACHED_PORT" >&2
    exit 2
fi
dir=$1 proxy_port=$2 account_port=$3 container_port=$4 object_port=$5 memcached_port=$6
user=glint:tester key=testing
auth_url="http://127.0.0.1:$proxy_port/auth/v1.0"

for program in swift-ring-builder swift-proxy-server swift-account-server swift-container-server \
    swift-object-server memcached; do
    command -v "$program" >/dev/null || {
        echo "$program is not installed (Debian: swift swift-proxy swift-account swift-container swift-object memcached)" >&2
        exit 3
    }
done

etc=$dir/etc devices=$dir/devices logs=$dir/log
mkdir -p "$etc" "$devices/d1" "$logs"

if ! "$python" -c 'import os, sys; os.setxattr(sys.argv[1], "user.glint", b"1")' "$devices/d1" 2>/dev/null; then
    echo "$devices/d1 has no user extended attributes; the object server needs them" >&2
    exit 3
fi

pids=()
stop() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$dir"
}
trap stop EXIT
trap 'exit 0' INT TERM

run_as=$(id -un)

cat >"$etc/swift.conf" <<EOF
[swift-hash]
swift_hash_path_suffix = glint-test-suffix
swift_hash_path_prefix = glint-test-prefix

[storage-policy:0]
name = gold
default = yes
EOF

# One replica of 256 partitions on the single device; rebalance exits 1 for "balanced with
# warnings", which a one-device ring always is. The three rings build at once (each
# swift-ring-builder run is a Python start-up).
build_ring() {
    local name=$1 port=$2
    swift-ring-builder "$etc/$name.builder" create 8 1 1 >/dev/null
    swift-ring-builder "$etc/$name.builder" add "r1z1-127.0.0.1:$port/d1" 1 >/dev/null
    swift-ring-builder "$etc/$name.builder" rebalance >/dev/null || (($? == 1))
}
ring_builds=()
for ring in account:$account_port container:$container_port object:$object_port; do
    build_ring "${ring%%:*}" "${ring##*:}" &
    ring_builds+=($!)
done
for build in "${ring_builds[@]}"; do
    wait "$build" || { echo "building a ring failed" >&2; exit 1; }
done

# What every server shares: loopback, one process (workers = 0), no privilege drop, the
# device directory; no preallocation and no free-space reserve (Swift's default refuses writes
# with 507 below 1% free, and a test machine's disk may well be that full).
common() {
    cat <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $1
workers = 0
user = $run_as
swift_dir = $etc
devices = $devices
mount_check = false
disable_fallocate = true
fallocate_reserve = 0
log_name = $2
log_level = INFO
EOF
}

for server in account container object; do
    port_var=${server}_port
    {
        common "${!port_var}" "$server-server"
        cat <<EOF

[pipeline:main]
pipeline = healthcheck $server-server

[filter:healthcheck]
use = egg:swift#healthcheck

[app:$server-server]
use = egg:swift#$server
EOF
    } >"$etc/$server-server.conf"
done

{
    common "$proxy_port" proxy-server
    cat <<EOF

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempauth copy slo dlo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
allow_account_management = true

[filter:tempauth]
use = egg:swift#tempauth
user_glint_tester = $key .admin

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$memcached_port

[filter:catch_errors]
use = egg:swift#catch_errors

# Clients may set X-Timestamp: the sweep tests backdate the leases of "dead" uploads.
[filter:gatekeeper]
use = egg:swift#gatekeeper
shunt_inbound_x_timestamp = false

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:bulk]
use = egg:swift#bulk

[filter:copy]
use = egg:swift#copy

[filter:slo]
use = egg:swift#slo

[filter:dlo]
use = egg:swift#dlo
EOF
} >"$etc/proxy-server.conf"

memcached -l 127.0.0.1 -p "$memcached_port" -U 0 -u "$run_as" >"$logs/memcached.log" 2>&1 &
pids+=($!)
for server in account container object proxy; do
    # -v: log to stderr as well as syslog, so that the log file holds what went wrong.
    "swift-$server-server" "$etc/$server-server.conf" -v >"$logs/$server.log" 2>&1 &
    pids+=($!)
done

fail() {
    echo "$1" >&2
    for log in "$logs"/*.log; do
        echo "--- $log" >&2
        tail -n 20 "$log" >&2
    done
    exit 1
}

# Ready when a tempauth login works and the account answers through the proxy.
for _ in $(seq 1 300); do
    for pid in "${pids[@]}"; do
        kill -0 "$pid" 2>/dev/null || fail "a Swift server exited during start-up"
    done
    if "$python" - "$auth_url" "$user" "$key" 2>/dev/null <<'EOF'
import sys, urllib.request
auth, user, key = sys.argv[1:]
login = urllib.request.urlopen(urllib.request.Request(auth, headers={"X-Auth-User": user, "X-Auth-Key": key}), timeout=2)
account = urllib.request.Request(login.headers["X-Storage-Url"], method="HEAD", headers={"X-Auth-Token": login.headers["X-Auth-Token"]})
urllib.request.urlopen(account, timeout=2)
EOF
    then
        echo "ready $auth_url $user $key"
        # Until the parent goes away: EOF (or an error) on stdin ends the read.
        while read -r _; do :; done
        exit 0
    fi
    sleep 0.1
done
fail "Swift did not answer a tempauth login within 30 s"

#!/bin/bash
# A one-node Ceph cluster on loopback for the RBD store tests: a monitor on port $2, a manager,
# one bluestore OSD on a sparse file, pool `images` initialised for RBD, and a cephx user
# `client.glance` with Glance's usual caps. Everything lives in directory $1; the daemons are
# stopped and the directory removed once process $3 (the test run) has exited.
# Prints the cluster fsid on its last line.
set -euo pipefail
D=$1 PORT=$2 OWNER=$3
rm -rf "$D"; mkdir -p "$D"/{mon,mgr,osd0,run,log}
FSID=$(cat /proc/sys/kernel/random/uuid)
cat > "$D/ceph.conf" <<CONF
[global]
fsid = $FSID
mon host = v2:127.0.0.1:$PORT
mon initial members = a
public network = 127.0.0.0/8
ms bind ipv6 = false
auth allow insecure global id reclaim = false
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
osd crush chooseleaf type = 0
run dir = $D/run
admin socket = $D/run/\$name.asok
log file = $D/log/\$name.log
pid file = $D/run/\$name.pid
client mount timeout = 30
mon data = $D/mon
mgr data = $D/mgr
osd data = $D/osd\$id
osd objectstore = bluestore
bluestore block create = true
bluestore block size = 4294967296
osd memory target = 939524096
[client]
keyring = $D/admin.keyring
[mon]
keyring = $D/mon.keyring
[mgr]
keyring = $D/mgr/keyring
[osd]
keyring = $D/osd\$id/keyring
CONF
C=(-c "$D/ceph.conf")
ceph-authtool --create-keyring "$D/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool --create-keyring "$D/admin.keyring" --gen-key -n client.admin \
  --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
ceph-authtool "$D/mon.keyring" --import-keyring "$D/admin.keyring" >/dev/null
monmaptool --create --addv a "[v2:127.0.0.1:$PORT]" --fsid "$FSID" "$D/monmap" >/dev/null
ceph-mon "${C[@]}" --mkfs -i a --monmap "$D/monmap" --keyring "$D/mon.keyring"
ceph-mon "${C[@]}" -i a
ceph "${C[@]}" auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' \
  -o "$D/mgr/keyring" >/dev/null 2>&1
ceph-mgr "${C[@]}" -i x
UUID=$(cat /proc/sys/kernel/random/uuid)
ID=$(ceph "${C[@]}" osd new "$UUID")
ceph-osd "${C[@]}" -i "$ID" --mkfs --mkkey --osd-uuid "$UUID" --no-mon-config >"$D/log/mkfs.log" 2>&1
ceph "${C[@]}" auth add "osd.$ID" osd 'allow *' mon 'allow profile osd' -i "$D/osd$ID/keyring" >/dev/null 2>&1
ceph "${C[@]}" osd crush add "osd.$ID" 1.0 root=default >/dev/null 2>&1
ceph-osd "${C[@]}" -i "$ID"
ceph "${C[@]}" osd pool create images 8 >/dev/null 2>&1
rbd "${C[@]}" pool init images
ceph "${C[@]}" auth get-or-create client.glance mon 'profile rbd' osd 'profile rbd pool=images' \
  -o "$D/glance.keyring" >/dev/null 2>&1
# The watchdog: tear down after the test run, however it ends.
setsid bash -c "while kill -0 $OWNER 2>/dev/null; do sleep 1; done
  for p in $D/run/*.pid; do kill \$(cat \$p) 2>/dev/null; done; sleep 2
  for p in $D/run/*.pid; do kill -9 \$(cat \$p) 2>/dev/null; done; rm -rf $D" </dev/null >/dev/null 2>&1 &
echo "$FSID"

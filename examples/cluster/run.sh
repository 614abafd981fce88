#!/bin/sh
# Three lunamq nodes and one nats-server on this machine (ports 1881-1883 and 4222).
# From the repository root, after `make`:   sh examples/cluster/run.sh
# Then, in another terminal:
#   mosquitto_sub -p 1883 -t 'demo/#' -v &
#   mosquitto_pub -p 1881 -t demo/hello -m 'from node 1'
#   mosquitto_pub -p 1882 -t demo/state -m 'kept' -r    # retained, on node 2
#   mosquitto_sub -p 1883 -t demo/state -C 1 -v         # node 3 has it too (JetStream)
#   build/lunamq-ctl -s /tmp/lunamq-cluster-node1.sock stats | grep cluster_
# and a session that moves: subscribe on node 1, go, come back on node 2:
#   mosquitto_sub -p 1881 -i car1 -c -q 1 -t 'car/#' -v    (Ctrl-C it)
#   mosquitto_pub -p 1883 -q 1 -t car/cmd -m 'while away'
#   mosquitto_sub -p 1882 -i car1 -c -q 1 -t 'car/#' -v    (prints it)
# Ctrl-C stops them all.
set -e
cd "$(dirname "$0")/../.."
[ -x build/lunamq ] || { echo "build/lunamq missing: run make first" >&2; exit 1; }
js=$(mktemp -d /tmp/lunamq-cluster-js.XXXXXX) # JetStream's store: sessions, retained
nats-server -a 127.0.0.1 -p 4222 -js -sd "$js" &
pids=$!
trap 'kill $pids 2>/dev/null; wait; rm -rf "$js"' INT TERM EXIT
sleep 0.5
for i in 1 2 3; do
    build/lunamq -c examples/cluster/node$i.conf &
    pids="$pids $!"
done
echo "nodes on 127.0.0.1:1881, 1882 and 1883; NATS on 4222 (pids $pids). Ctrl-C stops them."
wait

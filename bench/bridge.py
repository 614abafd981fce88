#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""bridge (issue 17): what a message costs going through a bridge, lunamq against
mosquitto in the same run.

Two brokers of one kind on loopback: an edge with a bridge (`connection`, `topic bench/#
out QOS`) to a remote. build/lunamq-bench fanout puts its publisher on the edge
(--pub-port) and its subscriber on the remote, so every message crosses the bridge.
Both setups get the same configuration lines, alternating, freshly started each round:
- at a fixed rate every setup keeps up with (10 000 messages/s by default): CPU per
  message of the edge (the bridge's cost) and of the remote, latency;
- as fast as the publisher goes (-r 0): messages per second through the bridge.
Medians of the rounds; every process stopped by PID.

Usage: bench/bridge.py [--rounds R] [--seconds S] [--qos 0,1] [--rate N]"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import ROOT, cpu_s, free_port, start_broker, stop_broker

BENCH = os.path.join(ROOT, "build", "lunamq-bench")
KINDS = ("lunamq", "mosquitto")


def lines(kind, port, work, name, bridge_to=None, qos=0):
    out = ["listener %d 127.0.0.1" % port, "allow_anonymous true", "max_queued_messages 10000",
           "max_inflight_messages 100"]
    if kind == "lunamq":
        out += ["log_type error", "admin_socket none", "max_queued_bytes 0",
                "scripts_dir " + os.path.join(work, "no-scripts")]
    else:
        out += ["user root", "log_dest none"]
    if bridge_to:
        out += ["connection %s" % name, "address 127.0.0.1:%d" % bridge_to,
                "bridge_protocol_version mqttv311", "topic bench/# out %d" % qos,
                "notifications false"]
    return out


def one_run(kind, qos, seconds, rate, work):
    procs = []
    try:
        remote, edge = free_port(), free_port()
        procs.append(start_broker(kind, os.path.join(work, "r.conf"),
                                  lines(kind, remote, work, "r"), [remote]))
        procs.append(start_broker(kind, os.path.join(work, "e.conf"),
                                  lines(kind, edge, work, "e", remote, qos), [edge]))
        time.sleep(1.0)  # the bridge connected and subscribed
        cmd = [BENCH, "fanout", "-n", "1", "-q", str(qos), "-s", "64", "-p", str(remote),
               "--pub-port", str(edge), "-d", str(seconds), "-r", str(rate), "-V", "4", "--json"]
        c0 = [cpu_s(p.pid) for p in procs]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 90)
        c1 = [cpu_s(p.pid) for p in procs]
        out = json.loads(r.stdout.strip().splitlines()[-1])
        delivered = max(out["delivered"], 1)
        return {"delivered_per_s": out["delivered_per_s"],
                "edge_us": (c1[1] - c0[1]) * 1e6 / delivered,
                "remote_us": (c1[0] - c0[0]) * 1e6 / delivered,
                "p50_us": out["latency_p50_us"], "p99_us": out["latency_p99_us"],
                "lost": out["lost"]}
    finally:
        for p in procs:
            stop_broker(p)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--qos", default="0,1")
    ap.add_argument("--rate", type=int, default=10000)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="lunamq-bridge-bench-")
    os.makedirs(os.path.join(work, "no-scripts"))
    rows = []
    try:
        for qos in [int(q) for q in a.qos.split(",")]:
            for rate in (a.rate, 0):
                runs = {k: [] for k in KINDS}
                for _ in range(a.rounds):
                    for k in KINDS:
                        runs[k].append(one_run(k, qos, a.seconds, rate, work))
                med = {k: {f: statistics.median(r[f] for r in runs[k]) for f in runs[k][0]}
                       for k in KINDS}
                rows.append((qos, rate, med))
    finally:
        shutil.rmtree(work, True)
    print("bridge: publisher -> edge broker -(bridge, topic bench/# out QOS, MQTT 3.1.1)-> "
          "remote broker -> 1 subscriber, 64 B, %d rounds of %d s, medians" % (a.rounds, a.seconds))
    print()
    print("| QoS | rate | broker | delivered/s | edge CPU us/msg | remote CPU us/msg | "
          "p50 us | p99 us | lost |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for qos, rate, med in rows:
        for k in KINDS:
            x = med[k]
            print("| %d | %s | %s | %.0f | %.2f | %.2f | %.0f | %.0f | %d |" % (
                qos, rate or "max", k, x["delivered_per_s"], x["edge_us"], x["remote_us"],
                x["p50_us"], x["p99_us"], x["lost"]))
    print()
    for qos, rate, med in rows:
        l, m = med["lunamq"], med["mosquitto"]
        if rate:
            print("QoS %d at %d/s: lunamq's bridging edge spends %.2f us per message, "
                  "mosquitto's %.2f (%.1fx)" % (qos, rate, l["edge_us"], m["edge_us"],
                                                m["edge_us"] / max(l["edge_us"], 1e-9)))
        else:
            print("QoS %d, as fast as it goes: %.0f messages/s through lunamq's bridge, %.0f "
                  "through mosquitto's (%.1fx)" % (qos, l["delivered_per_s"], m["delivered_per_s"],
                                                   l["delivered_per_s"] /
                                                   max(m["delivered_per_s"], 1)))
    print()
    print("command: bench/bridge.py --rounds %d --seconds %d --qos %s --rate %d" % (
        a.rounds, a.seconds, a.qos, a.rate))


if __name__ == "__main__":
    sys.exit(main())

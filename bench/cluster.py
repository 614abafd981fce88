#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""cluster-fanout (issue 16): what a message costs when it crosses nodes through NATS.

The same load three ways, alternating, each on freshly started processes
(build/lunamq-bench fanout: 1 publisher, 50 subscribers, QoS 0 and 1, 64 B, at a fixed
rate that every setup keeps up with (10 000 messages/s, 500 000 deliveries/s by default):
CPU per message is the figure, not throughput, on a machine with 2 shared cores):
- local:      one lunamq, no cluster;
- no-taker:   one lunamq in a cluster (a nats-server, no other node): the publisher and
              the subscribers on it, so every message also goes to NATS, where nobody
              wants it;
- cross-node: two nodes; the publisher on node 1, the 50 subscribers on node 2.
Broker CPU (both nodes together) per published and per delivered message, nats-server's
CPU, throughput and latency: medians of the rounds. Loopback only; every process is
stopped by PID.

Usage: bench/cluster.py [--rounds R] [--seconds S] [--qos 0,1] [--rate N]"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import ROOT, cpu_s, free_port, start_broker, stop_broker, wait_port

BENCH = os.path.join(ROOT, "build", "lunamq-bench")
NATS = shutil.which("nats-server") or "/usr/sbin/nats-server"
SUBSCRIBERS = 50


def node_lines(port, work, name, nats_port):
    lines = ["listener %d 127.0.0.1" % port, "allow_anonymous true", "max_queued_messages 1000",
             "max_queued_bytes 0", "log_type error", "admin_socket none",
             "scripts_dir " + os.path.join(work, "no-scripts")]
    if nats_port:
        lines += ["cluster_name bench", "cluster_node_id " + name,
                  "cluster_nats_url nats://127.0.0.1:%d" % nats_port]
    return lines


def one_run(mode, qos, seconds, rate, work):
    nats = None
    procs = []
    try:
        nats_port = None
        if mode != "local":
            nats_port = free_port()
            nats = subprocess.Popen([NATS, "-a", "127.0.0.1", "-p", str(nats_port)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_port(nats_port, proc=nats)
        p1 = free_port()
        procs.append(start_broker("lunamq", os.path.join(work, "n1.conf"),
                                  node_lines(p1, work, "n1", nats_port), [p1]))
        sub_port, pub_port = p1, None
        if mode == "cross-node":
            p2 = free_port()
            procs.append(start_broker("lunamq", os.path.join(work, "n2.conf"),
                                      node_lines(p2, work, "n2", nats_port), [p2]))
            sub_port, pub_port = p2, p1
        time.sleep(0.5)  # the nodes connected to NATS
        cmd = [BENCH, "fanout", "-n", str(SUBSCRIBERS), "-q", str(qos), "-s", "64", "-p",
               str(sub_port), "-d", str(seconds), "-r", str(rate), "--json"]
        if pub_port:
            cmd += ["--pub-port", str(pub_port)]
        pids = [p.pid for p in procs] + ([nats.pid] if nats else [])
        c0 = [cpu_s(pid) for pid in pids]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 90)
        c1 = [cpu_s(pid) for pid in pids]
        out = json.loads(r.stdout.strip().splitlines()[-1])
        used = [b - a for a, b in zip(c0, c1)]
        brokers = sum(used[:len(procs)])
        sent, delivered = max(out["sent"], 1), max(out["delivered"], 1)
        return {"delivered_per_s": out["delivered_per_s"], "sent_per_s": out["sent_per_s"],
                "us_per_sent": brokers * 1e6 / sent, "us_per_delivered": brokers * 1e6 / delivered,
                "nats_us_per_sent": (used[-1] * 1e6 / sent) if nats else 0.0,
                "p50_us": out["latency_p50_us"], "p99_us": out["latency_p99_us"],
                "lost": out["lost"]}
    finally:
        for p in procs:
            stop_broker(p)
        if nats is not None:
            nats.terminate()
            nats.wait(10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--qos", default="0,1")
    ap.add_argument("--rate", type=int, default=10000)
    a = ap.parse_args()
    modes = ["local", "no-taker", "cross-node"]
    work = tempfile.mkdtemp(prefix="lunamq-cluster-bench-")
    os.makedirs(os.path.join(work, "no-scripts"))
    try:
        rows = []
        for qos in [int(q) for q in a.qos.split(",")]:
            runs = {m: [] for m in modes}
            for _ in range(a.rounds):
                for m in modes:
                    runs[m].append(one_run(m, qos, a.seconds, a.rate, work))
            med = {m: {k: statistics.median(r[k] for r in runs[m]) for k in runs[m][0]}
                   for m in modes}
            rows.append((qos, med))
    finally:
        shutil.rmtree(work, True)
    print("cluster-fanout: 1 publisher at %d messages/s, %d subscribers, 64 B, %d rounds "
          "of %d s, medians" % (a.rate, SUBSCRIBERS, a.rounds, a.seconds))
    print()
    print("| QoS | setup | delivered/s | lunamq CPU us per published | per delivered | "
          "nats-server us per published | p50 us | p99 us | lost |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for qos, med in rows:
        for m in modes:
            x = med[m]
            print("| %d | %s | %.0f | %.2f | %.3f | %.2f | %.0f | %.0f | %d |" % (
                qos, m, x["delivered_per_s"], x["us_per_sent"], x["us_per_delivered"],
                x["nats_us_per_sent"], x["p50_us"], x["p99_us"], x["lost"]))
    print()
    for qos, med in rows:
        local = med["local"]["us_per_sent"]
        print("QoS %d: a message crossing nodes costs %+.2f us of lunamq CPU (both nodes) "
              "against a local one (%.2f vs %.2f us per published message, 50 deliveries "
              "each); one no other node wants costs %+.2f us" % (
                  qos, med["cross-node"]["us_per_sent"] - local,
                  med["cross-node"]["us_per_sent"], local,
                  med["no-taker"]["us_per_sent"] - local))
    print()
    print("command: bench/cluster.py --rounds %d --seconds %d --qos %s --rate %d" % (
        a.rounds, a.seconds, a.qos, a.rate))


if __name__ == "__main__":
    sys.exit(main())

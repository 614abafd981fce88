#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""lunamq against Debian's mosquitto with build/lunamq-bench: the same scenarios, the
same load, in one run, alternating A/B, each on a freshly started broker. Prints a
Markdown table of medians and lunamq/mosquitto ratios, and the exact commands.

Usage: bench/compare.py [--rounds R] [--seconds S] [--only TEXT] [--before BIN]
(loopback only). --before BIN compares build/lunamq with another lunamq build instead of
mosquitto (before/after figures for a change on the message path; both then run without
the options the older build may not know)."""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile

from benchlib import ROOT, free_port, start_broker, stop_broker

BENCH = os.path.join(ROOT, "build", "lunamq-bench")

# name, lunamq-bench arguments, the figure that matters, what is better
SCENARIOS = [
    ("fan-in QoS 0, 4 publishers, 64 B", ["fanin", "-n", "4", "-q", "0", "-s", "64"]),
    # the flood above makes lunamq-bench (one process) the bottleneck: what the broker
    # does with a load it can take, offered at a fixed rate
    ("fan-in QoS 0, 4 publishers at 3M msg/s", ["fanin", "-n", "4", "-q", "0", "-s", "64", "-r", "3000000"]),
    ("fan-in QoS 1, 4 publishers, 64 B", ["fanin", "-n", "4", "-q", "1", "-s", "64"]),
    # MQTT 5 clients are told our Receive Maximum (20 in flight each); 3.1.1 ones above keep
    # lunamq-bench's window of 100
    ("fan-in QoS 1, 4 publishers, 64 B, MQTT 5", ["fanin", "-n", "4", "-q", "1", "-s", "64", "-V", "5"]),
    ("fan-out QoS 0 to 50 subscribers", ["fanout", "-n", "50", "-q", "0", "-s", "64"]),
    ("fan-out QoS 0 to 1000 subscribers", ["fanout", "-n", "1000", "-q", "0", "-s", "64"]),
    ("fan-out QoS 1 to 50 subscribers", ["fanout", "-n", "50", "-q", "1", "-s", "64"]),
    ("100 pairs QoS 1 at 20k msg/s", ["pairs", "-n", "100", "-q", "1", "-s", "64", "-r", "20000"]),
    ("1 MB payloads QoS 1, 1 publisher", ["fanin", "-n", "1", "-q", "1", "-s", "1000000"]),
    ("connection storm, 8 clients", ["conn", "-n", "8"]),
    ("10 000 idle connections", ["idle", "-n", "10000"]),
]


def start(kind, work, ab=False):
    port = free_port()
    conf = os.path.join(work, kind + ".conf")
    # the same queue bounds for both: mosquitto's defaults (lunamq's own default adds a
    # 64 MiB byte bound, which would hold the 1 MB publisher far sooner)
    lines = ["listener %d 127.0.0.1" % port, "allow_anonymous true", "max_queued_messages 1000",
             "max_queued_bytes 0", "log_type error"]
    if kind != "mosquitto":
        lines += ["admin_socket none", "scripts_dir " + os.path.join(work, "no-scripts")]
    if kind == "lunamq" and not ab:
        lines += ["max_queued_bytes_total 0"]  # mosquitto has no broker-wide bound either
    return start_broker(kind, conf, lines, [port]), port


def run(args, port, pid, seconds):
    cmd = [BENCH, *args, "-p", str(port), "-d", str(seconds), "--pid", str(pid), "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "{}"
    return json.loads(line)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--only", default="")
    ap.add_argument("--before", help="another lunamq binary to compare with, not mosquitto")
    args = ap.parse_args()
    other = "mosquitto"
    if args.before:
        os.environ["LUNAMQ_BEFORE"] = os.path.abspath(args.before)
        other = "before"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # brokers and clients inherit it
    scenarios = [s for s in SCENARIOS if args.only in s[0]]
    res = {(n, k): [] for n, _ in scenarios for k in ("lunamq", other)}
    work = tempfile.mkdtemp(prefix="lunamq-compare-")
    os.makedirs(os.path.join(work, "no-scripts"))
    try:
        for r in range(args.rounds):
            for name, bargs in scenarios:
                for kind in (("lunamq", other) if r % 2 == 0 else (other, "lunamq")):
                    proc, port = start(kind, work, ab=bool(args.before))
                    try:
                        res[(name, kind)].append(run(bargs, port, proc.pid, args.seconds))
                    finally:
                        stop_broker(proc)
            print("round %d done" % (r + 1), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(name, kind, key):
        vals = [x.get(key, 0) for x in res[(name, kind)]]
        return statistics.median(vals) if vals else 0

    print("| scenario | figure | lunamq | %s | lunamq / %s |" % (other, other))
    print("|---|---|---:|---:|---:|")
    for name, bargs in scenarios:
        if bargs[0] == "conn":
            figs = [("connections/s", "connections_per_s"),
                    ("broker CPU us/connection", "broker_cpu_us_per_msg")]
        elif bargs[0] == "idle":
            figs = [("kB per idle connection", "broker_kb_per_idle_conn")]
        elif "-r" in bargs:
            figs = [("latency p50 us", "latency_p50_us"), ("latency p99 us", "latency_p99_us"),
                    ("broker CPU us/msg", "broker_cpu_us_per_msg"), ("lost", "lost")]
        else:
            figs = [("delivered msg/s", "delivered_per_s"),
                    ("broker CPU us/msg", "broker_cpu_us_per_msg"),
                    ("latency p99 us", "latency_p99_us"), ("lost", "lost")]
        for label, key in figs:
            a, m = med(name, "lunamq", key), med(name, other, key)
            ratio = "%.2f" % (a / m) if m else "-"
            print("| %s | %s | %.1f | %.1f | %s |" % (name, label, a, m, ratio))
    print()
    print("Commands (PORT, PID: the broker under test; -d %d):" % args.seconds)
    for name, bargs in scenarios:
        print("- %s: `build/lunamq-bench %s -p PORT -d %d --pid PID`" % (name, " ".join(bargs),
                                                                         args.seconds))


if __name__ == "__main__":
    main()

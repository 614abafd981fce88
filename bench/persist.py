#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Persistence (issue 13) with build/lunamq-bench --persistent (subscribers with sessions
that outlive their connection: clean session 0, fixed ids; only their messages are
written): lunamq without persistence, with `persistence true` and `persistence_sync
power`, and with `persistence_sync process`, against Debian's mosquitto with
`persistence true` (default autosave_interval: it keeps the messages in memory and
writes a snapshot every 30 minutes and at exit; it never syncs per message). Each figure
on a freshly started broker with a fresh persistence_location under a temporary
directory (removed after), the order of the brokers alternating between rounds; medians
of the rounds. Prints Markdown tables and the commands.

Usage: bench/persist.py [--rounds R] [--seconds S] [--only TEXT]"""

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
CTL = os.path.join(ROOT, "build", "lunamq-ctl")

# the brokers: label, kind, persistence_sync (None: persistence false)
NONE, POWER, PROCESS, MOSQ = "lunamq", "lunamq power", "lunamq process", "mosquitto"
BROKERS = [NONE, POWER, PROCESS, MOSQ]

# name, lunamq-bench arguments, the brokers it runs on
SCENARIOS = [
    ("QoS 1 fan-in, 4 publishers -> 1 persistent subscriber",
     ["fanin", "-n", "4", "-q", "1", "-s", "64", "--persistent"], BROKERS),
    ("QoS 1 fan-out to 50 persistent subscribers",
     ["fanout", "-n", "50", "-q", "1", "-s", "64", "--persistent"], BROKERS),
    ("100 pairs QoS 1 at 20k msg/s, persistent subscribers",
     ["pairs", "-n", "100", "-q", "1", "-s", "64", "-r", "20000", "--persistent"], BROKERS),
    ("10 pairs QoS 1 at 2k msg/s, persistent subscribers",
     ["pairs", "-n", "10", "-q", "1", "-s", "64", "-r", "2000", "--persistent"],
     [NONE, POWER, PROCESS]),
]


def start(label, work, n):
    """A fresh broker in a fresh directory; returns (process, port, admin socket)."""
    d = os.path.join(work, "run%d" % n)
    os.makedirs(d)
    os.chmod(d, 0o777)  # mosquitto started as root writes as the user mosquitto
    port = free_port()
    # the same queue bounds for both, as bench/compare.py
    lines = ["listener %d 127.0.0.1" % port, "allow_anonymous true", "max_queued_messages 1000",
             "max_queued_bytes 0", "log_type error"]
    sock = None
    if label == MOSQ:
        lines += ["persistence true", "persistence_location " + d + "/"]
    else:
        sock = os.path.join(d, "admin.sock")
        lines += ["admin_socket " + sock, "scripts_dir " + os.path.join(work, "no-scripts"),
                  "max_queued_bytes_total 0"]
        if label != NONE:
            lines += ["persistence true", "persistence_location " + d,
                      "persistence_sync " + ("power" if label == POWER else "process")]
    kind = "mosquitto" if label == MOSQ else "lunamq"
    return start_broker(kind, os.path.join(d, "broker.conf"), lines, [port]), port, sock


def run(args, port, pid, seconds):
    cmd = [BENCH, *args, "-p", str(port), "-d", str(seconds), "--pid", str(pid), "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 90)
    line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "{}"
    return json.loads(line)


def store_stats(sock):
    """The journal's figures from lunamq-ctl stats (fsync latency, batches)."""
    out = subprocess.run([CTL, "-s", sock, "stats"], capture_output=True, text=True,
                         timeout=30).stdout
    want = ("persistence_fsync_p50_us", "persistence_fsync_p99_us", "persistence_journal_bytes")
    res = {}
    for line in out.splitlines():
        k = line.split()
        if len(k) == 2 and k[0] in want:
            res[k[0]] = float(k[1])
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    scenarios = [s for s in SCENARIOS if args.only in s[0]]
    res = {(n, b): [] for n, _, bs in scenarios for b in bs}
    work = tempfile.mkdtemp(prefix="lunamq-persist-")
    os.chmod(work, 0o755)
    os.makedirs(os.path.join(work, "no-scripts"))
    n = 0
    try:
        for r in range(args.rounds):
            for name, bargs, brokers in scenarios:
                for label in (brokers if r % 2 == 0 else brokers[::-1]):
                    n += 1
                    proc, port, sock = start(label, work, n)
                    try:
                        x = run(bargs, port, proc.pid, args.seconds)
                        if sock and label != NONE:
                            x.update(store_stats(sock))
                        res[(name, label)].append(x)
                    finally:
                        stop_broker(proc)
                    shutil.rmtree(os.path.join(work, "run%d" % n), ignore_errors=True)
            print("round %d done" % (r + 1), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(name, label, key):
        vals = [x.get(key, 0) for x in res.get((name, label), [])]
        return statistics.median(vals) if vals else None

    def ratio(a, b):
        return "%.2f" % (a / b) if a is not None and b else "-"

    def fmt(v):
        return "-" if v is None else "%.1f" % v

    print("| scenario | figure | %s |" % " | ".join(
        ["lunamq (no persistence)", "lunamq power", "lunamq process",
         "mosquitto (persistence true)", "power / lunamq", "process / lunamq",
         "power / mosquitto"]))
    print("|---|---|" + "---:|" * 7)
    for name, bargs, brokers in scenarios:
        figs = [("delivered msg/s", "delivered_per_s")] if "-r" not in bargs else [
            ("latency p50 us (delivery)", "latency_p50_us")]
        figs += [("latency p99 us (delivery)", "latency_p99_us"),
                 ("publisher PUBACK p50 us", "ack_p50_us"),
                 ("publisher PUBACK p99 us", "ack_p99_us"),
                 ("broker CPU us/msg", "broker_cpu_us_per_msg"), ("lost", "lost"),
                 ("fdatasync p50 us (lunamq-ctl stats)", "persistence_fsync_p50_us"),
                 ("fdatasync p99 us (lunamq-ctl stats)", "persistence_fsync_p99_us")]
        for label, key in figs:
            v = {b: med(name, b, key) if b in brokers else None for b in BROKERS}
            if key.startswith("persistence_"):
                v[NONE] = v[MOSQ] = None
            print("| %s | %s | %s | %s | %s | %s |" % (
                name, label, " | ".join(fmt(v[b]) for b in BROKERS), ratio(v[POWER], v[NONE]),
                ratio(v[PROCESS], v[NONE]), ratio(v[POWER], v[MOSQ])))
    print()
    print("Medians of %d rounds, %d s each. Commands (PORT, PID: the broker under test):"
          % (args.rounds, args.seconds))
    for name, bargs, _ in scenarios:
        print("- %s: `build/lunamq-bench %s -p PORT -d %d --pid PID`" % (
            name, " ".join(bargs), args.seconds))


if __name__ == "__main__":
    main()

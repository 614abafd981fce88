#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""MQTT over WebSockets against MQTT over TCP, lunamq and mosquitto, in one run, with
build/lunamq-bench (--ws: an HTTP upgrade, subprotocol mqtt, then masked binary frames,
one per flush of a client's output). Four brokers-and-transports, the same load each:

- lunamq, `listener` (TCP) and `listener` + `protocol websockets` (WebSockets);
- mosquitto, likewise: Debian 12's package has no websockets, so this is Debian's
  mosquitto source built with them by tools/mosquitto-ws.sh (run here; cached under
  build/deps/mosquitto-ws), over TCP too, so that the TCP/WebSockets pairs are one binary.

Loads (64 B payloads, 4 publishers, one subscriber of bench/#), figures from lunamq-bench
--pid (the broker's utime+stime from /proc):
- fan-in QoS 0 at a fixed 100 000 msg/s in total: the same work for every broker and
  transport, so broker CPU per delivered message compares; latency p50/p99;
- fan-in QoS 1, as fast as the publishers' windows (100 in flight each) allow;
- idle connections (--conns, 2000): the broker's RSS growth / clients.

Every figure runs on a freshly started broker, the order alternating round by round;
the tables give medians over the rounds. The issue's target is at most +30% broker CPU
per message over WebSockets against TCP in the same run: printed as lunamq's ratio.

Usage: bench/websockets.py [--rounds R] [--seconds S] [--conns N] [--quick] [--only TEXT]
(loopback only; LUNAMQ_BIN overrides build/lunamq, MOSQUITTO_WS_BIN the built mosquitto)"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile

from benchlib import ROOT, free_port, stop_broker, wait_port

BENCH = os.path.join(ROOT, "build", "lunamq-bench")
TARGET = 1.30  # the issue: WebSockets at most +30% broker CPU per message over TCP
RATE = 100000

# name, lunamq-bench arguments, the figures (label, JSON key)
LOADS = [
    ("fan-in QoS 0, 4 publishers at %dk msg/s, 64 B" % (RATE // 1000),
     ["fanin", "-n", "4", "-q", "0", "-s", "64", "-r", str(RATE)],
     [("delivered msg/s", "delivered_per_s"), ("latency p50 us", "latency_p50_us"),
      ("latency p99 us", "latency_p99_us"), ("broker CPU us/msg", "broker_cpu_us_per_msg"),
      ("lost", "lost")]),
    ("fan-in QoS 1, 4 publishers, 64 B",
     ["fanin", "-n", "4", "-q", "1", "-s", "64"],
     [("delivered msg/s", "delivered_per_s"), ("latency p50 us", "latency_p50_us"),
      ("latency p99 us", "latency_p99_us"), ("broker CPU us/msg", "broker_cpu_us_per_msg"),
      ("lost", "lost")]),
]
KINDS = ("lunamq", "mosquitto")
TRANSPORTS = ("tcp", "ws")


def mosquitto_ws():
    """The websockets build of mosquitto (tools/mosquitto-ws.sh builds it once)."""
    if os.environ.get("MOSQUITTO_WS_BIN"):
        return os.environ["MOSQUITTO_WS_BIN"]
    out = subprocess.run([os.path.join(ROOT, "tools", "mosquitto-ws.sh")], check=True,
                         stdout=subprocess.PIPE, text=True, timeout=1800).stdout
    return out.strip().splitlines()[-1]


def mosquitto_ws_version():
    try:
        with open(os.path.join(ROOT, "build", "deps", "mosquitto-ws", "version")) as f:
            return f.read().strip()
    except OSError:
        return "?"


class Broker:
    """One broker with a TCP and a WebSockets listener on loopback; stopped by PID."""

    def __init__(self, kind, binary, work):
        self.ports = {"tcp": free_port(), "ws": free_port()}
        # the same bounds as bench/compare.py: mosquitto's defaults for both
        lines = ["listener %d 127.0.0.1" % self.ports["tcp"],
                 "listener %d 127.0.0.1" % self.ports["ws"], "protocol websockets",
                 "allow_anonymous true", "max_queued_messages 1000", "max_queued_bytes 0",
                 "log_type error"]
        if kind == "lunamq":
            lines += ["admin_socket none", "scripts_dir " + os.path.join(work, "no-scripts"),
                      "max_queued_bytes_total 0"]
        conf = os.path.join(work, kind + ".conf")
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        log = conf + ".log"
        with open(log, "w") as out:
            self.proc = subprocess.Popen([binary, "-c", conf], stdout=out, stderr=out)
        try:
            for p in self.ports.values():
                wait_port(p, proc=self.proc, log=log)
        except RuntimeError:
            stop_broker(self.proc)
            raise
        self.log = log

    def stop(self):
        stop_broker(self.proc)


def run(bargs, port, pid, seconds, ws):
    cmd = [BENCH, *bargs, "-p", str(port), "-d", str(seconds), "--pid", str(pid), "--json"]
    if ws:
        cmd.append("--ws")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 90)
    line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "{}"
    res = json.loads(line)
    if r.returncode != 0 or res.get("errors"):
        res.setdefault("errors", 1)
        print("lunamq-bench reported errors (%s): %s\n%s" % (
            " ".join(cmd), line, r.stderr.strip()[-2000:]), file=sys.stderr, flush=True)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--conns", type=int, default=2000, help="idle connections")
    ap.add_argument("--quick", action="store_true", help="1 round of 2 s, 1000 idle connections")
    ap.add_argument("--only", default="", help="the loads whose name contains this")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.seconds, args.conns = 1, 2, 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # brokers and clients inherit it

    binaries = {"lunamq": os.environ.get("LUNAMQ_BIN", os.path.join(ROOT, "build", "lunamq")),
                "mosquitto": mosquitto_ws()}
    idle = ("%d idle connections" % args.conns, ["idle", "-n", str(args.conns)],
            [("kB per idle connection", "broker_kb_per_idle_conn")])
    loads = [ld for ld in LOADS + [idle] if args.only in ld[0]]
    res = {(ld[0], k, t): [] for ld in loads for k in KINDS for t in TRANSPORTS}
    errors = {}
    work = tempfile.mkdtemp(prefix="lunamq-bench-ws-")
    os.makedirs(os.path.join(work, "no-scripts"))
    order = [(k, t) for k in KINDS for t in TRANSPORTS]
    try:
        for rnd in range(args.rounds):
            for name, bargs, _ in loads:
                for kind, tr in (order if rnd % 2 == 0 else order[::-1]):
                    b = Broker(kind, binaries[kind], work)  # fresh: memory starts clean
                    try:
                        r = run(bargs, b.ports[tr], b.proc.pid, args.seconds, tr == "ws")
                    finally:
                        b.stop()
                    res[(name, kind, tr)].append(r)
                    if r.get("errors"):
                        errors[(name, kind, tr)] = errors.get((name, kind, tr), 0) + 1
            print("round %d done" % (rnd + 1), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(name, kind, tr, key):
        vals = [x.get(key, 0) for x in res[(name, kind, tr)]]
        return statistics.median(vals) if vals else 0

    def ratio(a, b):
        return "%.2f" % (a / b) if b else "-"

    def num(v, key):  # lunamq's CPU per message is a fraction of a microsecond
        if key in ("lost", "delivered_per_s") or v >= 1000:
            return "%.0f" % v
        return "%.1f" % v if v >= 10 else "%.3f" % v

    print("mosquitto: %s (tools/mosquitto-ws.sh), TCP and WebSockets alike; %d round(s) of "
          "%d s, medians." % (mosquitto_ws_version(), args.rounds, args.seconds))
    print()
    print("| load | figure | lunamq TCP | lunamq WS | WS / TCP | mosquitto TCP | mosquitto WS "
          "| WS / TCP |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, _, figs in loads:
        for label, key in figs:
            v = {(k, t): med(name, k, t, key) for k in KINDS for t in TRANSPORTS}
            print("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                name, label, num(v[("lunamq", "tcp")], key), num(v[("lunamq", "ws")], key),
                ratio(v[("lunamq", "ws")], v[("lunamq", "tcp")]),
                num(v[("mosquitto", "tcp")], key), num(v[("mosquitto", "ws")], key),
                ratio(v[("mosquitto", "ws")], v[("mosquitto", "tcp")])))
    print()
    print("Target: lunamq's broker CPU per message over WebSockets at most %.2fx (+%d%%) the "
          "same load over TCP:" % (TARGET, round((TARGET - 1) * 100)))
    print()
    for name, _, figs in loads:
        if not any(key == "broker_cpu_us_per_msg" for _, key in figs):
            continue
        tcp, ws = (med(name, "lunamq", t, "broker_cpu_us_per_msg") for t in TRANSPORTS)
        if not tcp:
            print("- %s: no figure over TCP" % name)
            continue
        print("- %s: %.3f us over WebSockets, %.3f us over TCP: **%.2fx (%+.0f%%)**, %s" % (
            name, ws, tcp, ws / tcp, (ws / tcp - 1) * 100,
            "met" if ws / tcp <= TARGET else "NOT met"))
    if errors:
        print()
        print("Runs that reported errors (lunamq-bench's stderr above): " + ", ".join(
            "%s %s %s: %d" % (n, k, t, c) for (n, k, t), c in sorted(errors.items())))
    print()
    print("Commands (PORT, PID: the broker under test, its TCP or its `protocol websockets` "
          "listener; -d %d):" % args.seconds)
    for name, bargs, _ in loads:
        print("- %s: `build/lunamq-bench %s -p PORT -d %d --pid PID [--ws]`" % (
            name, " ".join(bargs), args.seconds))


if __name__ == "__main__":
    main()

#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Access control (issue 14), lunamq against Debian's mosquitto in one run, same files,
same load, alternating:

- QoS 0 fan-out (1 publisher -> 50 subscribers, 64 B) with a 1 000-rule acl_file in
  force against none: delivered messages per second and broker CPU per message. The
  clients log in as `bench`, whose rules grant its topic among 1 000 others (users,
  patterns with %c and %u, deny rules), so the publisher's write check and the
  subscribers' read access run against a realistic file.
- CONNECTs per second with a password check (a password_file made by Debian's
  mosquitto_passwd: PBKDF2-SHA512, its 101 rounds), 8 clients connecting in a loop,
  against the same without a password_file.

Usage: bench/acl.py [--rounds R] [--seconds S]   (loopback only; LUNAMQ_BIN overrides
build/lunamq). Prints a Markdown table; medians over the rounds."""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile

from benchlib import ROOT, free_port, start_broker, stop_broker

BENCH = os.path.join(ROOT, "build", "lunamq-bench")


def write_files(d):
    passwd = os.path.join(d, "passwd")
    subprocess.run(["mosquitto_passwd", "-c", "-b", passwd, "bench", "benchpw"], check=True)
    acl = os.path.join(d, "acl")
    rules = ["# 1 000 rules: anonymous, 980 device users, patterns, denies",
             "topic read public/#"]
    for i in range(980):
        rules += ["user device%04d" % i, "topic readwrite devices/device%04d/#" % i]
    rules += ["user bench", "topic readwrite bench/#", "topic deny bench/private/#",
              "topic read fleet/+/status"]
    for i in range(14):
        rules.append("pattern readwrite tenants/%d/%%u/#" % i)
    rules += ["pattern readwrite inbox/%c/#", "pattern write outbox/%u/#"]
    nrules = sum(1 for r in rules if r.startswith(("topic", "pattern")))
    with open(acl, "w") as f:
        f.write("\n".join(rules) + "\n")
    return passwd, acl, nrules


def run_bench(kind, workdir, lines, args, seconds):
    port = free_port()
    conf = os.path.join(workdir, "%s.conf" % kind)
    body = ["listener %d 127.0.0.1" % port, "max_queued_messages 1000", "max_queued_bytes 0",
            "log_type error"] + lines  # as bench/compare.py
    if kind == "mosquitto":
        body = ["user root"] + body  # it would drop to user mosquitto, who cannot read them
    else:
        body += ["admin_socket none", "scripts_dir %s/none" % workdir,
                 "max_queued_bytes_total 0"]
    proc = start_broker(kind, conf, body, [port])
    try:
        out = subprocess.run([BENCH, *args, "-p", str(port), "-d", str(seconds), "--pid",
                              str(proc.pid), "--json"], capture_output=True, text=True,
                             timeout=seconds + 60, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])
    finally:
        stop_broker(proc)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=3)
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="lunamq-bench-acl-")
    try:
        passwd, acl, nrules = write_files(d)
        login = ["-u", "bench", "-P", "benchpw"]
        fanout = ["fanout", "-n", "50", "-q", "0", "-s", "64", "-r", "0", "-V", "5"] + login
        conn = ["conn", "-n", "8", "-V", "4"] + login
        cases = [  # name, bench args, config: (no rules, rules), the figures
            ("QoS 0 fan-out, 1 -> 50 subscribers", fanout,
             ["allow_anonymous false", "password_file " + passwd],
             ["allow_anonymous false", "password_file " + passwd, "acl_file " + acl],
             [("delivered msg/s", "delivered_per_s"),
              ("broker CPU us/msg", "broker_cpu_us_per_msg")]),
            ("CONNECT + CONNACK, 8 clients in a loop", conn,
             ["allow_anonymous true"],
             ["allow_anonymous false", "password_file " + passwd],
             [("connections/s", "connections_per_s"),
              ("broker CPU us/connection", "broker_cpu_us_per_msg")]),
        ]
        res = {}
        for rnd in range(args.rounds):
            for name, bargs, plain, ruled, figs in cases:
                for kind in ("lunamq", "mosquitto"):
                    for which, lines in (("without", plain), ("with", ruled)):
                        r = run_bench(kind, d, lines, bargs, args.seconds)
                        for label, key in figs:
                            res.setdefault((name, label, kind, which), []).append(r[key])
            print("round %d done" % (rnd + 1), file=__import__("sys").stderr, flush=True)
        med = {k: statistics.median(v) for k, v in res.items()}
        print("| scenario | figure | lunamq without | lunamq with | with / without | "
              "mosquitto without | mosquitto with | with / without | lunamq with / "
              "mosquitto with |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, _, _, _, figs in cases:
            for label, _ in figs:
                lw, lr = med[(name, label, "lunamq", "without")], med[(name, label, "lunamq", "with")]
                mw, mr = (med[(name, label, "mosquitto", "without")],
                          med[(name, label, "mosquitto", "with")])
                print("| %s | %s | %.1f | %.1f | %.2f | %.1f | %.1f | %.2f | %.2f |" % (
                    name, label, lw, lr, lr / lw if lw else 0, mw, mr, mr / mw if mw else 0,
                    lr / mr if mr else 0))
        print()
        print("Medians of %d rounds, %d s each. \"with\": the fan-out runs under a %d-rule "
              "acl_file (bench/acl.py writes it), the CONNECTs check a password from a "
              "password_file made by mosquitto_passwd; \"without\": the same without the file. "
              "Commands (PORT, PID: the broker under test):" % (args.rounds, args.seconds, nrules))
        for name, bargs, _, _, _ in cases:
            print("- %s: `build/lunamq-bench %s -p PORT -d %d --pid PID`" % (
                name, " ".join(bargs), args.seconds))
    finally:
        shutil.rmtree(d, True)


if __name__ == "__main__":
    main()

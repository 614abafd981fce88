#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""What cluster sessions (issue 16) cost a CONNECT: build/lunamq-bench conn (N clients
connecting, CONNACK, disconnecting, again, for S seconds) against one node, three ways,
alternating, each on freshly started processes:
- local:     no cluster;
- sessions local:     a cluster (nats-server -js), cluster_sessions local;
- sessions jetstream: the same, cluster_sessions jetstream (each CONNECT asks the bucket).
With --before BIN, the jetstream setup also runs on another lunamq build.
CONNECTs per second and the node's CPU per CONNECT: medians of the rounds. Loopback only;
every process is stopped by PID.

Usage: bench/cluster_sessions.py [--rounds R] [--seconds S] [--clients N] [--before BIN]"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

from benchlib import ROOT, cpu_s, free_port, start_broker, stop_broker, wait_port

BENCH = os.path.join(ROOT, "build", "lunamq-bench")
NATS = shutil.which("nats-server") or "/usr/sbin/nats-server"


def one_run(setup, kind, seconds, clients, work):
    nats = None
    node = None
    try:
        port = free_port()
        lines = ["listener %d 127.0.0.1" % port, "allow_anonymous true", "log_type error",
                 "admin_socket none", "scripts_dir " + os.path.join(work, "no-scripts")]
        if setup != "local":
            nats_port = free_port()
            store = tempfile.mkdtemp(prefix="js-", dir=work)
            nats = subprocess.Popen([NATS, "-a", "127.0.0.1", "-p", str(nats_port), "-js",
                                     "-sd", store],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_port(nats_port, proc=nats)
            lines += ["cluster_name bench", "cluster_node_id n1",
                      "cluster_nats_url nats://127.0.0.1:%d" % nats_port,
                      "cluster_sessions " + ("local" if setup == "sessions local" else "jetstream")]
        node = start_broker(kind, os.path.join(work, "n1.conf"), lines, [port])
        time.sleep(1.0)  # connected to NATS, the bucket made
        c0 = cpu_s(node.pid)
        r = subprocess.run([BENCH, "conn", "-n", str(clients), "-p", str(port), "-d",
                            str(seconds), "--json"], capture_output=True, text=True,
                           timeout=seconds + 60)
        c1 = cpu_s(node.pid)
        out = json.loads(r.stdout.strip().splitlines()[-1])
        done = max(out["connections_per_s"] * out["seconds"], 1)
        return {"per_s": out["connections_per_s"], "us_per": (c1 - c0) * 1e6 / done}
    finally:
        if node:
            stop_broker(node)
        if nats and nats.poll() is None:
            nats.terminate()
            nats.wait(5)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--before", default="")
    args = ap.parse_args()
    setups = [("local", "lunamq"), ("sessions local", "lunamq"),
              ("sessions jetstream", "lunamq")]
    if args.before:
        os.environ["LUNAMQ_BEFORE"] = args.before
        setups.append(("sessions jetstream", "before"))
    res = {s: [] for s in setups}
    work = tempfile.mkdtemp(prefix="lunamq-bench-sessions-")
    os.makedirs(os.path.join(work, "no-scripts"))
    try:
        for _ in range(args.rounds):
            for s in setups:
                res[s].append(one_run(s[0], s[1], args.seconds, args.clients, work))
    finally:
        shutil.rmtree(work, True)
    print("| setup | build | CONNECTs/s | node CPU us per CONNECT |")
    print("|---|---|---:|---:|")
    for s in setups:
        print("| %s | %s | %.0f | %.0f |" % (
            s[0], "this" if s[1] == "lunamq" else "before",
            statistics.median(x["per_s"] for x in res[s]),
            statistics.median(x["us_per"] for x in res[s])))
    print("\nbuild/lunamq-bench conn -n %d -d %d, %d rounds, medians" % (
        args.clients, args.seconds, args.rounds))


if __name__ == "__main__":
    main()

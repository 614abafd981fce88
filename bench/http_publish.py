#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Publishing over HTTP (issue 20) against publishing with mosquitto_pub, on the same
machine in the same run, medians over the rounds. Two ways applications publish:

- one connection, many messages: curl with a list of N URLs (one kept-alive HTTP
  connection, sequential POSTs to lunamq's http_listener) against `mosquitto_pub -l`
  (one MQTT connection, a message per line of stdin) to lunamq and to mosquitto;
- a process per message, as a shell script does: `curl -d ...` against `mosquitto_pub
  -m ...`.

A raw subscriber on the topic counts what arrives (every message must); the figures are
messages per second (from the client's start to the last delivery) and broker CPU per
message (utime+stime from /proc).

Usage: bench/http_publish.py [--rounds R] [--messages N] [--processes M]   (loopback only)"""

import argparse
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

from benchlib import HOST, count_publishes, cpu_s, free_port, start_broker, stop_broker


def counter(port, topic, want, done):
    """A raw MQTT 3.1.1 subscriber (QoS 0) counting PUBLISH packets into done[0]."""
    s = socket.create_connection((HOST, port))
    cid = b"bench-sub"
    s.sendall(b"\x10" + bytes([12 + len(cid)]) + b"\x00\x04MQTT\x04\x02\x00\x3c" +
              struct.pack("!H", len(cid)) + cid)
    assert s.recv(4)[:1] == b"\x20"
    t = topic.encode()
    body = b"\x00\x01" + struct.pack("!H", len(t)) + t + b"\x00"
    s.sendall(b"\x82" + bytes([len(body)]) + body)
    s.recv(5)
    buf, n = b"", 0
    ready = threading.Event()

    def run():
        nonlocal buf, n
        ready.set()
        s.settimeout(60)
        while n < want:
            data = s.recv(1 << 16)
            if not data:
                break
            got, buf = count_publishes(buf + data)
            n += got
        done[0] = n
        done[1] = time.time()
        s.close()

    th = threading.Thread(target=run, daemon=True)
    th.start()
    ready.wait()
    return th


def measure(proc, port, want, client):
    """Run client() (it publishes `want` messages on bench/t); rate and CPU per message."""
    done = [0, 0.0]
    th = counter(port, "bench/t", want, done)
    c0 = cpu_s(proc.pid)
    t0 = time.time()
    client()
    th.join(60)
    c1 = cpu_s(proc.pid)
    if done[0] != want:
        raise SystemExit("%d of %d messages arrived" % (done[0], want))
    return want / (done[1] - t0), (c1 - c0) * 1e6 / want


def curl_list(work, http_port, n, qos):
    cfg = os.path.join(work, "urls.txt")
    with open(cfg, "w") as f:
        f.write('data = "m"\n')
        for _ in range(n):
            f.write('url = "http://%s:%d/publish/bench/t?qos=%d"\n' % (HOST, http_port, qos))
    return lambda: subprocess.run(["curl", "-s", "-K", cfg], stdout=subprocess.DEVNULL,
                                  check=True)


def pub_lines(port, n, qos):
    data = b"m\n" * n
    return lambda: subprocess.run(["mosquitto_pub", "-h", HOST, "-p", str(port), "-q", str(qos),
                                   "-t", "bench/t", "-l"], input=data, check=True)


def curl_each(http_port, n):
    url = "http://%s:%d/publish/bench/t" % (HOST, http_port)

    def run():
        for _ in range(n):
            subprocess.run(["curl", "-s", "-d", "m", url], stdout=subprocess.DEVNULL, check=True)
    return run


def pub_each(port, n):
    def run():
        for _ in range(n):
            subprocess.run(["mosquitto_pub", "-h", HOST, "-p", str(port), "-t", "bench/t", "-m",
                            "m"], check=True)
    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--processes", type=int, default=200)
    args = ap.parse_args()
    n, m = args.messages, args.processes
    rows = [  # name, broker, client maker(work, mqtt port, http port), messages
        ("curl, %d POSTs on one connection, QoS 0" % n, "lunamq",
         lambda w, p, h: curl_list(w, h, n, 0), n),
        ("curl, %d POSTs on one connection, QoS 1" % n, "lunamq",
         lambda w, p, h: curl_list(w, h, n, 1), n),
        ("mosquitto_pub -l, %d messages on one connection, QoS 0" % n, "lunamq",
         lambda w, p, h: pub_lines(p, n, 0), n),
        ("mosquitto_pub -l, %d messages on one connection, QoS 1" % n, "lunamq",
         lambda w, p, h: pub_lines(p, n, 1), n),
        ("mosquitto_pub -l, %d messages on one connection, QoS 1" % n, "mosquitto",
         lambda w, p, h: pub_lines(p, n, 1), n),
        ("curl per message (%d processes)" % m, "lunamq", lambda w, p, h: curl_each(h, m), m),
        ("mosquitto_pub per message (%d processes)" % m, "lunamq",
         lambda w, p, h: pub_each(p, m), m),
        ("mosquitto_pub per message (%d processes)" % m, "mosquitto",
         lambda w, p, h: pub_each(p, m), m),
    ]
    res = {i: ([], []) for i in range(len(rows))}
    work = tempfile.mkdtemp(prefix="lunamq-bench-http-")
    try:
        for r in range(args.rounds):
            order = list(range(len(rows)))
            if r % 2:
                order.reverse()
            for i in order:
                name, kind, make, want = rows[i]
                port, http_port = free_port(), free_port()
                lines = ["listener %d %s" % (port, HOST), "allow_anonymous true",
                         "log_type error"]
                if kind == "lunamq":
                    lines += ["http_listener %d" % http_port, "admin_socket none",
                              "scripts_dir " + os.path.join(work, "none")]
                ports = [port, http_port] if kind == "lunamq" else [port]
                proc = start_broker(kind, os.path.join(work, "b.conf"), lines, ports)
                try:
                    rate, cpu = measure(proc, port, want, make(work, port, http_port))
                finally:
                    stop_broker(proc)
                res[i][0].append(rate)
                res[i][1].append(cpu)
            print("round %d done" % (r + 1), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("| client | broker | msg/s | broker CPU us/msg |")
    print("|---|---|---:|---:|")
    for i, (name, kind, _, _) in enumerate(rows):
        print("| %s | %s | %.0f | %.1f |" % (name, "lunamq" if kind == "lunamq" else
                                              "mosquitto 2.0.11", statistics.median(res[i][0]),
                                              statistics.median(res[i][1])))


if __name__ == "__main__":
    main()

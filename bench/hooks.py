#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""What Lua hooks cost: throughput and broker CPU per delivered message with no hook,
with a pass-through hook on every message, and with the JSON aggregation hook of
examples/hooks/transactions-aggregate.lua; Debian's mosquitto without hooks as the
reference. One run, scenarios alternating, medians over the rounds.

Load: one raw-socket publisher sends QoS 0 PUBLISH packets (64-byte JSON payloads on
transactions/<region>/<merchant>) in windows of 2000, waiting for one raw-socket
subscriber (transactions/#) to have received each window, so nothing is dropped and
the figure is the broker's own pace. Broker CPU is utime+stime from /proc.

Usage: bench/hooks.py [--messages N] [--rounds R]   (loopback only)"""

import argparse
import os
import shutil
import socket
import statistics
import struct
import sys
import tempfile
import time

from benchlib import HOST, ROOT, cpu_s, free_port, start_broker, stop_broker


PASS = 'return {topics = {"transactions/#"}, on_publish = function(msg) return msg end}\n'


def varint(n):
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


def s16(b):
    return struct.pack("!H", len(b)) + b


def connect(port, cid):
    s = socket.create_connection((HOST, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(packet(0x10, s16(b"MQTT") + b"\x04\x02\x00\x3c" + s16(cid)))
    assert s.recv(4)[:1] == b"\x20"
    return s


class Counter:
    """Counts whole PUBLISH packets arriving on a socket."""

    def __init__(self, sock):
        self.sock, self.buf, self.n = sock, b"", 0

    def pump(self, want):
        while self.n < want:
            data = self.sock.recv(1 << 20)
            if not data:
                raise RuntimeError("subscriber closed")
            self.buf += data
            i, b = 0, self.buf
            while True:
                if len(b) - i < 2:
                    break
                ln, shift, j = 0, 0, i + 1
                while j < len(b):
                    c = b[j]
                    ln |= (c & 0x7F) << shift
                    shift += 7
                    j += 1
                    if not c & 0x80:
                        break
                else:
                    break
                if j + ln > len(b):
                    break
                if b[i] >> 4 == 3:
                    self.n += 1
                i = j + ln
            self.buf = b[i:]


def run_load(port, messages):
    sub = connect(port, b"bench-sub")
    sub.sendall(packet(0x82, b"\x00\x01" + s16(b"transactions/#") + b"\x00"))
    sub.recv(5)  # SUBACK
    pub = connect(port, b"bench-pub")
    payload = b'{"amount": 12.50, "currency": "EUR", "terminal": "T-000123456"}'
    msgs = [packet(0x30, s16(b"transactions/r%d/m%d" % (i % 4, i % 50)) + payload)
            for i in range(200)]
    window = 2000
    counter = Counter(sub)
    t0 = time.time()
    sent = 0
    while sent < messages:
        n = min(window, messages - sent)
        pub.sendall(b"".join(msgs[(sent + k) % 200] for k in range(n)))
        sent += n
        counter.pump(sent)
    took = time.time() - t0
    pub.close()
    sub.close()
    return took


def start(kind, work, hook):
    port = free_port()
    conf = os.path.join(work, "b.conf")
    scripts = os.path.join(work, "scripts")
    shutil.rmtree(scripts, ignore_errors=True)
    os.makedirs(scripts)
    lines = ["listener %d 127.0.0.1" % port, "allow_anonymous true", "max_queued_messages 100000"]
    if kind == "lunamq":
        lines += ["scripts_dir " + scripts, "log_type error"]
        if hook == "pass":
            with open(os.path.join(scripts, "10-pass.lua"), "w") as f:
                f.write(PASS)
        elif hook == "aggregate":
            shutil.copy(os.path.join(ROOT, "examples", "hooks", "transactions-aggregate.lua"),
                        scripts)
    else:
        lines += ["log_type error"]
    return start_broker(kind, conf, lines, [port]), port


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=200000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    scenarios = [("lunamq, no hook", "lunamq", None),
                 ("lunamq, pass-through hook", "lunamq", "pass"),
                 ("lunamq, JSON aggregation hook", "lunamq", "aggregate"),
                 ("mosquitto 2.0.11, no hooks", "mosquitto", None)]
    res = {name: ([], []) for name, _, _ in scenarios}
    work = tempfile.mkdtemp(prefix="lunamq-bench-hooks-")
    try:
        for r in range(args.rounds):
            order = scenarios if r % 2 == 0 else list(reversed(scenarios))
            for name, kind, hook in order:
                proc, port = start(kind, work, hook)
                try:
                    c0 = cpu_s(proc.pid)
                    took = run_load(port, args.messages)
                    c1 = cpu_s(proc.pid)
                finally:
                    stop_broker(proc)
                res[name][0].append(args.messages / took)
                res[name][1].append((c1 - c0) * 1e6 / args.messages)
            print("round %d done" % (r + 1), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base_rate = statistics.median(res["lunamq, no hook"][0])
    base_cpu = statistics.median(res["lunamq, no hook"][1])
    print("| scenario (%d QoS 0 messages, 1 publisher, 1 subscriber) | msg/s | broker CPU us/msg "
          "| CPU vs lunamq no hook |" % args.messages)
    print("|---|---:|---:|---:|")
    for name, _, _ in scenarios:
        rate = statistics.median(res[name][0])
        cpu = statistics.median(res[name][1])
        print("| %s | %.0f | %.2f | %+.0f%% |" % (name, rate, cpu, (cpu / base_cpu - 1) * 100))
    _ = base_rate


if __name__ == "__main__":
    main()

#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""What Lua hooks cost: throughput and broker CPU per delivered message with no hook,
with a pass-through hook on every message, with the JSON aggregation hook of
examples/hooks/transactions-aggregate.lua, and with a forwarding hook that POSTs every
message, in batches of 500, to an HTTP endpoint this script serves on loopback
(broker.http, issue 20: the endpoint's count of lines received is checked); Debian's
mosquitto without hooks as the reference. One run, scenarios alternating, medians over
the rounds.

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

from benchlib import HOST, ROOT, count_publishes, cpu_s, free_port, start_broker, stop_broker


PASS = 'return {topics = {"transactions/#"}, on_publish = function(msg) return msg end}\n'

# every message into a batch; a POST per 500 (and what is left, every 0.1 s)
FORWARD = """
local batch, n = {}, 0
local function flush()
  if n == 0 then return end
  broker.http.request{method = "POST", url = "%s", body = table.concat(batch, "\\n", 1, n)}
  batch, n = {}, 0
end
return {topics = {"transactions/#"}, interval = 0.1, on_timer = flush,
  on_publish = function(msg)
    n = n + 1
    batch[n] = msg.payload
    if n == 500 then flush() end
    return msg
  end}
"""


class Collector:
    """The HTTP endpoint of the forwarding hook: counts the lines POSTed to it."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        outer = self
        self.lines = 0

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                outer.lines += body.count(b"\n") + 1
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

        self.srv = ThreadingHTTPServer((HOST, 0), H)
        self.url = "http://%s:%d/ingest" % (HOST, self.srv.server_address[1])
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()


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
            got, self.buf = count_publishes(self.buf + data)
            self.n += got


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


def start(kind, work, hook, collector):
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
        elif hook == "forward":
            lines += ["hook_http_allow " + collector.url]
            with open(os.path.join(scripts, "10-forward.lua"), "w") as f:
                f.write(FORWARD % collector.url)
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
                 ("lunamq, forwarding hook (HTTP POST per 500)", "lunamq", "forward"),
                 ("mosquitto 2.0.11, no hooks", "mosquitto", None)]
    res = {name: ([], []) for name, _, _ in scenarios}
    work = tempfile.mkdtemp(prefix="lunamq-bench-hooks-")
    collector = Collector()
    try:
        for r in range(args.rounds):
            order = scenarios if r % 2 == 0 else list(reversed(scenarios))
            for name, kind, hook in order:
                proc, port = start(kind, work, hook, collector)
                collector.lines = 0
                try:
                    c0 = cpu_s(proc.pid)
                    took = run_load(port, args.messages)
                    c1 = cpu_s(proc.pid)
                    end = time.time() + 5  # the last batch leaves within 0.1 s
                    while hook == "forward" and collector.lines < args.messages and time.time() < end:
                        time.sleep(0.05)
                finally:
                    stop_broker(proc)
                if hook == "forward" and collector.lines != args.messages:
                    raise SystemExit("forwarding hook: %d of %d messages reached the endpoint"
                                     % (collector.lines, args.messages))
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

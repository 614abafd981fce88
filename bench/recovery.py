#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Recovery of lunamq with persistence (issue 13): fill a broker with RETAINED retained
messages (distinct topics, 32 B payloads) and SESSIONS persistent MQTT 5 sessions (each
subscribed to its own topic at QoS 1, then disconnected) with QUEUED QoS 1 messages
queued for each; then measure the time from starting the broker to its port accepting
connections, after a SIGKILL, after a SIGTERM, and after `lunamq-ctl persistence
snapshot` (compacted), with the size of persistence_location each time. At the end one
session is read back (its queued messages must all be there) and one retained topic.

Raw sockets and pre-encoded packets: the retained messages go as QoS 0 (retained
messages are stored whatever their QoS) on one connection, the last one at QoS 1,
whose PUBACK says they are all in (the broker handles a connection's packets in order).
The queued messages go at QoS 1, 10 000 in flight at a time.

Usage: bench/recovery.py [--retained N] [--sessions N] [--queued N] [--keep]
(--keep: leave the work directory, with the broker's configuration and
persistence_location, for profiling a start-up: `perf record -g build/lunamq -c ...`)"""

import argparse
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

from benchlib import HOST, ROOT, broker_binary, free_port, rss_kb

CTL = os.path.join(ROOT, "build", "lunamq-ctl")
PAYLOAD = b"p" * 32
WINDOW = 10000  # QoS 1 messages in flight on the filling connection


# ---- packets ----
def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (128 if n else 0))
        if not n:
            return bytes(out)


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


def s16(b):
    return struct.pack(">H", len(b)) + b


def connect(cid, v5, clean=True, expiry=0):
    flags = 0x02 if clean else 0
    body = s16(b"MQTT") + bytes([5 if v5 else 4, flags]) + struct.pack(">H", 600)
    if v5:
        props = b"\x11" + struct.pack(">I", expiry) if expiry else b""
        body += varint(len(props)) + props
    return packet(0x10, body + s16(cid))


def subscribe(pid, topic):  # v5, QoS 1
    return packet(0x82, struct.pack(">H", pid) + b"\x00" + s16(topic) + b"\x01")


def publish(topic, qos, retain, pid=0):
    body = s16(topic) + (struct.pack(">H", pid) if qos else b"") + PAYLOAD  # v3.1.1
    return packet(0x30 | (qos << 1) | (1 if retain else 0), body)


class Reader:
    """Whole packets from a blocking socket."""

    def __init__(self, sock):
        self.sock, self.buf = sock, bytearray()

    def next(self):
        while True:
            if len(self.buf) >= 2:
                n, mul, i = 0, 1, 1
                while i < len(self.buf):
                    b = self.buf[i]
                    n += (b & 127) * mul
                    mul *= 128
                    i += 1
                    if not b & 128:
                        if len(self.buf) >= i + n:
                            first, body = self.buf[0], bytes(self.buf[i:i + n])
                            del self.buf[:i + n]
                            return first >> 4, first & 15, body
                        break
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise RuntimeError("connection closed by the broker")
            self.buf += chunk

    def expect(self, ptype, what):
        t, _, body = self.next()
        if t != ptype:
            raise RuntimeError("%s: packet type %d, not %d" % (what, t, ptype))
        return body


def dial(port):
    s = socket.create_connection((HOST, port), timeout=120)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


# ---- filling ----
def fill_retained(port, n):
    s = dial(port)
    r = Reader(s)
    s.sendall(connect(b"fill-retained", False))
    r.expect(2, "CONNACK")
    step = 100000
    for lo in range(0, n, step):
        last = min(lo + step, n)
        s.sendall(b"".join(publish(b"r/%07d" % i, 1 if i == n - 1 else 0, True, 1)
                           for i in range(lo, last)))
    r.expect(4, "PUBACK of the last retained message")
    s.close()


def make_sessions(port, n, batch=500):
    for lo in range(0, n, batch):
        socks = []
        for i in range(lo, min(lo + batch, n)):
            s = dial(port)
            s.sendall(connect(b"s%05d" % i, True, clean=False, expiry=10 ** 7) +
                      subscribe(1, b"q/%05d" % i))
            socks.append(s)
        for s in socks:
            r = Reader(s)
            if r.expect(2, "CONNACK")[1] != 0:
                raise RuntimeError("CONNACK refused")
            r.expect(9, "SUBACK")
            s.sendall(b"\xe0\x00")  # DISCONNECT, normal: the session stays
            s.close()


def fill_queued(port, sessions, per):
    s = dial(port)
    r = Reader(s)
    s.sendall(connect(b"fill-queued", False))
    r.expect(2, "CONNACK")
    total = sessions * per
    for lo in range(0, total, WINDOW):
        hi = min(lo + WINDOW, total)
        s.sendall(b"".join(publish(b"q/%05d" % (i % sessions), 1, False, i - lo + 1)
                           for i in range(lo, hi)))
        for _ in range(lo, hi):
            r.expect(4, "PUBACK")
    s.close()


# ---- the broker ----
class Broker:
    def __init__(self, work):
        self.work, self.port = work, free_port()
        self.dir = os.path.join(work, "persist")
        self.sock = os.path.join(work, "admin.sock")
        self.conf = os.path.join(work, "lunamq.conf")
        self.log = os.path.join(work, "lunamq.log")
        os.makedirs(self.dir)
        with open(self.conf, "w") as f:
            f.write("\n".join([
                "listener %d 127.0.0.1" % self.port, "allow_anonymous true",
                "admin_socket " + self.sock, "scripts_dir " + os.path.join(work, "none"),
                "max_queued_messages 1000", "max_queued_bytes 0", "max_queued_bytes_total 0",
                "persistence true", "persistence_location " + self.dir,
                "log_type error", "log_type notice"]) + "\n")
        self.proc = None

    def start(self):
        """Start; returns the seconds until the port accepts a connection."""
        out = open(self.log, "a")
        t0 = time.monotonic()
        self.proc = subprocess.Popen([broker_binary("lunamq"), "-c", self.conf], stdout=out,
                                     stderr=out)
        out.close()
        while True:
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                return time.monotonic() - t0
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("broker exited: %s" % self.tail())
                if time.monotonic() - t0 > 300:
                    raise RuntimeError("broker not listening after 300 s")
                time.sleep(0.002)

    def stop(self, sig):
        self.proc.send_signal(sig)
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("broker did not stop on signal %d" % sig)

    def tail(self):
        with open(self.log, errors="replace") as f:
            return "".join(f.readlines()[-5:])

    def recovered_line(self):
        with open(self.log, errors="replace") as f:
            lines = [x for x in f if "persistence: recovered" in x]
        return lines[-1].split("notice: ", 1)[-1].strip() if lines else "?"

    def stats(self):
        out = subprocess.run([CTL, "-s", self.sock, "stats"], capture_output=True, text=True,
                             timeout=30).stdout
        return dict(x.split(None, 1) for x in out.splitlines() if len(x.split(None, 1)) == 2)

    def snapshot(self):
        """Compact now; a snapshot the broker started by itself is let finish first."""
        t0 = time.monotonic()
        while True:
            before = self.stats().get("persistence_last_snapshot_at", "0")
            r = subprocess.run([CTL, "-s", self.sock, "persistence", "snapshot"],
                               capture_output=True, text=True, timeout=30)
            if r.returncode == 0:
                break
            if "already" not in r.stdout + r.stderr or time.monotonic() - t0 > 300:
                raise RuntimeError("persistence snapshot: " + r.stdout + r.stderr)
            time.sleep(0.1)
        while self.stats().get("persistence_last_snapshot_at", "0") == before:
            if time.monotonic() - t0 > 300:
                raise RuntimeError("snapshot not done after 300 s")
            time.sleep(0.05)
        return time.monotonic() - t0

    def disk_bytes(self):
        return sum(os.path.getsize(os.path.join(self.dir, f)) for f in os.listdir(self.dir))


def read_back(port, sid, want, retained_topic):
    """Every queued message of one session, and one retained message."""
    s = dial(port)
    s.settimeout(10)
    r = Reader(s)
    s.sendall(connect(sid, True, clean=False, expiry=10 ** 7))
    if r.expect(2, "CONNACK")[0] & 1 != 1:
        raise RuntimeError("%s: no session after the restart" % sid.decode())
    got = 0
    try:
        while got < want:
            t, flags, body = r.next()
            if t == 3:
                got += 1
                tl = struct.unpack(">H", body[:2])[0]
                if flags & 6:
                    s.sendall(b"\x40\x02" + body[2 + tl:4 + tl])  # PUBACK (v5, success)
    except socket.timeout:
        pass
    s.sendall(subscribe(2, retained_topic))
    retained = False
    try:
        while True:
            t, flags, body = r.next()
            if t == 3 and flags & 1:
                retained = True
                break
    except socket.timeout:
        pass
    s.close()
    return got, retained


def mib(n):
    return "%.1f MiB" % (n / 1048576)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--retained", type=int, default=1000000)
    ap.add_argument("--sessions", type=int, default=10000)
    ap.add_argument("--queued", type=int, default=100)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="lunamq-recovery-")
    rows = []
    b = Broker(work)
    try:
        b.start()

        def step(what, fn):
            t0 = time.monotonic()
            fn()
            print("%s: %.1f s" % (what, time.monotonic() - t0), file=sys.stderr, flush=True)

        step("%d retained" % args.retained, lambda: fill_retained(b.port, args.retained))
        step("%d sessions" % args.sessions, lambda: make_sessions(b.port, args.sessions))
        step("%d queued QoS 1" % (args.sessions * args.queued),
             lambda: fill_queued(b.port, args.sessions, args.queued))
        rss = rss_kb(b.proc.pid)
        full = b.disk_bytes()
        b.stop(signal.SIGKILL)
        t_kill = b.start()
        rows.append(("after SIGKILL (journal as the running broker left it)", full, t_kill,
                     b.recovered_line(), rss_kb(b.proc.pid)))
        on_disk = b.disk_bytes()
        b.stop(signal.SIGTERM)
        t_term = b.start()
        rows.append(("after SIGTERM", on_disk, t_term, b.recovered_line(), rss_kb(b.proc.pid)))
        snap_s = b.snapshot()
        compacted = b.disk_bytes()
        b.stop(signal.SIGTERM)
        t_snap = b.start()
        rows.append(("after `lunamq-ctl persistence snapshot` (%.1f s), SIGTERM" % snap_s,
                     compacted, t_snap, b.recovered_line(), rss_kb(b.proc.pid)))
        got, retained = read_back(b.port, b"s%05d" % (args.sessions // 2), args.queued,
                                  b"r/%07d" % (args.retained - 1))
        b.stop(signal.SIGTERM)
    finally:
        if b.proc and b.proc.poll() is None:
            b.proc.kill()
            b.proc.wait()
        if args.keep:
            print("kept: %s (configuration %s)" % (work, b.conf), file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    check = "one session read back after the last restart: %d of %d queued messages; " \
            "a retained message: %s" % (got, args.queued, "yes" if retained else "NO")
    print("%d retained messages (32 B) + %d persistent sessions with %d queued QoS 1 messages "
          "each (32 B), broker RSS after filling %s:" % (args.retained, args.sessions,
                                                         args.queued, mib(rss * 1024)))
    print()
    print("| start after | persistence_location on disk | start to listening (s) | "
          "broker RSS once up | the broker's log |")
    print("|---|---:|---:|---:|---|")
    for what, size, secs, line, r in rows:
        print("| %s | %s | %.2f | %s | %s |" % (what, mib(size), secs, mib(r * 1024), line))
    print()
    print(check + ".")


if __name__ == "__main__":
    main()

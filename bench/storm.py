#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Reconnect storm of mutual-TLS devices (issue 15), lunamq against Debian's mosquitto in
one run, same machine, same test PKI (examples/certs/make-certs.sh), same load,
alternating A/B, each storm on a freshly started broker.

N devices connect at once, as after a broker restart or a network outage: TCP connect,
TLS handshake with the device certificate dev1 (Python's ssl, OpenSSL), MQTT 3.1.1
CONNECT with a client id of its own, CONNACK rc 0. The devices are spread over 2 client
processes that start together, each driving its share from one selectors loop, and
stay connected until every device is (or the time limit passes).

- first attempt (default, --clients 2000): no retries; how many connected at their
  first attempt, how the others failed, and the time until the last one connected;
- --retry (--clients 5000): a failed attempt (refused, reset, closed, or no handshake
  and CONNACK within the attempt's own 30 s) is retried after a full-jitter exponential
  backoff (0.5 s, doubling, at most 8 s), as devices do; whether all connected, when,
  and how many attempts that took.

Meanwhile a plain-TCP MQTT client connected before the storm publishes QoS 0 to its own
subscription every 20 ms: the round trips of an established client during the storm.
And the broker's CPU time (utime + stime) over the storm.

Usage: bench/storm.py [--clients N] [--retry] [--rounds R] [--only lunamq|mosquitto]
                      [--timeout S]        (loopback only; LUNAMQ_BIN overrides build/lunamq)
Prints a Markdown table; medians over the rounds. test/e2e/24-storm.py uses run_storm."""

import argparse
import collections
import errno
import heapq
import multiprocessing
import os
import queue
import random
import resource
import select
import selectors
import shutil
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

from benchlib import HOST, ROOT, cpu_s, rss_kb

WORKERS = 2                 # client processes: the client side must not be the bottleneck
ATTEMPT_TIMEOUT = 30.0      # a device gives up on one attempt after this long
BACKOFF_START, BACKOFF_FACTOR, BACKOFF_CAP = 0.5, 2.0, 8.0
KEEPALIVE = 60              # in CONNECT; connected devices send PINGREQ every PING_EVERY
PING_EVERY = 30.0
RTT_EVERY = 0.02            # the established client publishes this often
RTT_TOPIC = b"storm/rtt"


def raise_nofile():
    """Soft RLIMIT_NOFILE up to the hard limit: thousands of sockets per process. Brokers
    started afterwards inherit it (lunamq raises its own too; mosquitto does not)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def client_context(pki):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki + "/ca.crt")
    ctx.load_cert_chain(pki + "/dev1.crt", pki + "/dev1.key")
    return ctx


def connect_packet(cid, keepalive=KEEPALIVE):
    """MQTT 3.1.1 CONNECT, clean session."""
    body = b"\x00\x04MQTT\x04\x02" + struct.pack("!HH", keepalive, len(cid)) + cid
    return bytes([0x10, len(body)]) + body


# ---- one client process: its share of the devices in one selectors loop ----

class _Device:
    __slots__ = ("cid", "sock", "phase", "attempts", "gen", "connected_at", "why", "buf")

    def __init__(self, cid):
        self.cid, self.sock, self.phase, self.attempts, self.gen = cid, None, "idle", 0, 0
        self.connected_at, self.why, self.buf = None, None, b""


class _Devices:
    """Drives each device through TCP connect, TLS handshake and CONNECT/CONNACK on
    non-blocking sockets; a heap of timers holds attempt deadlines and retry starts (an
    entry whose generation is not the device's current one is stale)."""

    def __init__(self, wid, n, port, ctx, retry, attempt_timeout, deadline):
        self.port, self.ctx, self.retry = port, ctx, retry
        self.attempt_timeout, self.deadline = attempt_timeout, deadline
        self.sel = selectors.DefaultSelector()
        self.timers, self.seq = [], 0
        self.devices = [_Device(b"storm%d-%d" % (wid, i)) for i in range(n)]
        self.pending = n            # neither connected nor given up
        self.failures = collections.Counter()  # every failed attempt, by how it failed
        self.dropped = 0            # connected, then closed by the broker
        self.next_ping = time.time() + PING_EVERY

    def _timer(self, when, d, what):
        self.seq += 1
        heapq.heappush(self.timers, (when, self.seq, d, d.gen, what))

    def _begin(self, d):
        d.attempts += 1
        d.gen += 1
        d.phase, d.buf = "TCP connect", b""
        try:
            d.sock = socket.socket()
            d.sock.setblocking(False)
            d.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            err = d.sock.connect_ex((HOST, self.port))
        except OSError as e:
            err = e.errno
        if err not in (0, errno.EINPROGRESS):
            return self._fail(d, _tcp_error(err))
        self.sel.register(d.sock, selectors.EVENT_WRITE, d)
        now = time.time()
        self._timer(min(now + self.attempt_timeout, self.deadline), d, "timeout")

    def _fail(self, d, why):
        self._close(d)
        self.failures[why] += 1
        d.gen += 1
        d.why = why
        now = time.time()
        if self.retry and now < self.deadline:
            d.phase = "backoff"
            cap = min(BACKOFF_CAP, BACKOFF_START * BACKOFF_FACTOR ** (d.attempts - 1))
            self._timer(now + random.uniform(0, cap), d, "start")
        else:
            d.phase = "failed"
            self.pending -= 1

    def _close(self, d):
        if d.sock is not None:
            try:
                self.sel.unregister(d.sock)
            except (KeyError, ValueError):
                pass
            d.sock.close()
            d.sock = None

    def _want(self, d, events):
        self.sel.modify(d.sock, events, d)

    def _on_event(self, d):
        if d.phase == "TCP connect":
            err = d.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                return self._fail(d, _tcp_error(err))
            self.sel.unregister(d.sock)  # the SSL socket takes over the descriptor
            d.sock = self.ctx.wrap_socket(d.sock, server_hostname="localhost",
                                          do_handshake_on_connect=False)
            self.sel.register(d.sock, selectors.EVENT_READ, d)
            d.phase = "TLS handshake"
            self._handshake(d)
        elif d.phase == "TLS handshake":
            self._handshake(d)
        elif d.phase == "CONNACK":
            self._connack(d)
        elif d.phase == "connected":
            self._drain(d)

    def _handshake(self, d):
        try:
            d.sock.do_handshake()
        except ssl.SSLWantReadError:
            return self._want(d, selectors.EVENT_READ)
        except ssl.SSLWantWriteError:
            return self._want(d, selectors.EVENT_WRITE)
        except (ssl.SSLError, OSError) as e:
            return self._fail(d, _tls_error(e, "during the TLS handshake"))
        d.phase = "CONNACK"
        try:
            d.sock.send(connect_packet(d.cid))  # 40 bytes into an empty socket buffer
        except (ssl.SSLError, OSError) as e:
            return self._fail(d, _tls_error(e, "before CONNACK"))
        self._want(d, selectors.EVENT_READ)

    def _connack(self, d):
        # TLS 1.3: the client's handshake ends before the server has checked its
        # certificate; a refusal or a server-side timeout shows here
        while len(d.buf) < 4:
            try:
                data = d.sock.recv(4 - len(d.buf))
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except (ssl.SSLError, OSError) as e:
                return self._fail(d, _tls_error(e, "before CONNACK"))
            if not data:
                return self._fail(d, "closed before CONNACK")
            d.buf += data
        if d.buf[0] != 0x20 or d.buf[3] != 0:
            return self._fail(d, "CONNACK refused (%02x rc %d)" % (d.buf[0], d.buf[3]))
        d.phase, d.connected_at = "connected", time.time()
        d.gen += 1  # its attempt timeout is stale now
        self.pending -= 1

    def _drain(self, d):
        """A connected device reads its PINGRESPs; end of stream: the broker dropped it."""
        try:
            while d.sock.recv(4096):
                pass
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except (ssl.SSLError, OSError):
            pass
        self._close(d)
        d.phase = "dropped"
        self.dropped += 1

    def _ping_if_due(self, now):
        if now < self.next_ping:
            return
        self.next_ping = now + PING_EVERY
        for d in self.devices:
            if d.phase == "connected":
                try:
                    d.sock.send(b"\xc0\x00")
                except (ssl.SSLError, OSError):
                    pass

    def _poll(self, until):
        now = time.time()
        wait = max(0.0, min(until, self.timers[0][0] if self.timers else until, now + 1) - now)
        for key, _ in self.sel.select(wait):
            self._on_event(key.data)
        now = time.time()
        while self.timers and self.timers[0][0] <= now:
            _, _, d, gen, what = heapq.heappop(self.timers)
            if gen != d.gen:
                continue
            if what == "start":
                self._begin(d)
            elif now >= self.deadline:
                self._fail(d, "not connected by the time limit (%s)" % d.phase)
            else:
                self._fail(d, "no %s within %.0f s" % (d.phase, self.attempt_timeout))
        self._ping_if_due(now)

    def run(self):
        for d in self.devices:
            self._begin(d)
        while self.pending > 0 and time.time() < self.deadline:
            self._poll(self.deadline)
        for d in self.devices:  # still on the way at the time limit
            if d.phase not in ("connected", "failed", "dropped"):
                self._close(d)
                d.why = "not connected by the time limit (%s)" % d.phase
                if d.phase != "backoff":  # an attempt cut short, not a wait between two
                    self.failures[d.why] += 1
                d.phase = "failed"
        self.timers = []

    def hold(self, release, until):
        """Keep the connected devices open (and pinging) until release is set."""
        while not release.is_set() and time.time() < until:
            self._poll(min(until, time.time() + 0.1))

    def close_all(self):
        for d in self.devices:
            self._close(d)
        self.sel.close()


def _tcp_error(err):
    if err == errno.ECONNREFUSED:
        return "refused"
    if err == errno.ECONNRESET:
        return "reset during TCP connect"
    if err == errno.ETIMEDOUT:
        return "TCP connect timed out"
    return "TCP connect: " + errno.errorcode.get(err, str(err))


def _tls_error(e, when):
    if isinstance(e, (ssl.SSLEOFError, ssl.SSLZeroReturnError, BrokenPipeError)):
        return "closed " + when
    if isinstance(e, ConnectionResetError):
        return "reset " + when
    if isinstance(e, ssl.SSLError):
        return "TLS error %s: %s" % (when, e.reason or e)
    return "%s %s" % (errno.errorcode.get(e.errno, type(e).__name__), when)


def _worker(wid, n, port, pki, retry, attempt_timeout, limit, barrier, release, out):
    try:
        raise_nofile()
        ctx = client_context(pki)
        barrier.wait(30)
        start = time.time()
        devs = _Devices(wid, n, port, ctx, retry, attempt_timeout, start + limit)
        devs.run()
        out.put({"start": start, "end": time.time(), "failures": dict(devs.failures),
                 "cpu_s": time.process_time(),
                 "dropped": devs.dropped,
                 "devices": [(d.attempts, d.connected_at, d.why if d.phase == "failed" else None)
                             for d in devs.devices]})
        devs.hold(release, time.time() + limit + 60)
        devs.close_all()
    except Exception:
        out.put({"error": "client process %d: %s" % (wid, traceback.format_exc())})


# ---- the established client ----

class RoundTrips:
    """A plain-TCP MQTT client, connected and subscribed before the storm, that publishes
    QoS 0 to its own subscription every RTT_EVERY from a thread and times each message's
    way back."""

    def __init__(self, port):
        self.sock = socket.create_connection((HOST, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(connect_packet(b"storm-rtt"))
        if _read_exactly(self.sock, 4)[:1] != b"\x20":
            raise RuntimeError("round-trip client: no CONNACK")
        body = b"\x00\x01" + struct.pack("!H", len(RTT_TOPIC)) + RTT_TOPIC + b"\x00"
        self.sock.sendall(bytes([0x82, len(body)]) + body)
        if _read_exactly(self.sock, 5)[:1] != b"\x90":
            raise RuntimeError("round-trip client: no SUBACK")
        self.sent = {}   # seq: (wall clock, monotonic) at sending
        self.back = {}   # seq: seconds there and back
        self.error = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        buf, seq, nxt = b"", 0, time.monotonic()
        head = bytes([0x30, 2 + len(RTT_TOPIC) + 8]) + struct.pack("!H", len(RTT_TOPIC)) + RTT_TOPIC
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= nxt:
                    self.sent[seq] = (time.time(), now)
                    self.sock.sendall(head + struct.pack("!Q", seq))
                    seq += 1
                    nxt = max(nxt + RTT_EVERY, now)
                ready, _, _ = select.select([self.sock], [], [], max(0.0, nxt - time.monotonic()))
                if not ready:
                    continue
                data = self.sock.recv(65536)
                if not data:
                    self.error = "the broker closed the round-trip client"
                    return
                buf = self._parse(buf + data)
        except OSError as e:
            self.error = "round-trip client: %s" % e

    def _parse(self, buf):
        while len(buf) >= 2:
            length, shift, i = 0, 0, 1
            while i < len(buf) and i < 5:
                length |= (buf[i] & 0x7F) << shift
                shift += 7
                i += 1
                if not buf[i - 1] & 0x80:
                    break
            else:
                return buf  # the length is not all here yet
            if len(buf) < i + length:
                return buf
            if buf[0] >> 4 == 3:  # PUBLISH QoS 0: topic, then our 8-byte sequence number
                body = buf[i:i + length]
                seq = struct.unpack("!Q", body[-8:])[0]
                if seq in self.sent:
                    self.back[seq] = time.monotonic() - self.sent[seq][1]
            buf = buf[i + length:]
        return buf

    def stop(self):
        if self._stop.is_set():
            return
        time.sleep(0.5)  # the last messages of the window are on their way back
        self._stop.set()
        self._thread.join(10)
        self.sock.close()

    def stats(self, t0, t1):
        """Round trips (ms) of the messages sent from t0 to t1 (wall clock)."""
        seqs = [s for s, (wall, _) in self.sent.items() if t0 <= wall <= t1]
        rtts = sorted(self.back[s] * 1000 for s in seqs if s in self.back)
        if not rtts:
            return {"sent": len(seqs), "lost": len(seqs), "median_ms": None, "p99_ms": None,
                    "max_ms": None}
        return {"sent": len(seqs), "lost": len(seqs) - len(rtts),
                "median_ms": statistics.median(rtts),
                "p99_ms": rtts[min(len(rtts) - 1, int(0.99 * len(rtts)))], "max_ms": rtts[-1]}


def _read_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise RuntimeError("closed by the broker")
        data += chunk
    return data


# ---- a storm ----

def run_storm(tls_port, plain_port, pki, clients, retry=False, limit=120.0, pid=None,
              attempt_timeout=ATTEMPT_TIMEOUT, workers=WORKERS):
    """clients mTLS devices connect at once to tls_port while a plain client on plain_port
    times round trips; pid: the broker, for its CPU time and memory. Returns the figures
    as a dict (see summary())."""
    raise_nofile()
    ctx = multiprocessing.get_context("fork")  # before the round-trip thread starts
    barrier, release, out = ctx.Barrier(workers + 1), ctx.Event(), ctx.Queue()
    shares = [clients // workers + (1 if w < clients % workers else 0) for w in range(workers)]
    procs = [ctx.Process(target=_worker, daemon=True,
                         args=(w, shares[w], tls_port, pki, retry, attempt_timeout, limit,
                               barrier, release, out)) for w in range(workers)]
    for p in procs:
        p.start()
    rtt = None
    try:
        rtt = RoundTrips(plain_port)
        time.sleep(0.3)  # a few round trips before the storm
        cpu0 = cpu_s(pid) if pid else 0.0
        try:
            barrier.wait(30)
        except threading.BrokenBarrierError:
            why = [out.get(timeout=1)["error"] for _ in range(out.qsize())]
            raise RuntimeError("the client processes did not start:\n" + "\n".join(why))
        t0 = time.time()
        got = []
        for _ in procs:
            try:
                got.append(out.get(timeout=limit + 30))
            except queue.Empty:
                raise RuntimeError("a client process did not report within %.0f s" % (limit + 30))
        t1 = time.time()
        cpu1 = cpu_s(pid) if pid else 0.0
        rss = rss_kb(pid) if pid else 0
        rtt.stop()
    finally:
        release.set()
        for p in procs:
            p.join(15)
            if p.is_alive():
                p.kill()
                p.join()
        if rtt is not None:
            rtt.stop()
    errors = [g["error"] for g in got if "error" in g]
    if errors:
        raise RuntimeError("\n".join(errors))
    devices = [d for g in got for d in g["devices"]]
    done = [at - t0 for _, at, _ in devices if at is not None]
    failed = collections.Counter(why for _, _, why in devices if why is not None)
    attempts = [a for a, _, _ in devices]
    fails_all = collections.Counter()
    for g in got:
        fails_all.update(g["failures"])
    res = {"clients": clients, "retry": retry, "connected": len(done),
           "first_attempt": sum(1 for a, at, _ in devices if at is not None and a == 1),
           "failed": dict(failed), "failed_attempts": dict(fails_all),
           "dropped": sum(g["dropped"] for g in got),
           "last_s": max(done) if done else None,
           "median_s": statistics.median(done) if done else None,
           "storm_s": t1 - t0, "attempts": sum(attempts), "max_attempts": max(attempts),
           "retried": sum(1 for a in attempts if a > 1),
           "cpu_s": cpu1 - cpu0, "rss_mb": rss / 1024.0,
           "client_cpu_s": sum(g["cpu_s"] for g in got)}
    res["all_connected"] = res["connected"] == clients
    res["cpu_ms_per_client"] = 1000 * res["cpu_s"] / res["connected"] if done else None
    res["rtt"] = rtt.stats(t0, t1)
    res["rtt_error"] = rtt.error
    return res


def summary(r):
    """One paragraph of a storm's figures, for logs and assertion messages."""
    def ms(v):
        return "-" if v is None else "%.1f" % v
    q = r["rtt"]
    text = ("%d/%d connected (%d at the first attempt), last at %s s, median %s s; storm %.1f s; "
            "attempts %d (max %d per client, %d clients retried); failed: %s; failed attempts: "
            "%s; dropped after CONNACK: %d; round trip during the storm: median %s ms, p99 %s "
            "ms, max %s ms, %d of %d lost%s; broker CPU %.2f s (%s ms per connected client), "
            "RSS %.0f MB; client processes' CPU %.1f s" % (
                r["connected"], r["clients"], r["first_attempt"], ms(r["last_s"]),
                ms(r["median_s"]), r["storm_s"], r["attempts"], r["max_attempts"], r["retried"],
                r["failed"] or "none", r["failed_attempts"] or "none", r["dropped"],
                ms(q["median_ms"]), ms(q["p99_ms"]), ms(q["max_ms"]), q["lost"], q["sent"],
                " (%s)" % r["rtt_error"] if r["rtt_error"] else "", r["cpu_s"],
                ms(r["cpu_ms_per_client"]), r["rss_mb"], r["client_cpu_s"]))
    return text


# ---- lunamq against mosquitto ----

def table_rows(results, retry, clients):
    """(name, figure of a result) for the Markdown table; failure kinds seen in any run."""
    rtt = [("round trip of an established client during the storm, median ms (lower is better)",
            lambda r: r["rtt"]["median_ms"]),
           ("round trip ..., p99 ms (lower is better)", lambda r: r["rtt"]["p99_ms"]),
           ("round trip ..., max ms (lower is better)", lambda r: r["rtt"]["max_ms"]),
           ("round-trip messages lost (lower is better)", lambda r: r["rtt"]["lost"]),
           ("broker CPU s during the storm (lower is better)", lambda r: r["cpu_s"]),
           ("broker CPU ms per connected client (lower is better)",
            lambda r: r["cpu_ms_per_client"]),
           ("broker RSS MB at the end of the storm (lower is better)", lambda r: r["rss_mb"])]
    if not retry:
        kinds = sorted({k for r in results for k in r["failed"]})
        return ([("connected at the first attempt, of %d" % clients, lambda r: r["connected"]),
                 ("failed (lower is better)", lambda r: clients - r["connected"])] +
                [("failed: " + k, lambda r, k=k: r["failed"].get(k, 0)) for k in kinds] +
                [("s from the start until the last connected (lower is better)",
                  lambda r: r["last_s"]),
                 ("median s until connected (lower is better)", lambda r: r["median_s"])] +
                rtt)
    kinds = sorted({k for r in results for k in r["failed_attempts"]})
    return ([("connected with retries, of %d" % clients, lambda r: r["connected"]),
             ("all connected (1 yes, 0 no)", lambda r: int(r["all_connected"])),
             ("s from the start until the last connected (lower is better)",
              lambda r: r["last_s"]),
             ("connection attempts in total (lower is better)", lambda r: r["attempts"]),
             ("most attempts of one client (lower is better)", lambda r: r["max_attempts"]),
             ("clients that needed more than 1 attempt (lower is better)",
              lambda r: r["retried"])] +
            [("failed attempts: " + k, lambda r, k=k: r["failed_attempts"].get(k, 0))
             for k in kinds] + rtt)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=2000)
    ap.add_argument("--retry", action="store_true", help="retry with backoff, as devices do")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--only", choices=("lunamq", "mosquitto"), help="one broker only")
    ap.add_argument("--timeout", type=float, default=120.0, help="limit of one storm, s")
    args = ap.parse_args()
    hard = raise_nofile()  # inherited by the brokers started below
    if hard < args.clients + 1000:
        sys.exit("RLIMIT_NOFILE hard limit %d: too low for %d clients" % (hard, args.clients))
    from tls import Broker  # the same listeners and PKI as the TLS figures

    work = tempfile.mkdtemp(prefix="lunamq-storm-")
    pki = os.path.join(work, "pki")
    subprocess.run(["sh", os.path.join(ROOT, "examples", "certs", "make-certs.sh"), pki],
                   check=True, stdout=subprocess.DEVNULL)
    kinds = [args.only] if args.only else ["lunamq", "mosquitto"]
    results = {k: [] for k in kinds}
    try:
        for rnd in range(args.rounds):
            for kind in kinds if rnd % 2 == 0 else kinds[::-1]:
                b = Broker(kind, pki, work)
                try:
                    r = run_storm(b.tls, b.plain, pki, args.clients, args.retry, args.timeout,
                                  pid=b.proc.pid)
                    if b.proc.poll() is not None:
                        raise RuntimeError("%s exited during the storm" % kind)
                finally:
                    b.stop()
                results[kind].append(r)
                print("round %d %s: %s" % (rnd + 1, kind, summary(r)), file=sys.stderr,
                      flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(kind, fn):
        vals = [v for v in (fn(r) for r in results[kind]) if v is not None]
        return statistics.median(vals) if vals else None

    def fmt(v):
        return "-" if v is None else "%.1f" % v

    every = [r for k in kinds for r in results[k]]
    print("| figure | %s |%s" % (" | ".join(kinds),
                                  " lunamq / mosquitto |" if len(kinds) == 2 else ""))
    print("|---|%s" % ("---:|" * (len(kinds) + (1 if len(kinds) == 2 else 0))))
    for name, fn in table_rows(every, args.retry, args.clients):
        vals = [med(k, fn) for k in kinds]
        line = "| %s | %s |" % (name, " | ".join(fmt(v) for v in vals))
        if len(kinds) == 2:
            a, m = vals
            line += " %s |" % ("%.2f" % (a / m) if a is not None and m else "-")
        print(line)


if __name__ == "__main__":
    main()

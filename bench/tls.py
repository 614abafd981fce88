#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""TLS figures, lunamq against Debian's mosquitto in one run, same machine, same
test PKI (examples/certs/make-certs.sh), same load, alternating A/B:

- mutual-TLS MQTT connections per second (TLS handshake + CONNECT/CONNACK), full and
  resumed with a session ticket, TLS 1.3 and 1.2 (2 Python/OpenSSL client processes in
  parallel, ECDSA P-256 server and device certificates), the broker's CPU per full
  connect, and full connects with as many client processes as cores;
- idle memory per connection, plain and TLS: RSS growth of the broker after N MQTT
  clients connected and idle, divided by N.

Usage: bench/tls.py [--conns N] [--seconds S] [--rounds R] [--only TEXT]   (loopback only;
LUNAMQ_BIN overrides build/lunamq)
Prints a Markdown table; medians over the rounds."""

import argparse
import os
import resource
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import HOST, ROOT, cpu_s, free_port, rss_kb, start_broker, stop_broker


class Broker:
    def __init__(self, kind, pki, workdir):
        self.kind, self.plain, self.tls = kind, free_port(), free_port()
        conf = os.path.join(workdir, kind + ".conf")
        lines = ["listener %d 127.0.0.1" % self.plain, "allow_anonymous true",
                 "listener %d 127.0.0.1" % self.tls, "cafile %s/ca.crt" % pki,
                 "certfile %s/server.crt" % pki, "keyfile %s/server.key" % pki,
                 "require_certificate true"]
        if kind == "mosquitto":
            lines.insert(0, "per_listener_settings false")
            lines.insert(0, "user root")  # it would drop to user mosquitto, who cannot read the keys
        lines.append("log_type error")
        self.proc = start_broker(kind, conf, lines, [self.plain, self.tls])

    def stop(self):
        stop_broker(self.proc)


def cpu_per_connect(b, pki, seconds, version, clients):
    """Broker CPU ms (utime + stime) per full mTLS MQTT connect (handshake, then
    CONNECT/CONNACK) of parallel client processes. Not openssl s_time: in TLS 1.3 it
    closes as soon as its side of the handshake is done, before the broker has read its
    certificate; lunamq then drops the handshake unverified, mosquitto verifies it."""
    time.sleep(0.2)
    before = cpu_s(b.proc.pid)
    rate = handshakes(b.tls, pki, seconds, False, version, clients)
    if not rate:
        raise RuntimeError("no connection made")
    return 1000 * (cpu_s(b.proc.pid) - before) / (rate * seconds)


def _handshake_worker(port, pki, seconds, resume, version, out):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki + "/ca.crt")
    ctx.load_cert_chain(pki + "/dev1.crt", pki + "/dev1.key")
    ctx.minimum_version = ctx.maximum_version = version
    sess, n, reused = None, 0, 0
    end = time.time() + seconds
    while time.time() < end:
        raw = socket.create_connection((HOST, port), timeout=10)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as real clients do
        s = ctx.wrap_socket(raw, server_hostname="localhost", session=sess if resume else None)
        s.sendall(mqtt_connect_packet(b"hs"))
        s.recv(4)  # CONNACK; TLS 1.3 tickets are read on the way
        n += 1
        reused += s.session_reused
        sess = s.session
        s.close()
    out.put((n / seconds, reused))


def handshakes(port, pki, seconds, resume, version, clients=2):
    """MQTT-over-mTLS connections per second (TLS handshake + CONNECT/CONNACK) of 2
    client processes (unless told) in parallel; with resume, each reuses its previous
    session."""
    import multiprocessing
    q = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_handshake_worker,
                                     args=(port, pki, seconds, resume, version, q))
             for _ in range(clients)]
    for p in procs:
        p.start()
    got = [q.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join()
    rate = sum(r for r, _ in got)
    if resume and sum(u for _, u in got) < 0.9 * rate * seconds:
        raise RuntimeError("sessions were not resumed: %r" % (got,))
    return rate


def mqtt_connect_packet(cid):
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
    return bytes([0x10, len(body)]) + body


def idle_memory(b, pki, n, use_tls):
    """kB of broker RSS per idle connected MQTT client."""
    ctx = None
    if use_tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(pki + "/ca.crt")
        ctx.load_cert_chain(pki + "/dev1.crt", pki + "/dev1.key")
    time.sleep(0.3)
    before = rss_kb(b.proc.pid)
    socks = []
    try:
        for i in range(n):
            s = socket.create_connection((HOST, b.tls if use_tls else b.plain), timeout=10)
            if ctx:
                s = ctx.wrap_socket(s, server_hostname="localhost")
            s.sendall(mqtt_connect_packet(b"idle%d" % i))
            if s.recv(4)[:1] != b"\x20":
                raise RuntimeError("no CONNACK")
            socks.append(s)
        time.sleep(2.0)  # idle: lunamq trims a connection's TLS buffers 1 s after its handshake
        after = rss_kb(b.proc.pid)
    finally:
        for s in socks:
            s.close()
    return (after - before) / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=2000)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="", help="run the figures whose name contains this")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))

    work = tempfile.mkdtemp(prefix="lunamq-bench-")
    pki = os.path.join(work, "pki")
    subprocess.run(["sh", os.path.join(ROOT, "examples", "certs", "make-certs.sh"), pki],
                   check=True, stdout=subprocess.DEVNULL)
    v13, v12 = ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2
    sec = args.seconds
    cores = os.cpu_count() or 1
    rows = [("mTLS MQTT connects/s, full handshake, TLS 1.3", lambda b: handshakes(b.tls, pki, sec, False, v13)),
            ("mTLS MQTT connects/s, resumed (ticket), TLS 1.3", lambda b: handshakes(b.tls, pki, sec, True, v13)),
            ("mTLS MQTT connects/s, full handshake, TLS 1.2", lambda b: handshakes(b.tls, pki, sec, False, v12)),
            ("mTLS MQTT connects/s, resumed (ticket), TLS 1.2", lambda b: handshakes(b.tls, pki, sec, True, v12)),
            ("broker CPU ms per full mTLS MQTT connect, TLS 1.3 (lower is better)",
             lambda b: cpu_per_connect(b, pki, sec, v13, 2)),
            ("broker CPU ms per full mTLS MQTT connect, TLS 1.2 (lower is better)",
             lambda b: cpu_per_connect(b, pki, sec, v12, 2)),
            ("full mTLS MQTT connects/s, TLS 1.3, as many clients as cores (%d)" % cores,
             lambda b: handshakes(b.tls, pki, sec, False, v13, cores)),
            ("full mTLS MQTT connects/s, TLS 1.2, as many clients as cores (%d)" % cores,
             lambda b: handshakes(b.tls, pki, sec, False, v12, cores)),
            ("idle kB per plain connection (%d)" % args.conns, lambda b: idle_memory(b, pki, args.conns, False)),
            ("idle kB per mTLS connection (%d)" % args.conns, lambda b: idle_memory(b, pki, args.conns, True))]
    rows = [r for r in rows if args.only in r[0]]
    results = {(r, k): [] for r, _ in rows for k in ("lunamq", "mosquitto")}
    try:
        for rnd in range(args.rounds):
            for kind in ("lunamq", "mosquitto") if rnd % 2 == 0 else ("mosquitto", "lunamq"):
                for name, fn in rows:
                    b = Broker(kind, pki, work)  # fresh broker per figure: memory starts clean
                    try:
                        results[(name, kind)].append(fn(b))
                    finally:
                        b.stop()
                print("round %d %s done" % (rnd + 1, kind), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print("| figure | lunamq | mosquitto | lunamq / mosquitto |")
    print("|---|---:|---:|---:|")
    for name, _ in rows:
        a = statistics.median(results[(name, "lunamq")])
        m = statistics.median(results[(name, "mosquitto")])
        print("| %s | %.1f | %.1f | %.2f |" % (name, a, m, a / m if m else float("nan")))


if __name__ == "__main__":
    main()

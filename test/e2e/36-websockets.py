# SPDX-License-Identifier: MIT
"""MQTT over WebSockets (issue 21): `listener PORT` + `protocol websockets` and /mqtt on
an http_listener. The upgrade is answered strictly (101, or 400/403/426/431 and a
close), packets and frames need not line up, and every hostile frame closes its own
connection with the right close code, counted and logged, while a probe client on
plain TCP measures its own round trips. Raw sockets throughout (wsraw.py); MQTT.js,
paho and a browser are in 37-websockets-clients.py."""

import atexit
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

import lqtest
from lqtest import CTL, conf, install_hook
from mqttraw import (DISCONNECT, PINGRESP, PUBACK, PUBLISH, Probe, connected, packet,
                     publish_bytes, s)
from wsraw import (BINARY, CLOSE, CONT, PING, PONG, TEXT, Ws, WsClient, accept_of, frame,
                   upgrade_request)

WS = ("listener {tls_port} 127.0.0.1", "protocol websockets")


def stats(b):
    out = subprocess.run([CTL, "-s", b.admin, "--json", "stats"], capture_output=True, text=True,
                         timeout=10).stdout
    return json.loads(out)


def raw_answer(port, data, timeout=5.0):
    """Send bytes on a fresh connection: what comes back until the broker closes."""
    sk = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sk.sendall(data)
    out = b""
    try:
        while True:
            d = sk.recv(65536)
            if not d:
                break
            out += d
    except (socket.timeout, ConnectionResetError):
        pass
    sk.close()
    return out


def connect_bytes(cid, keepalive=60):
    return packet(0x10, s(b"MQTT") + bytes([5, 0x02]) + struct.pack("!H", keepalive) + b"\x00" +
                  s(cid))


# ---- the upgrade ----

@conf(*WS)
def test_upgrade_answers_101_with_the_mqtt_subprotocol(b):
    """[MQTT-6.0.0-4] the subprotocol selected and returned is "mqtt"."""
    w = Ws(b.tls_port)
    head, key = w.upgrade(path="/anything")  # any path on a websockets listener
    assert w.status == 101, head
    assert w.headers["sec-websocket-accept"] == accept_of(key)
    assert w.headers["sec-websocket-protocol"] == "mqtt"
    assert w.headers["upgrade"].lower() == "websocket"
    w.close()
    w = Ws(b.tls_port)
    w.upgrade(protocol="foo, mqtt")
    assert w.status == 101 and w.headers["sec-websocket-protocol"] == "mqtt"
    w.close()
    w = Ws(b.tls_port)
    w.upgrade(protocol="mqttv3.1")  # what MQTT 3.1 clients ask for
    assert w.status == 101 and w.headers["sec-websocket-protocol"] == "mqttv3.1"
    w.close()
    w = Ws(b.tls_port)
    w.upgrade(protocol=None)  # none offered: none answered
    assert w.status == 101 and "sec-websocket-protocol" not in w.headers
    w.close()
    # the RFC 6455 example key gives the RFC's answer
    w = Ws(b.tls_port)
    w.upgrade(key="dGhlIHNhbXBsZSBub25jZQ==")
    assert w.headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    w.close()


@conf(*WS)
def test_bad_upgrades_get_their_status_and_a_close(b):
    port = b.tls_port
    cases = [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 426, "upgrade: websocket"),
        (upgrade_request(version="12")[0], 426, "sec-websocket-version: 13"),
        (upgrade_request(key="c2hvcnQ=")[0], 400, None),  # 5 bytes, not 16
        (upgrade_request(key="not base64 at all!!!!!!=")[0], 400, None),
        (upgrade_request(protocol="foo")[0], 400, None),  # mqtt not offered
        (upgrade_request()[0].replace(b"GET ", b"POST ", 1), 400, None),
        (upgrade_request()[0].replace(b"HTTP/1.1", b"HTTP/1.0", 1), 400, None),
        (upgrade_request()[0].replace(b"Host: 127.0.0.1\r\n", b""), 400, None),
        (upgrade_request()[0].replace(b"Connection: Upgrade", b"Connection: keep-alive"), 400,
         None),
        (upgrade_request(extra=["X-Big: " + "a" * 9000])[0], 431, None),  # over 8 KiB
        (b"\x10\x0c\x00\x04MQTT\x05\x02\x00\x3c\x00\x00", 400, None),  # raw MQTT here
    ]
    with Probe(b.port) as p:
        for data, status, header in cases:
            out = raw_answer(port, data).decode(errors="replace")
            assert out.startswith("HTTP/1.1 %d " % status), (data[:60], out[:200])
            if header:
                assert header in out.lower(), out
            assert "101" not in out.split("\r\n")[0]
    p.check(0.5)
    st = stats(b)
    assert st["ws_refused"] == len(cases) and st["ws_upgrades"] == 0, st
    assert b.wait_log("websocket upgrade refused (426)")


@conf(*WS, "websockets_origin https://ok.example http://localhost:8080")
def test_websockets_origin_is_checked(b):
    for origin, status in [("https://ok.example", 101), ("HTTPS://OK.example", 101),
                           ("http://localhost:8080", 101), ("https://evil.example", 403),
                           ("null", 403), (None, 101)]:  # no Origin: not a browser
        w = Ws(b.tls_port)
        w.upgrade(origin=origin)
        assert w.status == status, (origin, w.status)
        w.close()


@conf(*WS)
def test_slow_upgrade_request_is_cut_at_the_connect_deadline(b):
    """A client that trickles its upgrade request holds nothing past the CONNECT
    deadline (10 s, from the accept): 408, closed; a probe is served meanwhile."""
    sk = socket.create_connection(("127.0.0.1", b.tls_port), timeout=15)
    req = upgrade_request()[0]
    t0 = time.time()
    with Probe(b.port) as p:
        i = 0
        sk.settimeout(0.5)
        out = b""
        while time.time() - t0 < 14 and not out:
            if i < len(req) - 4:
                sk.send(req[i:i + 1])
                i += 1
            try:
                out = sk.recv(4096)
            except socket.timeout:
                pass
    took = time.time() - t0
    assert out.startswith(b"HTTP/1.1 408 "), out
    assert 9 <= took <= 13, took
    p.check(0.5)
    sk.close()


# ---- packets and frames [MQTT-6.0.0-2] ----

@conf(*WS)
def test_packets_span_frames_and_frames_hold_several_packets(b):
    """[MQTT-6.0.0-2] a frame may hold several packets or part of one."""
    c = WsClient(b.tls_port, split=5)  # every packet in 5 frames
    assert c.connect("split").rc == 0
    assert c.subscribe(1, [("t/#", 1)]).codes == [1]
    c.split = 1
    # three packets in one frame: two PUBLISH and a PINGREQ
    c.send(publish_bytes("t/a", b"one", qos=1, pid=7) + publish_bytes("t/b", b"two") +
           packet(0xC0, b""))
    got = [c.recv() for _ in range(4)]
    kinds = sorted((p.type, getattr(p, "topic", None) or "") for p in got)
    assert kinds == sorted([(PUBACK, ""), (PUBLISH, "t/a"), (PUBLISH, "t/b"), (PINGRESP, "")]), got
    # a large packet a byte per frame for its first 100 bytes, then the rest whole
    big = publish_bytes("t/big", os.urandom(200000))
    c.sock.sendall(b"".join(frame(BINARY if i == 0 else CONT, big[i:i + 1], fin=False)
                            for i in range(100)) + frame(CONT, big[100:]))
    m = c.expect(PUBLISH, timeout=10)
    assert m.topic == "t/big" and len(m.payload) == 200000 and m.payload == big[-200000:]
    # 3 MB in frames of 100 000 bytes with a ping between two of them: read into the
    # packet's own block, the pong answered meanwhile
    big = publish_bytes("t/big", os.urandom(3000000))
    parts = [big[i:i + 100000] for i in range(0, len(big), 100000)]
    c.sock.sendall(b"".join(frame(BINARY if i == 0 else CONT, p, fin=i == len(parts) - 1) +
                            (frame(PING, b"mid") if i == 7 else b"") for i, p in enumerate(parts)))
    m = c.expect(PUBLISH, timeout=20)
    assert m.topic == "t/big" and m.payload == big[-3000000:]
    # a TCP subscriber gets what a WebSocket client publishes, and the other way round
    t = connected(b.port, "tcp")
    t.subscribe(1, [("t/#", 0)])
    c.publish("t/x", b"from-ws")
    assert c.expect(PUBLISH).payload == b"from-ws"
    assert t.expect(PUBLISH).payload == b"from-ws"
    t.publish("t/y", b"from-tcp")
    assert c.expect(PUBLISH).payload == b"from-tcp"


@conf(*WS)
def test_output_of_a_loop_turn_leaves_in_few_frames(b):
    """Many messages to a WebSocket subscriber arrive whole and in order (the broker
    frames what a loop turn queued as one frame, not a frame per packet)."""
    c = WsClient(b.tls_port)
    c.connect("sub")
    c.subscribe(1, [("f/#", 0)])
    t = connected(b.port, "pub")
    n = 3000
    t.send(b"".join(publish_bytes("f/t", b"%06d" % i) for i in range(n)))
    got = []
    deadline = time.time() + 20
    while len(got) < n and time.time() < deadline:
        p = c.recv(5)
        assert p is not None, "got %d of %d" % (len(got), n)
        got.append(int(p.payload))
    assert got == list(range(n))
    assert c.frames <= n // 10, "%d frames for %d messages" % (c.frames, n)


# ---- hostile frames: each closes its own connection with its code ----

def hostile(port, *frames_, before=True):
    """Upgrade, CONNECT, then send frames; the close code the broker answers with."""
    w = Ws(port)
    w.upgrade()
    assert w.status == 101
    if before:
        w.send(frame(BINARY, connect_bytes("h")))
        f = w.recv_frame()
        assert f and f[1] == BINARY and f[2][0] == 0x20, f  # CONNACK
    for fr in frames_:
        try:
            w.send(fr)
        except OSError:
            break
    code = w.close_code()
    closed = w.eof()
    w.close()
    return code, closed


def pingreqs(n):
    return b"\xc0\x00" * n


@conf(*WS, "max_packet_size 100000")
def test_hostile_frames_close_with_their_code(b):
    cases = [
        ("unmasked client frame", [frame(BINARY, pingreqs(1), mask=False)], 1002),
        ("reserved bit", [frame(BINARY, pingreqs(1), rsv=4)], 1002),
        ("reserved opcode", [frame(0x3, b"x")], 1002),
        ("reserved control opcode", [frame(0xB, b"x")], 1002),
        ("continuation without a message", [frame(CONT, pingreqs(1))], 1002),
        ("data frame inside a message", [frame(BINARY, pingreqs(1), fin=False),
                                         frame(BINARY, pingreqs(1))], 1002),
        ("fragmented ping", [frame(PING, b"a", fin=False)], 1002),
        ("ping over 125 bytes", [frame(PING, b"p" * 126)], 1002),
        ("close with 1 byte", [frame(CLOSE, b"\x03")], 1002),
        ("close with code 1005", [frame(CLOSE, struct.pack("!H", 1005))], 1002),
        ("oversized frame", [frame(BINARY, b"", length=1 << 40)], 1009),
        # a message that never ends: valid packets (PINGREQ) in fragments, 200 KB of them
        ("fragmented forever", [frame(BINARY, pingreqs(8000), fin=False)] +
         [frame(CONT, pingreqs(8000), fin=False) for _ in range(12)], 1009),
        ("text frame", [frame(TEXT, b"hello")], 1003),  # [MQTT-6.0.0-1]
        ("text, invalid UTF-8", [frame(TEXT, b"ok \xc0\x80")], 1007),
        ("close reason not UTF-8", [frame(CLOSE, struct.pack("!H", 1000) + b"\xff")], 1007),
    ]
    with Probe(b.port) as p:
        for what, frames_, code in cases:
            got, closed = hostile(b.tls_port, *frames_)
            assert got == code, "%s: close %s, expected %d" % (what, got, code)
            assert closed, what + ": connection not closed"
        # before CONNECT too
        assert hostile(b.tls_port, frame(BINARY, b"\x10", mask=False), before=False) == (1002,
                                                                                       True)
    p.check(0.5)
    st = stats(b)
    assert st["ws_errors"] == len(cases) + 1, st
    assert b.wait_log("websocket: client frame not masked (close 1002): closing") or \
        b.wait_log("(close 1002): closing")
    assert b.wait_log("(close 1009): closing")
    assert b.wait_log("(close 1003): closing")
    assert b.wait_log("(close 1007): closing")


@conf(*WS)
def test_control_frames_between_fragments_are_answered(b):
    """A ping in the middle of a fragmented message gets its pong, and the message goes
    on; a close from the client is echoed with its code and ends the connection, and
    its will is published (no DISCONNECT came)."""
    w = Ws(b.tls_port)
    w.upgrade()
    cb = connect_bytes("frag")
    w.send(frame(BINARY, cb[:5], fin=False) + frame(PING, b"are you there") +
           frame(CONT, cb[5:9], fin=False) + frame(PONG, b"unsolicited") + frame(CONT, cb[9:]))
    f = w.recv_frame()
    assert f == (True, PONG, b"are you there"), f
    f = w.recv_frame()
    assert f[1] == BINARY and f[2][0] == 0x20 and f[2][3] == 0, f  # CONNACK, success
    w.close()
    # a will, then a WebSocket close without DISCONNECT
    t = connected(b.port, "watch")
    t.subscribe(1, [("will/#", 0)])
    c = WsClient(b.tls_port)
    c.connect("dying", will={"topic": "will/dying", "payload": b"gone"})
    c.sock.sendall(frame(CLOSE, struct.pack("!H", 1001) + b"bye"))
    assert c.ws.close_code() == 1001  # echoed
    assert c.ws.eof()
    assert t.expect(PUBLISH).payload == b"gone"
    assert stats(b)["ws_peer_closes"] == 1


# ---- the same broker: limits, keep-alive, hooks, access ----

@conf(*WS, "max_packet_size 1000")
def test_limits_and_keep_alive_over_websockets(b):
    c = WsClient(b.tls_port)
    c.connect("big")
    c.publish("x", b"a" * 2000)
    p = c.recv()
    assert p is not None and p.type == DISCONNECT and p.rc == 0x95, p  # packet too large
    assert c.closed() and c.close_code == 1000
    k = WsClient(b.tls_port)
    ca = k.connect("sleepy", keepalive=1)
    assert ca.rc == 0
    t0 = time.time()
    p = k.recv(5)
    assert p is not None and p.type == DISCONNECT and p.rc == 0x8D, p  # keep alive timeout
    assert 1.0 < time.time() - t0 < 3.5
    assert k.closed()


FILES = tempfile.mkdtemp(prefix="lunamq-e2e-ws-")
atexit.register(shutil.rmtree, FILES, True)
PASSWD = os.path.join(FILES, "passwd")
ACL = os.path.join(FILES, "acl")
subprocess.run(["mosquitto_passwd", "-c", "-b", PASSWD, "dev", "devpass"], check=True)
with open(ACL, "w") as f:
    f.write("user dev\ntopic readwrite dev/#\n")


@conf(*WS, "allow_anonymous false", "password_file " + PASSWD, "acl_file " + ACL)
def test_hooks_passwords_and_acl_apply_over_websockets(b):
    install_hook(b, "10-h.lua", '''
return {topics = {"dev/#"}, on_publish = function(m)
  m.payload = "hooked:" .. m.payload
  return m
end}''')
    c = WsClient(b.tls_port)
    assert c.connect("anon").rc == 0x87  # not authorized: no username
    c = WsClient(b.tls_port)
    assert c.connect("d", username="dev", password=b"wrong").rc == 0x86
    c = WsClient(b.tls_port)
    assert c.connect("d", username="dev", password=b"devpass").rc == 0
    c.subscribe(1, [("dev/#", 1)])
    c.publish("dev/a", b"x", qos=1, pid=3)
    got = {p.type: p for p in (c.recv(), c.recv())}
    assert PUBACK in got and got[PUBLISH].payload == b"hooked:x", got
    c.ack(PUBACK, got[PUBLISH].pid)
    c.publish("other/a", b"x", qos=1, pid=4)
    assert c.expect(PUBACK).rc == 0x87  # acl_file: not authorized


# ---- /mqtt on the http_listener ----

@conf("http_listener {tls_port}", "websockets_origin https://dash.example")
def test_mqtt_at_the_http_listener(b):
    c = WsClient(b.tls_port, path="/mqtt")
    assert c.connect("via-http").rc == 0
    c.subscribe(1, [("h/#", 0)])
    t = connected(b.port, "tcp")
    t.publish("h/1", b"hi")
    assert c.expect(PUBLISH).payload == b"hi"
    # the origin policy holds here too; a bad upgrade is refused, HTTP goes on serving
    w = Ws(b.tls_port)
    w.upgrade(origin="https://evil.example")
    assert w.status == 403
    w = Ws(b.tls_port)
    w.upgrade(version="8")
    assert w.status == 426 and w.headers["sec-websocket-version"] == "13"
    out = raw_answer(b.tls_port, b"GET /retained/h/1 HTTP/1.1\r\nHost: x\r\n"
                                 b"Connection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 404 "), out  # not retained: the HTTP side still answers
    # hostile framing is cut here as on a websockets listener
    w = Ws(b.tls_port)
    w.upgrade()
    w.send(frame(BINARY, b"\xc0\x00", mask=False))
    assert w.close_code() == 1002
    st = stats(b)
    assert st["ws_upgrades"] == 2 and st["ws_refused"] == 2 and st["ws_errors"] == 1, st


@conf(*WS, "persistence true", "persistence_location {dir}/data")
def test_an_acknowledgement_over_websockets_means_durable(b):
    """The PUBACK waits for the journal (the durability gate holds it in the WebSocket's
    output, framed once released): SIGKILL right after it loses nothing."""
    c = WsClient(b.tls_port)
    c.connect("durable")
    c.publish("keep/ws", b"v1", qos=1, pid=9, retain=True)
    assert c.expect(PUBACK).pid == 9
    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait(10)
    b.start()
    c = WsClient(b.tls_port)
    c.connect("after")
    c.subscribe(1, [("keep/#", 0)])
    m = c.expect(PUBLISH)
    assert (m.topic, m.payload, m.retain) == ("keep/ws", b"v1", True)


@lqtest.serial
@conf(*WS)
def test_ping_flood_from_a_client_that_reads_nothing_is_bounded(b):
    """A client sending WebSocket pings (125-byte payloads) without reading the pongs
    would grow its output as fast as it sends: past 1 MiB of unread output its input
    is no longer read, so it fills its own socket buffers instead of the broker's
    memory. The others are served meanwhile; once it reads, every pong arrives."""
    w = Ws(b.tls_port)
    w.upgrade()
    before = lqtest.rss_kb(b.proc.pid)
    pings = frame(PING, b"p" * 125) * 500
    sent = 0
    with Probe(b.port) as p:
        w.sock.settimeout(3)
        try:
            while sent < 60_000_000:  # stops when its send buffer is full
                w.sock.sendall(pings)
                sent += len(pings)
        except socket.timeout:
            pass
    p.check(0.5)
    grown = lqtest.rss_kb(b.proc.pid) - before
    limit = 16 * 1024 if not os.environ.get("LUNAMQ_SAN") else 300 * 1024
    assert grown < limit, "broker grew by %d kB for %d MB of pings" % (grown, sent // 1000000)
    assert sent < 60_000_000, "the broker read everything: nothing held its input"
    whole = sent // len(frame(PING, b"p" * 125))  # the last write may have been cut
    got = 0
    w.sock.settimeout(5)
    while got < whole * 127:
        d = w.sock.recv(1 << 20)
        assert d, "closed after %d of %d bytes of pongs" % (got, whole * 127)
        got += len(d)

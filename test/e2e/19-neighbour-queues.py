# SPDX-License-Identifier: MIT
"""Noisy neighbours, queues (issue 11, points 1, 2, 7, 12): one client that does not
read, or a stream of messages nobody can be held back for, must not stall or exhaust
the broker for the others. Each test runs the harmful client next to a Probe that
measures its own round trips, and asserts the broker's memory and the probe's worst
latency."""

import json
import os
import socket
import subprocess
import time

from lqtest import CTL, conf, rss_kb, wait_for
from mqttraw import (DISCONNECT, PINGRESP, PUBACK, PUBLISH, RECEIVE_MAXIMUM, SESSION_EXPIRY,
                     Client, Probe, connected, packet, publish_bytes)

SAN = bool(os.environ.get("LUNAMQ_SAN"))


def ctl_json(b, *args):
    r = subprocess.run([CTL, "-s", b.admin, "--json", *args], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, (args, r.stderr)
    return json.loads(r.stdout)


def client_info(b, cid):
    got = [c for c in ctl_json(b, "clients") if c["id"] == cid]
    return got[0] if got else None


def deaf_subscriber(b, cid, filt, qos=1, expiry=0, recv_max=1):
    """A subscriber that never reads once subscribed (a tiny receive buffer, so that
    the broker's writes stop soon)."""
    props = [(RECEIVE_MAXIMUM, recv_max)]
    if expiry:
        props.append((SESSION_EXPIRY, expiry))
    c = connected(b.port, cid, properties=props, clean=True)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    assert c.subscribe(1, [(filt, qos)]).codes == [qos]
    return c


def drain_until_close(c, timeout=5.0):
    """Read everything the broker sends until it closes; returns the packets."""
    got = []
    end = time.time() + timeout
    while time.time() < end:
        p = c.recv(end - time.time())
        if p is None:
            break
        got.append(p)
    return got


def qos1_round_trips(port, cid, n, topic="rt/x", timeout=10.0):
    """n QoS 1 publishes, each waiting for its PUBACK; returns the slowest (s)."""
    c = connected(port, cid, keepalive=4)
    worst = 0.0
    for i in range(n):
        t0 = time.time()
        c.publish(topic, b"v", qos=1, pid=i % 60000 + 1)
        p = c.expect(PUBACK, timeout=timeout)
        assert p.pid == i % 60000 + 1
        worst = max(worst, time.time() - t0)
    c.close()
    return worst


@conf("max_queued_messages 100", "max_hold_time 1")
def test_slow_subscriber_is_cut_after_max_hold_time_not_the_publishers(b):
    """issue 11.1: a `#` subscriber with Receive Maximum 1 that never reads. Publishers
    are held for at most max_hold_time while it makes no progress; then the subscriber
    (a clean session) is disconnected with 0x97, once, logged and counted, and 3 000 QoS 1
    round trips of another publisher all complete."""
    slow = deaf_subscriber(b, "slow", "#")
    with Probe(b.port) as p:
        t0 = time.time()
        worst = qos1_round_trips(b.port, "pub", 3000, timeout=5)
        took = time.time() - t0
    assert worst < 2.0, "a publisher was held %.2f s (max_hold_time 1)" % worst
    p.check(2.0)
    got = drain_until_close(slow)
    assert got and got[-1].type == DISCONNECT and got[-1].rc == 0x97, got[-3:]
    assert b.output().count("slow consumer") == 1, b.output()
    stats = ctl_json(b, "stats")
    assert stats["slow_consumers_disconnected"] == 1, stats
    print("  3000 round trips in %.2f s, worst %.3f s, probe worst %.3f s" % (took, worst, p.worst))


@conf("max_queued_messages 10", "max_hold_time 30")
def test_held_publisher_is_still_read_and_answered(b):
    """issue 11.1: while a publisher is held (its PUBACKs withheld) its PINGREQ, its
    SUBSCRIBE and its QoS 0 messages are read and answered; when the subscriber reads
    again the withheld PUBACKs come in order and nothing is lost."""
    slow = deaf_subscriber(b, "slow", "held/#", recv_max=5)
    pub = connected(b.port, "pub", keepalive=60)
    # fill the subscriber's queue; a window of 10 keeps within our Receive Maximum (20)
    acked = []
    sent = 0
    for i in range(1, 41):
        pub.publish("held/x", b"%d" % i, qos=1, pid=i)
        sent = i
        if i > 10:
            p = pub.recv(0.3)
            if p is None:
                break
            assert p.type == PUBACK
            acked.append(p.pid)
    # held now: further PUBACKs are withheld, but the connection is served
    pub.send(packet(0xC0, b""))
    t0 = time.time()
    assert pub.expect(PINGRESP, timeout=1.0)
    assert time.time() - t0 < 0.5
    assert pub.subscribe(7, [("own/echo", 0)]).codes == [0]
    pub.publish("own/echo", b"q0")
    p = pub.recv(1.0)
    while p is not None and p.type == PUBACK:  # acks released meanwhile would be a bug
        acked.append(p.pid)
        p = pub.recv(1.0)
    assert p is not None and p.type == PUBLISH and p.payload == b"q0", p
    assert sent < 40 and len(acked) < sent, "nothing was held"
    # the subscriber reads: the withheld acks arrive, in order, and every message too
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    got = []
    end = time.time() + 10
    while len(got) < sent and time.time() < end:
        m = slow.recv(1.0)
        if m is not None and m.type == PUBLISH:
            got.append(int(m.payload))
            slow.ack(PUBACK, m.pid)
    while len(acked) < sent:
        p = pub.recv(2.0)
        assert p is not None and p.type == PUBACK, "withheld PUBACKs lost (%d)" % len(acked)
        acked.append(p.pid)
    assert acked == list(range(1, sent + 1)), acked
    assert sorted(got) == list(range(1, sent + 1)), got


@conf("max_queued_messages 50", "max_hold_time 1")
def test_persistent_slow_subscriber_keeps_a_bounded_queue_and_drops_the_rest(b):
    """issue 11.1: a slow subscriber with a persistent session is not disconnected: after
    max_hold_time its queue stays at the bound and further messages for it are dropped,
    counted per client and logged once; publishers are no longer held."""
    slow = deaf_subscriber(b, "slowp", "keep/#", expiry=3600)
    with Probe(b.port) as p:
        worst = qos1_round_trips(b.port, "pub", 600, topic="keep/x", timeout=5)
    assert worst < 2.0, worst
    p.check(2.0)
    info = client_info(b, "slowp")
    assert info and info["online"], info
    assert info["queued"] <= 50 + 20, info
    assert info["dropped"] >= 400, info
    assert b.output().count("slow consumer") == 1
    # it reads again: what was kept arrives, and new messages flow to it again
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    n = 0
    while True:
        m = slow.recv(1.0)
        if m is None:
            break
        if m.type == PUBLISH:
            n += 1
            slow.ack(PUBACK, m.pid)
    assert 50 <= n <= 75, n
    pub = connected(b.port, "pub2")
    pub.publish("keep/x", b"after", qos=1, pid=1)
    pub.expect(PUBACK)
    m = slow.expect(PUBLISH)
    assert m.payload == b"after"


@conf("max_queued_messages 100", "max_queued_bytes 1000000", "max_hold_time 1")
def test_retained_on_subscribe_count_against_the_bounds(b):
    """issue 11.2: retained messages sent on subscribe count against the subscriber's
    byte bound: 4 000 retained messages of 1 kB for a client that does not read with
    max_queued_bytes 1 MB queue about 1 MB, not 4 MB, and the rest is counted as dropped."""
    pub = connected(b.port, "retainer")
    payload = b"r" * 1000
    data = b"".join(publish_bytes("ret/%d" % i, payload, qos=0, retain=True) for i in range(4000))
    pub.send(data)
    pub.publish("sync", b"", qos=1, pid=1)
    pub.expect(PUBACK, timeout=10)
    assert wait_for(lambda: ctl_json(b, "stats")["retained"] == 4000, 5)
    with Probe(b.port) as p:
        c = Client(b.port)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.connect("deaf")
        c.subscribe(1, [("ret/#", 0)], expect=False)
        time.sleep(0.5)
    p.check(0.5)
    info = client_info(b, "deaf")
    assert info["queued"] <= 1100, info
    assert info["queued_bytes"] <= 1100 * 1000, info
    stats = ctl_json(b, "stats")
    assert stats["dropped_queue_full"] >= 2000, stats


@conf("max_queued_messages 100")
def test_wills_do_not_grow_a_queue_past_its_bound(b):
    """issue 11.7: wills have no publisher to hold back: 300 clients with 20 kB QoS 1 wills
    dropping their connections put at most the bound (100) in a deaf subscriber's queue;
    the rest is dropped and counted."""
    slow = deaf_subscriber(b, "deaf", "will/#")
    clients = []
    for i in range(300):
        c = Client(b.port)
        c.connect("w%d" % i, will=dict(topic="will/%d" % i, payload=b"w" * 20000, qos=1))
        clients.append(c)
    before = rss_kb(b.proc.pid)  # the wills are held now: 6 MB
    with Probe(b.port) as p:
        for c in clients:
            c.close()  # no DISCONNECT: the will is published
        assert wait_for(lambda: ctl_json(b, "stats")["sessions_online"] <= 2, 5)
    p.check(0.5)
    info = client_info(b, "deaf")
    assert info["queued"] <= 100, info
    assert info["dropped"] >= 150, info
    if not SAN:
        grown = rss_kb(b.proc.pid) - before
        assert grown < 5 * 1024, "broker grew by %d kB" % grown
    slow.close()


@conf("max_queued_messages 100")
def test_hook_timer_publishing_does_not_grow_a_queue_past_its_bound(b):
    """issue 11.7: broker.publish from a hook's on_timer has no publisher to hold back:
    a deaf subscriber's queue stays at its bound, the rest is dropped and counted."""
    with open(os.path.join(b.scripts, "ticker.lua"), "w") as f:
        f.write('return {topics = {"nothing/here"}, interval = 0.01, on_timer = function()\n'
                '  for i = 1, 200 do broker.publish("tick/x", "t", {qos = 1}) end\n'
                'end}\n')
    assert b.wait_log("hook ticker.lua: loaded")
    deaf = deaf_subscriber(b, "deaf", "tick/#")
    with Probe(b.port) as p:
        time.sleep(1.5)
    p.check(0.5)
    info = client_info(b, "deaf")
    assert info["queued"] <= 100, info
    assert info["dropped"] >= 1000, info
    deaf.close()


@conf("max_queued_bytes_total 2000000", "max_hold_time 1")
def test_broker_wide_queue_ceiling_sheds_qos0_first(b):
    """issue 11.12: with a broker-wide ceiling of 2 MB on queued bytes, five deaf QoS 0
    subscribers (64 MiB each by the per-client default) hold 2 MB between them, not
    5 x 64 MiB; the stats show the total and the ceiling; the probe is served."""
    deaf = [deaf_subscriber(b, "deaf%d" % i, "flood/#", qos=0) for i in range(5)]
    pub = connected(b.port, "flooder")
    chunk = b"".join(publish_bytes("flood/x", b"f" * 10000) for _ in range(100))
    before = rss_kb(b.proc.pid)
    with Probe(b.port) as p:
        for _ in range(40):  # 4 000 messages of 10 kB, 40 MB to each subscriber
            pub.send(chunk)
        pub.publish("sync", b"", qos=1, pid=1)
        pub.expect(PUBACK, timeout=10)
    p.check(0.5)
    if not SAN:
        grown = rss_kb(b.proc.pid) - before
        assert grown < 20 * 1024, "broker grew by %d kB" % grown
    stats = ctl_json(b, "stats")
    assert stats["queued_bytes_limit"] == 2000000, stats
    assert stats["queued_bytes"] <= 2000000, stats
    assert stats["dropped_queue_full"] > 10000, stats
    for c in deaf:
        c.close()


@conf("max_queued_bytes_total 2000000", "max_hold_time 1")
def test_broker_wide_ceiling_applies_the_slow_consumer_policy_to_qos1(b):
    """issue 11.12: past the ceiling a QoS 1 message for a deaf subscriber holds its
    publisher at most max_hold_time, then the subscriber pays (0x97), and publishing
    goes on."""
    slow = deaf_subscriber(b, "slow", "big/#")
    with Probe(b.port) as p:
        c = connected(b.port, "pub", keepalive=4)
        worst = 0.0
        for i in range(300):  # 300 x 20 kB = 6 MB through a 2 MB ceiling
            t0 = time.time()
            c.publish("big/x", b"b" * 20000, qos=1, pid=i + 1)
            c.expect(PUBACK, timeout=5)
            worst = max(worst, time.time() - t0)
    assert worst < 2.0, worst
    p.check(2.0)
    got = drain_until_close(slow)
    assert got and got[-1].type == DISCONNECT and got[-1].rc == 0x97


@conf("max_queued_messages 10", "max_hold_time 30")
def test_v311_publisher_past_our_receive_maximum_is_paused_not_cut(b):
    """issue 11.1: a 3.1.1 client knows no Receive Maximum. Held, it may send more than
    20 unacknowledged QoS 1 messages: it is then no longer read (its PINGREQ waits), not
    disconnected; when the subscriber drains, every PUBACK comes in order, the PINGRESP
    after them, and every message is delivered."""
    slow = deaf_subscriber(b, "slow", "v3/#", recv_max=5)
    pub = Client(b.port, version=4)
    pub.connect("pub3")
    pub.send(b"".join(packet(0x32, b"\x00\x04v3/x" + i.to_bytes(2, "big") + b"%d" % i)
                      for i in range(1, 101)))
    pub.send(packet(0xC0, b""))  # PINGREQ behind them
    acks = []
    while True:
        p = pub.recv(1.0)
        if p is None:
            break
        assert p.type == PUBACK, p
        acks.append(p.pid)
    assert len(acks) < 60, "not held: %d PUBACKs" % len(acks)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    got = []
    end = time.time() + 10
    while len(got) < 100 and time.time() < end:
        m = slow.recv(1.0)
        if m is not None and m.type == PUBLISH:
            got.append(int(m.payload))
            slow.ack(PUBACK, m.pid)
    assert sorted(got) == list(range(1, 101)), got
    pong = False  # PINGRESP is not ordered with the withheld PUBACKs
    while len(acks) < 100 or not pong:
        p = pub.recv(2.0)
        assert p is not None, "PUBACKs lost: %d, PINGRESP %s" % (len(acks), pong)
        if p.type == PINGRESP:
            pong = True
        else:
            assert p.type == PUBACK, p
            acks.append(p.pid)
    assert acks == list(range(1, 101))

# SPDX-License-Identifier: MIT
"""QoS 0, 1 and 2 in both directions, exactly once, packet identifiers, order, and
Receive Maximum flow control towards the client."""

import json
import subprocess

from lqtest import CTL, conf
from mqttraw import (PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, RECEIVE_MAXIMUM, connected,
                     publish_bytes)


def stats(b):
    r = subprocess.run([CTL, "-s", b.admin, "--json", "stats"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_qos_levels_both_ways(b):
    sub = connected(b.port, "sub")
    sub.subscribe(1, [("q/#", 2)])
    pub = connected(b.port, "pub")
    pub.publish("q/0", b"zero")
    pub.publish("q/1", b"one", qos=1, pid=10)
    assert pub.expect(PUBACK).pid == 10  # [MQTT-2.2.1-5]
    pub.publish("q/2", b"two", qos=2, pid=11)
    assert pub.expect(PUBREC).pid == 11
    pub.ack(PUBREL, 11)
    assert pub.expect(PUBCOMP).pid == 11
    p0 = sub.expect(PUBLISH)
    assert (p0.topic, p0.qos, p0.pid) == ("q/0", 0, None)  # [MQTT-2.2.1-2]
    p1 = sub.expect(PUBLISH)
    assert p1.qos == 1 and p1.pid  # [MQTT-2.2.1-4] non-zero
    sub.ack(PUBACK, p1.pid)
    p2 = sub.expect(PUBLISH)
    assert p2.qos == 2 and p2.pid and p2.pid != p1.pid
    sub.ack(PUBREC, p2.pid)
    assert sub.expect(PUBREL).pid == p2.pid
    sub.ack(PUBCOMP, p2.pid)
    sub.expect_none(0.3)


def test_qos2_exactly_once_with_dup(b):
    # [MQTT-4.3.3-10] a resent PUBLISH with the same id before PUBREL is acknowledged with
    # PUBREC and not routed again; [MQTT-4.3.3-12] after PUBCOMP the id is a new message
    sub = connected(b.port, "sub")
    sub.subscribe(1, [("once", 2)])
    pub = connected(b.port, "pub")
    pub.publish("once", b"x", qos=2, pid=7)
    assert pub.expect(PUBREC).pid == 7
    pub.publish("once", b"x", qos=2, pid=7, dup=True)
    assert pub.expect(PUBREC).pid == 7
    pub.ack(PUBREL, 7)
    assert pub.expect(PUBCOMP).pid == 7
    p = sub.expect(PUBLISH)
    sub.ack(PUBREC, p.pid)
    sub.expect(PUBREL)
    sub.ack(PUBCOMP, p.pid)
    sub.expect_none(0.4)
    # after PUBCOMP the id is free again: a new message with id 7 is routed
    pub.publish("once", b"y", qos=2, pid=7)
    pub.expect(PUBREC)
    assert sub.expect(PUBLISH).payload == b"y"


def test_qos_downgrade(b):
    # delivered at the lower of the message's and the subscription's QoS
    sub = connected(b.port, "sub")
    sub.subscribe(1, [("d", 1)])
    pub = connected(b.port, "pub")
    pub.publish("d", b"x", qos=2, pid=1)
    pub.expect(PUBREC)
    assert sub.expect(PUBLISH).qos == 1
    sub0 = connected(b.port, "sub0")
    sub0.subscribe(1, [("d0", 0)])
    pub.publish("d0", b"x", qos=1, pid=2)
    assert sub0.expect(PUBLISH).qos == 0


def test_order_kept(b):
    # [MQTT-4.6.0-?] ordered topic: messages arrive in the order published
    sub = connected(b.port, "sub")
    sub.subscribe(1, [("ord", 1)])
    pub = connected(b.port, "pub")
    for i in range(200):
        pub.publish("ord", str(i), qos=1 if i % 3 else 0, pid=(i % 60000) + 1)
    got = []
    while len(got) < 200:
        p = sub.recv(2)
        assert p is not None
        if p.qos:
            sub.ack(PUBACK, p.pid)
        got.append(int(p.payload))
    assert got == list(range(200))


def test_client_receive_maximum_respected(b):
    # [MQTT-3.3.4-9] never more unacknowledged QoS 1 PUBLISHes than the client allows
    sub = connected(b.port, "slow", properties=[(RECEIVE_MAXIMUM, 2)])
    sub.subscribe(1, [("rm", 1)])
    pub = connected(b.port, "pub")
    for i in range(6):
        pub.publish("rm", str(i), qos=1, pid=i + 1)
    first = [sub.expect(PUBLISH), sub.expect(PUBLISH)]
    sub.expect_none(0.4)  # window full
    got = [int(p.payload) for p in first]
    for p in first:
        sub.ack(PUBACK, p.pid)
    while len(got) < 6:
        p = sub.expect(PUBLISH)
        got.append(int(p.payload))
        sub.ack(PUBACK, p.pid)
    assert got == list(range(6))


@conf("max_inflight_messages 3")
def test_server_inflight_limit(b):
    sub = connected(b.port, "sub")  # client allows 65535
    sub.subscribe(1, [("il", 1)])
    pub = connected(b.port, "pub")
    for i in range(5):
        pub.publish("il", str(i), qos=1, pid=i + 1)
    ps = [sub.expect(PUBLISH) for _ in range(3)]
    sub.expect_none(0.4)
    sub.ack(PUBACK, ps[0].pid)
    assert sub.expect(PUBLISH).payload == b"3"


def test_qos2_refused_by_subscriber(b):
    # PUBREC >= 0x80 ends the flow: no PUBREL
    sub = connected(b.port, "sub")
    sub.subscribe(1, [("rf", 2)])
    pub = connected(b.port, "pub")
    pub.publish("rf", b"x", qos=2, pid=1)
    p = sub.expect(PUBLISH)
    sub.ack(PUBREC, p.pid, rc=0x80)
    sub.expect_none(0.3)


def test_v311_publisher_v5_subscriber(b):
    sub = connected(b.port, "sub5")
    sub.subscribe(1, [("mix", 2)])
    pub = connected(b.port, "pub3", version=4)
    pub.publish("mix", b"hello", qos=2, pid=1)
    pub.expect(PUBREC)
    pub.ack(PUBREL, 1)
    pub.expect(PUBCOMP)
    assert sub.expect(PUBLISH).payload == b"hello"


def test_large_packets_in_pieces_and_back_to_back(b):
    """Packets of 32 KiB and more are read straight into a block of their own, which
    becomes the message: trickled in pieces, several in one write with small packets
    between them, retained, and at exactly the threshold, they all arrive intact."""
    import os
    import time
    sub = connected(b.port, "big-sub")
    sub.subscribe(1, [("big/#", 1)])
    pub = connected(b.port, "big-pub")
    sizes = [32 * 1024 - 20, 32 * 1024, 200000, 1 << 20]
    payloads = [os.urandom(n) for n in sizes]
    # trickled: header first, then the rest in uneven pieces with pauses
    one = publish_bytes("big/trickle", payloads[2], qos=1, pid=1)
    for cut in (3, 1000, 70000, 150000, len(one)):
        pub.send(one[:cut])
        one = one[cut:]
        time.sleep(0.05)
        if not one:
            break
    assert pub.expect(PUBACK).pid == 1
    # back to back in one write, small packets between the big ones
    burst = b"".join(publish_bytes("big/%d" % i, p, qos=1, pid=10 + i) + publish_bytes(
        "big/small", b"s%d" % i) for i, p in enumerate(payloads))
    pub.send(burst)
    assert sorted(pub.expect(PUBACK).pid for _ in payloads) == [10, 11, 12, 13]
    want = [("big/trickle", payloads[2])]
    for i, p in enumerate(payloads):
        want += [("big/%d" % i, p), ("big/small", b"s%d" % i)]
    got = []
    for _ in want:
        m = sub.expect(PUBLISH, timeout=10)
        if m.qos:
            sub.ack(PUBACK, m.pid)
        got.append((m.topic, m.payload))
    assert got == want
    # retained: the adopted block lives on in the retained store
    pub.send(publish_bytes("big/kept", payloads[3], qos=1, pid=20, retain=True))
    assert pub.expect(PUBACK).pid == 20
    late = connected(b.port, "big-late")
    late.subscribe(1, [("big/kept", 0)])
    m = late.expect(PUBLISH, timeout=10)
    assert m.retain and m.payload == payloads[3]


def test_large_packet_cut_off_midway(b):
    """A client that goes away in the middle of a large packet: nothing is routed, the
    block is freed (AddressSanitizer would see it leak) and the broker serves on."""
    sub = connected(b.port, "cut-sub")
    sub.subscribe(1, [("cut/#", 0)])
    pub = connected(b.port, "cut-pub")
    data = publish_bytes("cut/x", b"x" * 500000)
    pub.send(data[:250000])
    pub.close()
    sub.expect_none(0.5)
    from mqttraw import roundtrip
    roundtrip(b.port)


def test_sys_topics_refused_from_clients(b):
    """issue 12.1: only the broker publishes under $SYS (mosquitto refuses clients too).
    MQTT 5: PUBACK/PUBREC 0x87; 3.1.x: acknowledged (the flow completes) and dropped;
    QoS 0 dropped; a retained one is not stored; each counted and logged."""
    watch = connected(b.port, "watch")
    assert watch.subscribe(1, [("$SYS/forged/#", 1), ("$SYS", 1), ("ctl", 1)]).codes == [1, 1, 1]
    p5 = connected(b.port, "p5")
    p5.publish("$SYS/forged/a", b"x", qos=1, pid=1, retain=True)
    a = p5.expect(PUBACK)
    assert (a.pid, a.rc) == (1, 0x87)
    p5.publish("$SYS/forged/b", b"x", qos=2, pid=2)
    a = p5.expect(PUBREC)
    assert (a.pid, a.rc) == (2, 0x87)
    p5.ack(PUBREL, 2)  # refused: nothing to release [MQTT-4.3.3-?]
    assert p5.expect(PUBCOMP).rc == 0x92
    p5.publish("$SYS/forged/c", b"x", retain=True)  # QoS 0
    p5.publish("$SYS", b"x", qos=1, pid=3)
    assert p5.expect(PUBACK).rc == 0x87
    p3 = connected(b.port, "p3", version=4)
    p3.publish("$SYS/forged/d", b"x", qos=1, pid=4, retain=True)
    assert p3.expect(PUBACK).pid == 4
    p3.publish("$SYS/forged/e", b"x", qos=2, pid=5)
    assert p3.expect(PUBREC).pid == 5
    p3.ack(PUBREL, 5)
    assert p3.expect(PUBCOMP).pid == 5
    # a "$SYSTEM" topic is not $SYS: it goes through
    p5.publish("$SYSTEM/x", b"ok", qos=1, pid=6)
    assert p5.expect(PUBACK).rc == 0x10
    p5.publish("ctl", b"after", qos=1, pid=7)
    assert p5.expect(PUBACK).rc == 0
    m = watch.expect(PUBLISH)
    assert (m.topic, m.payload) == ("ctl", b"after"), m.topic  # none of the forged ones
    watch.ack(PUBACK, m.pid)
    # nothing retained: a new subscriber gets only the control message
    late = connected(b.port, "late")
    assert late.subscribe(1, [("$SYS/forged/#", 1), ("ctl", 1)]).codes == [1, 1]
    p5.publish("ctl", b"again", qos=1, pid=8)
    assert p5.expect(PUBACK).rc == 0
    m = late.expect(PUBLISH)
    assert (m.topic, m.payload) == ("ctl", b"again"), m.topic
    assert stats(b)["dropped_sys_topic"] == 6
    assert b.wait_log('publish to "$SYS/forged/a" refused: $SYS topics are the broker\'s')


def test_no_matching_subscribers_0x10(b):
    """issue 12.7: an MQTT 5 QoS 1/2 message that reached no subscriber is answered
    0x10 (No matching subscribers), as mosquitto and HiveMQ do; 3.1.1 cannot be told."""
    p = connected(b.port, "p")
    p.publish("nobody/here", b"x", qos=1, pid=1)
    a = p.expect(PUBACK)
    assert (a.pid, a.rc) == (1, 0x10)
    p.publish("nobody/here", b"x", qos=2, pid=2)
    a = p.expect(PUBREC)
    assert (a.pid, a.rc) == (2, 0x10)
    p.ack(PUBREL, 2)  # 0x10 is a success: the flow goes on [MQTT-4.3.3-?]
    c = p.expect(PUBCOMP)
    assert (c.pid, c.rc) == (2, 0)
    p.publish("nobody/kept", b"x", qos=1, pid=3, retain=True)  # stored, still nobody
    assert p.expect(PUBACK).rc == 0x10
    s = connected(b.port, "s")
    assert s.subscribe(1, [("some/+", 1)]).codes == [1]
    p.publish("some/one", b"x", qos=1, pid=4)
    assert p.expect(PUBACK).rc == 0
    assert s.expect(PUBLISH).payload == b"x"
    p3 = connected(b.port, "p3", version=4)
    p3.publish("nobody/here", b"x", qos=1, pid=5)
    a = p3.expect(PUBACK)
    assert a.pid == 5 and len(a.body) == 2

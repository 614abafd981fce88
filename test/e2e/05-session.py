# SPDX-License-Identifier: MIT
"""Sessions: resume with queued and in-flight messages, expiry, DISCONNECT changing
the expiry, clean start, 3.1.1 persistent sessions, offline queue bounds."""

import time

from lqtest import conf, wait_for
from mqttraw import (PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, SESSION_EXPIRY, Client, connected)

PERSIST = [(SESSION_EXPIRY, 60)]


def test_resume_with_queued_messages(b):
    # [MQTT-3.1.2-4..6] session present; messages queued while away arrive in order
    c = connected(b.port, "dev", clean=False, properties=PERSIST)
    c.subscribe(1, [("cmd/#", 2)])
    c.disconnect()
    c.close()
    pub = connected(b.port, "pub")
    pub.publish("cmd/1", b"one", qos=1, pid=1)
    pub.expect(PUBACK)
    pub.publish("cmd/2", b"two", qos=2, pid=2)
    pub.expect(PUBREC)
    pub.ack(PUBREL, 2)
    pub.expect(PUBCOMP)
    pub.publish("cmd/0", b"zero", qos=0)  # QoS 0 is not kept for absent clients
    c = Client(b.port)
    ca = c.connect("dev", clean=False, properties=PERSIST)
    assert ca.session_present
    p1 = c.expect(PUBLISH)
    assert (p1.topic, p1.qos) == ("cmd/1", 1)
    c.ack(PUBACK, p1.pid)
    p2 = c.expect(PUBLISH)
    assert (p2.topic, p2.qos) == ("cmd/2", 2)
    c.ack(PUBREC, p2.pid)
    c.expect(PUBREL)
    c.ack(PUBCOMP, p2.pid)
    c.expect_none(0.3)


def test_inflight_resent_with_dup(b):
    # [MQTT-4.4.0-1] unacknowledged PUBLISH resent with DUP; PUBREL resent
    c = connected(b.port, "dev", clean=False, properties=PERSIST)
    c.subscribe(1, [("t/#", 2)])
    pub = connected(b.port, "pub")
    pub.publish("t/1", b"q1", qos=1, pid=1)
    pub.publish("t/2", b"q2", qos=2, pid=2)
    p1 = c.expect(PUBLISH)
    p2 = c.expect(PUBLISH)
    c.ack(PUBREC, p2.pid)  # QoS 2 half done
    assert c.expect(PUBREL).pid == p2.pid
    c.close()  # no acks for the rest
    time.sleep(0.2)
    c = Client(b.port)
    assert c.connect("dev", clean=False, properties=PERSIST).session_present
    r1 = c.expect(PUBLISH)
    assert r1.dup and r1.pid == p1.pid and r1.payload == b"q1"
    r2 = c.expect(PUBREL)
    assert r2.pid == p2.pid
    c.ack(PUBACK, r1.pid)
    c.ack(PUBCOMP, r2.pid)
    c.expect_none(0.3)


def test_session_expiry(b):
    # [MQTT-3.1.2-23] the session ends when the interval passes
    c = connected(b.port, "short", clean=False, properties=[(SESSION_EXPIRY, 1)])
    c.subscribe(1, [("x", 1)])
    c.close()
    time.sleep(0.3)
    c = Client(b.port)
    assert c.connect("short", clean=False, properties=[(SESSION_EXPIRY, 1)]).session_present
    c.close()
    time.sleep(1.6)
    c = Client(b.port)
    assert not c.connect("short", clean=False).session_present


def test_expiry_zero_ends_at_disconnect(b):
    c = connected(b.port, "zero", clean=False)
    c.subscribe(1, [("x", 1)])
    c.close()
    time.sleep(0.2)
    c = Client(b.port)
    assert not c.connect("zero", clean=False).session_present


def test_disconnect_changes_expiry(b):
    # 3.14.2.2.2: the Session Expiry Interval in DISCONNECT replaces CONNECT's
    c = connected(b.port, "chg", clean=False, properties=[(SESSION_EXPIRY, 1)])
    c.disconnect(0, [(SESSION_EXPIRY, 60)])
    time.sleep(1.5)
    c = Client(b.port)
    assert c.connect("chg", clean=False, properties=PERSIST).session_present
    c.disconnect(0, [(SESSION_EXPIRY, 0)])
    time.sleep(0.2)
    c = Client(b.port)
    assert not c.connect("chg", clean=False).session_present


def test_clean_start_discards(b):
    # [MQTT-3.1.2-4]
    c = connected(b.port, "cs", clean=False, properties=PERSIST)
    assert c.subscribe(1, [("cs", 1)]).codes == [1]
    c.disconnect()
    c = Client(b.port)
    assert not c.connect("cs", clean=True, properties=PERSIST).session_present
    pub = connected(b.port, "pub")
    pub.publish("cs", b"x", qos=1, pid=1)
    pub.expect(PUBACK)
    c.expect_none(0.3)  # the old subscription went with the old session
    # issue 12.19: subscribed again on this session, the next message arrives
    assert c.subscribe(2, [("cs", 1)]).codes == [1]
    pub.publish("cs", b"y", qos=1, pid=2)
    assert c.expect(PUBLISH).payload == b"y"


def test_v311_persistent_session(b):
    c = connected(b.port, "old", version=4, clean=False)
    c.subscribe(1, [("v3", 1)])
    c.disconnect()
    pub = connected(b.port, "pub", version=4)
    pub.publish("v3", b"while away", qos=1, pid=1)
    pub.expect(PUBACK)
    c = Client(b.port, version=4)
    assert c.connect("old", clean=False).session_present
    assert c.expect(PUBLISH).payload == b"while away"


@conf("max_queued_messages 5")
def test_offline_queue_bound_and_quota(b):
    # a full offline queue refuses QoS 1 with 0x97 (v5 publisher) instead of dropping
    # what it acknowledged
    c = connected(b.port, "full", clean=False, properties=PERSIST)
    c.subscribe(1, [("f", 1)])
    c.disconnect()
    pub = connected(b.port, "pub")
    codes = []
    for i in range(8):
        pub.publish("f", str(i), qos=1, pid=i + 1)
        codes.append(pub.expect(PUBACK).rc)
    assert codes == [0] * 5 + [0x97] * 3
    c = Client(b.port)
    c.connect("full", clean=False, properties=PERSIST)
    got = []
    for _ in range(5):
        p = c.expect(PUBLISH)
        got.append(p.payload)
        c.ack(PUBACK, p.pid)
    assert got == [b"0", b"1", b"2", b"3", b"4"]
    c.expect_none(0.3)


@conf("max_queued_messages 5")
def test_full_offline_queue_logs_once_not_per_message(b):
    """A publisher hammering a full offline queue is refused each time (0x97) but the
    log says so once, and once more when the queue has room again, with the count."""
    c = connected(b.port, "full", clean=False, properties=PERSIST)
    c.subscribe(1, [("f", 1)])
    c.disconnect()
    pub = connected(b.port, "pub")
    for i in range(200):
        pub.publish("f", str(i), qos=1, pid=i % 60000 + 1)
        assert pub.expect(PUBACK).rc == (0 if i < 5 else 0x97)
    assert b.output().count('client "full" offline: queue full') == 1, b.output()
    c = Client(b.port)
    c.connect("full", clean=False, properties=PERSIST)
    for _ in range(5):
        c.ack(PUBACK, c.expect(PUBLISH).pid)
    pub.publish("f", "after", qos=1, pid=1)
    assert pub.expect(PUBACK).rc == 0
    assert c.expect(PUBLISH).payload == b"after"
    assert wait_for(lambda: "queue has room again: 195 QoS 1/2 messages refused" in b.output(), 3)
    assert b.output().count("queue full") == 1



def session_expiry_of(b, client_id):
    import json
    import subprocess
    from lqtest import CTL
    r = subprocess.run([CTL, "-s", b.admin, "--json", "client", client_id], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["session_expiry"]


@conf("persistent_client_expiration 2h")
def test_persistent_client_expiration_applies_to_v3_sessions(b):
    """issue 12.21: persistent_client_expiration is the session expiry of a 3.1.x client
    with clean session 0 (and of no other). The smallest unit is an hour (as mosquitto),
    so this checks the value the session gets; the timer that ends a session at its
    expiry is the one test_session_expiry sees fire."""
    for cid, version, clean in (("p4", 4, False), ("p3", 3, False), ("c4", 4, True)):
        c = connected(b.port, cid, version=version, clean=clean)
        c.close()
    v5 = connected(b.port, "p5", clean=False, properties=[(SESSION_EXPIRY, 60)])
    v5.close()
    time.sleep(0.2)
    assert session_expiry_of(b, "p4") == 7200
    assert session_expiry_of(b, "p3") == 7200
    assert session_expiry_of(b, "p5") == 60


def test_v3_sessions_never_expire_by_default(b):
    """issue 12.21: without persistent_client_expiration a 3.1.1 session does not expire."""
    c = connected(b.port, "forever", version=4, clean=False)
    c.close()
    time.sleep(0.2)
    assert session_expiry_of(b, "forever") == 0xFFFFFFFF

# SPDX-License-Identifier: MIT
"""Retained messages: store, replace, clear, retain handling, retain as published,
retain_available false."""

from lqtest import conf
from mqttraw import PUBACK, PUBLISH, RETAIN_AVAILABLE, Client, SUBSCRIPTION_ID, connected


def retained(c, n=10, timeout=0.5):
    out = []
    for _ in range(n):
        p = c.recv(timeout)
        if p is None:
            break
        if p.type == PUBLISH:
            out.append((p.topic, p.payload, p.retain))
            if p.qos == 1:
                c.ack(PUBACK, p.pid)
    return out


def test_store_replace_clear(b):
    pub = connected(b.port, "pub")
    pub.publish("r/a", b"1", retain=True)
    pub.publish("r/a", b"2", retain=True)  # [MQTT-3.3.1-5] replaces
    pub.publish("r/b", b"3", qos=1, pid=1, retain=True)
    pub.expect(PUBACK)
    s1 = connected(b.port, "s1")
    s1.subscribe(1, [("r/#", 1)])
    assert sorted(retained(s1)) == [("r/a", b"2", True), ("r/b", b"3", True)]  # [MQTT-3.3.1-8]
    pub.publish("r/a", b"", retain=True)  # [MQTT-3.3.1-6] empty payload clears
    assert retained(s1) == [("r/a", b"", False)]  # delivered normally, retain 0 [MQTT-3.3.1-12]
    s2 = connected(b.port, "s2")
    s2.subscribe(1, [("r/#", 0)])
    assert retained(s2) == [("r/b", b"3", True)]


def test_retain_handling(b):
    # [MQTT-3.3.1-9..11] [MQTT-3.8.4-4]
    pub = connected(b.port, "pub")
    pub.publish("rh/x", b"kept", retain=True)
    c = connected(b.port, "rh")
    c.subscribe(1, [("rh/#", 0x20)])  # 2: never
    assert retained(c) == []
    c.subscribe(2, [("rh/+", 0x10)])  # 1: only for a new subscription
    assert retained(c) == [("rh/x", b"kept", True)]
    c.subscribe(3, [("rh/+", 0x10)])  # exists already: nothing
    assert retained(c) == []
    c.subscribe(4, [("rh/+", 0x00)])  # 0: always
    assert retained(c) == [("rh/x", b"kept", True)]
    pub.publish("rh/x", b"live")  # and publications are not lost meanwhile
    assert retained(c) == [("rh/x", b"live", False)]


def test_retain_as_published(b):
    # [MQTT-3.3.1-12,13]
    c = connected(b.port, "rap")
    c.subscribe(1, [("rap/1", 0x08), ("rap/2", 0x00)])
    pub = connected(b.port, "pub")
    pub.publish("rap/1", b"x", retain=True)
    pub.publish("rap/2", b"y", retain=True)
    got = retained(c)
    assert ("rap/1", b"x", True) in got and ("rap/2", b"y", False) in got


def test_retained_with_subscription_identifier(b):
    pub = connected(b.port, "pub")
    pub.publish("sid/x", b"x", retain=True)
    c = connected(b.port, "sid")
    c.subscribe(1, [("sid/#", 0)], properties=[(SUBSCRIPTION_ID, 5)])
    p = c.expect(PUBLISH)
    assert p.retain and p.props[SUBSCRIPTION_ID] == [5]


def test_retained_not_sent_to_shared(b):
    pub = connected(b.port, "pub")
    pub.publish("sh/x", b"x", retain=True)
    c = connected(b.port, "shared")
    c.subscribe(1, [("$share/g/sh/#", 0)])
    assert retained(c) == []


def test_retained_v311(b):
    pub = connected(b.port, "pub", version=4)
    pub.publish("r3", b"old", retain=True)
    c = connected(b.port, "s", version=4)
    c.subscribe(1, [("r3", 0)])
    assert retained(c) == [("r3", b"old", True)]


@conf("retain_available false")
def test_retain_not_available(b):
    # [MQTT-3.2.2-13..14]
    c = Client(b.port)
    ca = c.connect("nr")
    assert ca.props[RETAIN_AVAILABLE] == 0
    c.publish("x", b"y", retain=True)
    c.expect_disconnect(0x9A)
    c = Client(b.port)
    assert c.connect("nrw", will={"topic": "w", "payload": b"x", "retain": True}).rc == 0x9A

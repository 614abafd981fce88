# SPDX-License-Identifier: MIT
"""Will messages: sent on abnormal loss and on DISCONNECT 0x04, not on 0x00, will
properties forwarded, will delay, cancelled by a reconnect within the delay."""

import time

from mqttraw import (CONTENT_TYPE, PUBACK, PUBLISH, SESSION_EXPIRY, USER_PROPERTY, WILL_DELAY, Client,
                     connected)


def watcher(b, name="watch"):
    w = connected(b.port, name)
    assert w.subscribe(1, [("will/#", 1)]).codes == [1]
    return w


def control(b, w, tag):
    """A message that must reach watcher w after the "nothing" it saw: a broker that
    routes nothing fails the negative test here (issue 12.19)."""
    pub = connected(b.port, "control-" + tag)
    pub.publish("will/control", tag.encode(), qos=1, pid=1)
    pub.expect(PUBACK)
    p = w.expect(PUBLISH)
    assert (p.topic, p.payload) == ("will/control", tag.encode())
    pub.close()


def test_will_on_abnormal_loss(b):
    # [MQTT-3.1.2-8]
    w = watcher(b)
    c = Client(b.port)
    c.connect("dying", will={"topic": "will/dying", "payload": b"gone", "qos": 1,
                             "props": [(CONTENT_TYPE, "text/plain"), (USER_PROPERTY, ("k", "v"))]})
    c.close()
    p = w.expect(PUBLISH)
    assert (p.topic, p.payload, p.qos) == ("will/dying", b"gone", 1)
    assert p.props[CONTENT_TYPE] == "text/plain"
    assert p.props[USER_PROPERTY] == [("k", "v")]


def test_no_will_on_normal_disconnect(b):
    # [MQTT-3.1.2-10] DISCONNECT 0x00 deletes the will
    w = watcher(b)
    c = Client(b.port)
    c.connect("polite", will={"topic": "will/polite", "payload": b"x"})
    c.disconnect(0)
    c.close()
    w.expect_none(0.5)
    control(b, w, "polite")


def test_will_on_disconnect_with_will(b):
    # 3.14.2.1: 0x04 Disconnect with Will Message
    w = watcher(b)
    c = Client(b.port)
    c.connect("asked", will={"topic": "will/asked", "payload": b"x"})
    c.disconnect(0x04)
    assert w.expect(PUBLISH).topic == "will/asked"


def test_will_on_protocol_error(b):
    w = watcher(b)
    c = Client(b.port)
    c.connect("broken", will={"topic": "will/broken", "payload": b"x"})
    c.send(b"\x00\x00")  # reserved packet type
    assert w.expect(PUBLISH).topic == "will/broken"


def test_will_delay(b):
    # [MQTT-3.1.3-9] published after the delay
    w = watcher(b)
    c = Client(b.port)
    c.connect("late", properties=[(SESSION_EXPIRY, 30)],
              will={"topic": "will/late", "payload": b"x", "props": [(WILL_DELAY, 1)]})
    t0 = time.time()
    c.close()
    w.expect_none(0.6)
    assert w.expect(PUBLISH, timeout=3).topic == "will/late"
    assert time.time() - t0 >= 0.9


def test_will_delay_cancelled_by_reconnect(b):
    # [MQTT-3.1.3-9] a new connection within the delay: no will
    w = watcher(b)
    c = Client(b.port)
    c.connect("back", clean=False, properties=[(SESSION_EXPIRY, 30)],
              will={"topic": "will/back", "payload": b"x", "props": [(WILL_DELAY, 1)]})
    c.close()
    time.sleep(0.3)
    c = Client(b.port)
    assert c.connect("back", clean=False, properties=[(SESSION_EXPIRY, 30)]).session_present
    w.expect_none(1.5)
    control(b, w, "back")


def test_will_sent_when_session_ends_first(b):
    # the will goes when the session ends, if that comes before the will delay
    w = watcher(b)
    c = Client(b.port)
    c.connect("short", properties=[(SESSION_EXPIRY, 1)],
              will={"topic": "will/short", "payload": b"x", "props": [(WILL_DELAY, 30)]})
    c.close()
    assert w.expect(PUBLISH, timeout=3).topic == "will/short"


def test_retained_will(b):
    c = Client(b.port)
    c.connect("rw", will={"topic": "will/retained", "payload": b"bye", "retain": True})
    c.close()
    time.sleep(0.3)
    w = connected(b.port, "late-watch")
    w.subscribe(1, [("will/#", 0)])
    p = w.expect(PUBLISH)
    assert p.retain and p.payload == b"bye"


def test_will_v311(b):
    w = watcher(b)
    c = Client(b.port, version=4)
    c.connect("old", will={"topic": "will/old", "payload": b"x", "qos": 1})
    c.close()
    assert w.expect(PUBLISH).topic == "will/old"

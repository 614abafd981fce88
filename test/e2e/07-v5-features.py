# SPDX-License-Identifier: MIT
"""MQTT 5 properties on the message path: forwarded unchanged, message expiry,
topic aliases both ways, the client's maximum packet size, problem information."""

import time

from mqttraw import (CONTENT_TYPE, CORRELATION_DATA, MAXIMUM_PACKET_SIZE, MESSAGE_EXPIRY,
                     PAYLOAD_FORMAT, PUBACK, PUBLISH, REASON_STRING, REQUEST_PROBLEM_INFO,
                     RESPONSE_TOPIC, SESSION_EXPIRY, TOPIC_ALIAS, TOPIC_ALIAS_MAXIMUM,
                     USER_PROPERTY, Client, connected)


def test_properties_forwarded_unchanged(b):
    # [MQTT-3.3.2-15..20] and user property order [MQTT-3.3.2-17,18]
    sub = connected(b.port, "sub")
    sub.subscribe(1, [("p", 0)])
    pub = connected(b.port, "pub")
    users = [("a", "1"), ("b", "2"), ("a", "3"), ("ünï", "cödé")]
    pub.publish("p", b"{}", properties=[(PAYLOAD_FORMAT, 1), (CONTENT_TYPE, "application/json"),
                                        (RESPONSE_TOPIC, "reply/to"), (CORRELATION_DATA, b"\x00\x01"),
                                        *[(USER_PROPERTY, u) for u in users]])
    p = sub.expect(PUBLISH)
    assert p.props[PAYLOAD_FORMAT] == 1
    assert p.props[CONTENT_TYPE] == "application/json"
    assert p.props[RESPONSE_TOPIC] == "reply/to"
    assert p.props[CORRELATION_DATA] == b"\x00\x01"
    assert p.props[USER_PROPERTY] == users


def test_65536_and_more_user_properties_forwarded(b):
    """issue 12.5: [MQTT-3.3.2-17] every user property is forwarded unaltered, also
    65 536 and 70 000 of them (a 16-bit count wrapped to 0 and dropped them all)."""
    sub = connected(b.port, "sub")
    assert sub.subscribe(1, [("many", 1)]).codes == [1]
    pub = connected(b.port, "pub")
    for n in (65536, 70000, 65535):
        users = [("", "%x" % i) for i in range(n)]
        pub.publish("many", b"n=%d" % n, qos=1, pid=1, properties=[(USER_PROPERTY, u) for u in users])
        assert pub.expect(PUBACK, timeout=10).rc == 0
        p = sub.expect(PUBLISH, timeout=10)
        sub.ack(PUBACK, p.pid)
        assert p.payload == b"n=%d" % n
        assert p.props.get(USER_PROPERTY) == users, (n, len(p.props.get(USER_PROPERTY, [])))


def test_message_expiry_decremented(b):
    # [MQTT-3.3.2-6] the interval sent is what is left
    c = connected(b.port, "exp", clean=False, properties=[(SESSION_EXPIRY, 60)])
    c.subscribe(1, [("e", 1)])
    c.disconnect()
    pub = connected(b.port, "pub")
    pub.publish("e", b"x", qos=1, pid=1, properties=[(MESSAGE_EXPIRY, 10)])
    pub.expect(PUBACK)
    time.sleep(1.2)
    c = Client(b.port)
    c.connect("exp", clean=False, properties=[(SESSION_EXPIRY, 60)])
    p = c.expect(PUBLISH)
    assert 1 <= p.props[MESSAGE_EXPIRY] <= 9


def test_message_expired_while_queued(b):
    # [MQTT-3.3.2-5] an expired message is not delivered
    c = connected(b.port, "exp2", clean=False, properties=[(SESSION_EXPIRY, 60)])
    c.subscribe(1, [("e", 1)])
    c.disconnect()
    pub = connected(b.port, "pub")
    pub.publish("e", b"old", qos=1, pid=1, properties=[(MESSAGE_EXPIRY, 1)])
    pub.publish("e", b"new", qos=1, pid=2)
    time.sleep(1.5)
    c = Client(b.port)
    c.connect("exp2", clean=False, properties=[(SESSION_EXPIRY, 60)])
    p = c.expect(PUBLISH)
    assert p.payload == b"new"
    assert MESSAGE_EXPIRY not in p.props


def test_retained_message_expiry(b):
    pub = connected(b.port, "pub")
    pub.publish("re", b"x", retain=True, properties=[(MESSAGE_EXPIRY, 1)])
    pub.publish("re/kept", b"k", retain=True, properties=[(MESSAGE_EXPIRY, 60)])
    time.sleep(1.3)
    c = connected(b.port, "late")
    assert c.subscribe(1, [("re", 0)]).codes == [0]
    c.expect_none(0.3)
    # issue 12.19: a retained message that has not expired is still sent
    assert c.subscribe(2, [("re/kept", 0)]).codes == [0]
    p = c.expect(PUBLISH)
    assert (p.topic, p.payload, p.retain) == ("re/kept", b"k", True)


def test_topic_alias_from_client(b):
    # [MQTT-3.3.2-12] alias set with a topic, then used alone
    sub = connected(b.port, "sub")
    sub.subscribe(1, [("long/topic/name", 0)])
    pub = connected(b.port, "pub")
    pub.publish("long/topic/name", b"1", properties=[(TOPIC_ALIAS, 4)])
    pub.publish("", b"2", properties=[(TOPIC_ALIAS, 4)])
    assert [sub.expect(PUBLISH).topic for _ in range(2)] == ["long/topic/name"] * 2


def test_topic_alias_to_client(b):
    # the server uses aliases up to the client's Topic Alias Maximum [MQTT-3.3.2-9..]
    sub = connected(b.port, "sub", properties=[(TOPIC_ALIAS_MAXIMUM, 2)])
    sub.subscribe(1, [("a/#", 0)])
    pub = connected(b.port, "pub")
    for t in ("a/1", "a/1", "a/2", "a/3", "a/3"):
        pub.publish(t, b"x")
    got = [sub.expect(PUBLISH) for _ in range(5)]
    aliases = {}
    seen = []
    for p in got:
        alias = p.props.get(TOPIC_ALIAS)
        assert alias is None or 1 <= alias <= 2
        topic = p.topic
        if alias and topic:
            aliases[alias] = topic
        elif alias:
            topic = aliases[alias]
        seen.append(topic)
    assert seen == ["a/1", "a/1", "a/2", "a/3", "a/3"]
    assert got[1].topic == ""  # the second a/1 went by alias alone


def test_no_alias_without_client_maximum(b):
    sub = connected(b.port, "sub")
    sub.subscribe(1, [("n", 0)])
    pub = connected(b.port, "pub")
    pub.publish("n", b"x")
    pub.publish("n", b"y")
    for _ in range(2):
        p = sub.expect(PUBLISH)
        assert p.topic == "n" and TOPIC_ALIAS not in p.props


def test_client_maximum_packet_size(b):
    # [MQTT-3.1.2-24,25] nothing larger than the client accepts; others still get it
    small = connected(b.port, "small", properties=[(MAXIMUM_PACKET_SIZE, 100)])
    small.subscribe(1, [("big", 1)])
    big = connected(b.port, "bigsub")
    big.subscribe(1, [("big", 1)])
    pub = connected(b.port, "pub")
    pub.publish("big", b"x" * 500, qos=1, pid=1)
    pub.publish("big", b"tiny", qos=1, pid=2)
    p = small.expect(PUBLISH)
    assert p.payload == b"tiny"
    assert big.expect(PUBLISH).payload == b"x" * 500


def test_request_problem_information_zero(b):
    # [MQTT-3.1.2-29] no reason string unless allowed; none is sent anyway
    c = connected(b.port, "quiet", properties=[(REQUEST_PROBLEM_INFO, 0)])
    sa = c.subscribe(1, [("a/#/b", 0)])
    assert sa.codes == [0x8F] and REASON_STRING not in sa.props

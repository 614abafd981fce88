# SPDX-License-Identifier: MIT
"""SUBSCRIBE and UNSUBSCRIBE: wildcards, the $ rule, overlapping subscriptions,
subscription identifiers, no local, shared subscriptions, reason codes."""

from mqttraw import PUBACK, PUBLISH, SESSION_EXPIRY, SUBSCRIPTION_ID, Client, connected, packet


def topics_received(c, n, timeout=2.0):
    out = []
    for _ in range(n):
        p = c.recv(timeout)
        if p is None:
            break
        if p.type == PUBLISH:
            out.append(p.topic)
            if p.qos == 1:
                c.ack(4, p.pid)
    return out


def test_wildcards(b):
    sub = connected(b.port, "wild")
    assert sub.subscribe(1, [("sport/+/player1", 0), ("finance/#", 0)]).codes == [0, 0]
    pub = connected(b.port, "pub")
    for t in ("sport/tennis/player1", "sport/tennis/player2", "finance", "finance/eur/usd",
              "sport/tennis/player1/ranking"):
        pub.publish(t, b"x")
    assert topics_received(sub, 3) == ["sport/tennis/player1", "finance", "finance/eur/usd"]
    sub.expect_none(0.3)


def test_dollar_topics_not_matched_by_wildcards(b):
    # [MQTT-4.7.2-1]
    sub = connected(b.port, "dollar")
    sub.subscribe(1, [("#", 0), ("+/x", 0)])
    pub = connected(b.port, "pub")
    pub.publish("$internal/x", b"x")
    pub.publish("plain/x", b"y")
    assert topics_received(sub, 2, 0.5) == ["plain/x"]
    explicit = connected(b.port, "dollar2")
    explicit.subscribe(1, [("$internal/#", 0)])
    pub.publish("$internal/x", b"x")
    assert topics_received(explicit, 1) == ["$internal/x"]


def test_suback_codes(b):
    # [MQTT-3.8.4-?] granted QoS per filter; an invalid filter refused alone (0x8F)
    c = connected(b.port, "codes")
    sa = c.subscribe(7, [("a", 0), ("b", 1), ("c", 2), ("a/#/b", 1), ("$share/g+/x", 0)])
    assert sa.pid == 7  # [MQTT-2.2.1-6]
    assert sa.codes == [0, 1, 2, 0x8F, 0x8F]
    c3 = connected(b.port, "codes3", version=4)
    assert c3.subscribe(8, [("ok", 2), ("bad#", 0)]).codes == [2, 0x80]


def test_resubscribe_replaces(b):
    # [MQTT-3.8.4-3] same filter again: options replaced, one subscription
    c = connected(b.port, "re")
    c.subscribe(1, [("r", 0)])
    c.subscribe(2, [("r", 1)])
    pub = connected(b.port, "pub")
    pub.publish("r", b"x", qos=1, pid=1)
    p = c.expect(PUBLISH)
    assert p.qos == 1
    c.ack(4, p.pid)
    c.expect_none(0.3)


def test_overlapping_one_copy_all_identifiers(b):
    # [MQTT-3.3.4-2..5] one message at the highest QoS with every subscription id
    c = connected(b.port, "over")
    c.subscribe(1, [("o/+", 0)], properties=[(SUBSCRIPTION_ID, 11)])
    c.subscribe(2, [("o/#", 1)], properties=[(SUBSCRIPTION_ID, 22)])
    c.subscribe(3, [("o/x", 0)])
    pub = connected(b.port, "pub")
    pub.publish("o/x", b"x", qos=1, pid=1)
    p = c.expect(PUBLISH)
    assert p.qos == 1
    assert sorted(p.props[SUBSCRIPTION_ID]) == [11, 22]
    c.ack(4, p.pid)
    c.expect_none(0.3)


def overlapping_filters(n):
    """n distinct filters that all match topic a/b/c/d."""
    out = []
    for mask in range(16):  # each level literal or '+'
        out.append("/".join("+" if mask >> i & 1 else x for i, x in enumerate("abcd")))
    out += ["#", "a/#", "+/#", "a/b/#", "a/+/#", "+/b/#", "a/b/c/#", "+/+/+/#", "a/+/c/#"]
    assert n <= len(out)
    return out[:n]


def test_overlapping_more_than_16_identifiers(b):
    """issue 12.6: [MQTT-3.3.4-4] the single copy carries every subscription identifier
    of the overlapping subscriptions, here 21 and 25 (there was room for 16), when sent
    at once and when queued for an offline session."""
    c = connected(b.port, "many-ids", clean=False, properties=[(SESSION_EXPIRY, 60)])
    filters = overlapping_filters(25)
    for i, f in enumerate(filters[:21]):
        assert c.subscribe(i + 1, [(f, 1)], properties=[(SUBSCRIPTION_ID, 1000 + i)]).codes == [1]
    pub = connected(b.port, "pub")
    pub.publish("a/b/c/d", b"21", qos=1, pid=1)
    assert pub.expect(PUBACK).rc == 0
    p = c.expect(PUBLISH)
    assert p.payload == b"21"
    assert sorted(p.props[SUBSCRIPTION_ID]) == list(range(1000, 1021))
    c.ack(PUBACK, p.pid)
    for i, f in enumerate(filters[21:], 21):
        assert c.subscribe(i + 1, [(f, 1)], properties=[(SUBSCRIPTION_ID, 1000 + i)]).codes == [1]
    c.disconnect()
    c.close()
    pub.publish("a/b/c/d", b"25", qos=1, pid=2)  # queued for the offline session
    assert pub.expect(PUBACK).rc == 0
    c = Client(b.port)
    assert c.connect("many-ids", clean=False, properties=[(SESSION_EXPIRY, 60)]).session_present
    p = c.expect(PUBLISH)
    assert p.payload == b"25"
    assert sorted(p.props[SUBSCRIPTION_ID]) == list(range(1000, 1025))
    c.ack(PUBACK, p.pid)
    pub.publish("a/b/c/d", b"last", qos=1, pid=3)  # one copy each: the next is the control
    assert pub.expect(PUBACK).rc == 0
    assert c.expect(PUBLISH).payload == b"last"


def test_no_local(b):
    # [MQTT-3.8.3-3]
    c = connected(b.port, "self")
    c.subscribe(1, [("nl", 0x04 | 1)])
    c.subscribe(2, [("nl2", 1)])
    c.publish("nl", b"mine", qos=1, pid=5)
    assert c.expect(PUBACK).pid == 5
    c.publish("nl2", b"echo", qos=0)
    p = c.expect(PUBLISH)
    assert p.topic == "nl2"
    other = connected(b.port, "other")
    other.publish("nl", b"theirs")
    assert c.expect(PUBLISH).payload == b"theirs"


def test_shared_subscription_spreads(b):
    # 4.8.2: each message to one member of the group
    m1 = connected(b.port, "m1")
    m2 = connected(b.port, "m2")
    for m in (m1, m2):
        assert m.subscribe(1, [("$share/workers/jobs/#", 1)]).codes == [1]
    plain = connected(b.port, "plain")
    plain.subscribe(1, [("jobs/#", 0)])
    pub = connected(b.port, "pub")
    for i in range(20):
        pub.publish("jobs/%d" % i, str(i), qos=1, pid=i + 1)
        pub.expect(PUBACK)
    got1 = [p for p in topics_received(m1, 20, 0.5)]
    got2 = [p for p in topics_received(m2, 20, 0.5)]
    assert len(got1) + len(got2) == 20
    assert got1 and got2
    assert not set(got1) & set(got2)
    assert len(topics_received(plain, 20, 0.5)) == 20


def test_shared_prefers_online_members(b):
    gone = connected(b.port, "gone", clean=False, properties=[(0x11, 60)])
    gone.subscribe(1, [("$share/g/t", 1)])
    gone.disconnect()
    here = connected(b.port, "here")
    here.subscribe(1, [("$share/g/t", 1)])
    pub = connected(b.port, "pub")
    for i in range(4):
        pub.publish("t", b"x", qos=1, pid=i + 1)
    assert len(topics_received(here, 4)) == 4


def test_unsubscribe_codes(b):
    # 3.11.3: 0x00 removed, 0x11 no subscription existed; ids match [MQTT-2.2.1-6]
    c = connected(b.port, "unsub")
    c.subscribe(1, [("u/1", 0), ("$share/g/u/2", 0)])
    ua = c.unsubscribe(9, ["u/1", "nope", "$share/g/u/2"])
    assert ua.pid == 9
    assert ua.codes == [0x00, 0x11, 0x00]
    pub = connected(b.port, "pub")
    pub.publish("u/1", b"x")
    pub.publish("u/2", b"x")
    c.expect_none(0.3)


def test_unsubscribe_v311(b):
    c = connected(b.port, "unsub3", version=4)
    c.subscribe(1, [("u", 0)])
    ua = c.unsubscribe(4, ["u"])
    assert ua.pid == 4 and ua.codes == []


def test_pingreq(b):
    c = connected(b.port, "ping")
    c.send(packet(0xC0, b""))
    assert c.expect(13)

# SPDX-License-Identifier: MIT
"""Server normative statements of MQTT 5.0 not covered by a more specific test file,
one test per statement or small group, each named in its comment."""

import struct
import time

from lqtest import conf
from mqttraw import (CONNACK, DISCONNECT, MAXIMUM_PACKET_SIZE, PINGRESP, PUBACK, PUBCOMP, PUBLISH,
                     PUBREC, PUBREL, REASON_STRING, RECEIVE_MAXIMUM, SESSION_EXPIRY, SUBACK,
                     SUBSCRIPTION_ID, TOPIC_ALIAS, UNSUBACK, USER_PROPERTY, Client, connected, packet,
                     props, s)

PERSIST = [(SESSION_EXPIRY, 60)]


def test_session_present_flags(b):
    # [MQTT-3.1.2-5] [MQTT-3.1.2-6] [MQTT-3.2.2-2] [MQTT-3.2.2-3] [MQTT-3.1.3-2]
    c = Client(b.port)
    assert not c.connect("sp", clean=False, properties=PERSIST).session_present  # new session
    c.subscribe(1, [("a/b", 1)])
    c.close()
    time.sleep(0.1)
    c = Client(b.port)
    assert c.connect("sp", clean=False, properties=PERSIST).session_present  # resumed
    c.close()
    time.sleep(0.1)
    c = Client(b.port)
    assert not c.connect("sp", clean=True, properties=PERSIST).session_present  # clean start


def test_refused_connack_session_present_zero(b):
    # [MQTT-3.2.2-6] [MQTT-3.2.2-7] [MQTT-3.2.2-8] non-zero CONNACK: session present 0, close
    c = Client(b.port)
    c.connect("keep", clean=False, properties=PERSIST)
    c.close()
    c = Client(b.port)
    body = s(b"MQTT") + bytes([5, 0x00, 0, 60]) + props((0x15, "SCRAM-SHA-1")) + s("keep")
    c.send(packet(0x10, body))
    ca = c.expect(CONNACK)
    assert ca.rc == 0x8C and not ca.session_present
    assert c.closed()


def test_refused_connect_ignores_following_data(b):
    # [MQTT-3.1.4-6] data after a refused CONNECT is not processed
    sub = connected(b.port, "watch")
    sub.subscribe(1, [("leak", 0)])
    c = Client(b.port)
    body = s(b"MQTT") + bytes([5, 0x02, 0, 60]) + props((0x15, "X")) + s("bad")
    pub = packet(0x30, s("leak") + props() + b"x")
    c.send(packet(0x10, body) + pub)
    c.closed()
    sub.expect_none(0.4)


def test_second_connect_protocol_error(b):
    # [MQTT-3.1.0-2] [MQTT-3.2.0-2] a second CONNECT is a protocol error; one CONNACK only
    c = connected(b.port, "twice")
    body = s(b"MQTT") + bytes([5, 0x02, 0, 60]) + props() + s("twice")
    c.send(packet(0x10, body))
    c.expect_disconnect(0x82)


def test_connack_before_anything(b):
    # [MQTT-3.2.0-1] [MQTT-3.1.4-5] the first packet the server sends is CONNACK 0x00
    pub = connected(b.port, "p")
    c = Client(b.port)
    body = s(b"MQTT") + bytes([5, 0x02, 0, 60]) + props() + s("first")
    sub = packet(0x82, struct.pack("!H", 1) + props() + s("x") + b"\x00")
    c.send(packet(0x10, body) + sub)
    pub.publish("x", b"1")
    p = c.recv()
    assert p.type == CONNACK and p.rc == 0
    assert c.expect(SUBACK).codes == [0]


def test_will_retain_flag(b):
    # [MQTT-3.1.2-7] [MQTT-3.1.2-9] [MQTT-3.1.2-16] [MQTT-3.1.2-17]
    w1 = connected(b.port, "w1", will=dict(topic="will/plain", payload=b"p", qos=1))
    w2 = connected(b.port, "w2", will=dict(topic="will/kept", payload=b"k", qos=1, retain=True))
    sub = connected(b.port, "s")
    sub.subscribe(1, [("will/#", 1 | 0x08)])  # retain as published
    w1.close()
    w2.close()
    got = {}
    for _ in range(2):
        p = sub.expect(PUBLISH)
        got[p.topic] = p.retain
        sub.ack(PUBACK, p.pid)
    assert got == {"will/plain": False, "will/kept": True}
    late = connected(b.port, "late")
    late.subscribe(1, [("will/#", 0)])
    p = late.expect(PUBLISH)
    assert (p.topic, p.payload, p.retain) == ("will/kept", b"k", True)
    late.expect_none(0.3)


def test_session_state_kept_after_close(b):
    # [MQTT-3.1.2-25] [MQTT-4.1.0-1] [MQTT-4.5.0-1] [MQTT-4.8.2-4] state kept while offline,
    # messages added for matching subscriptions, delivered on reconnect
    c = connected(b.port, "keep", clean=False, properties=PERSIST)
    c.subscribe(1, [("k/#", 1)])
    c.close()
    pub = connected(b.port, "pub")
    for i in range(3):
        pub.publish("k/%d" % i, b"%d" % i, qos=1, pid=i + 1)
        pub.expect(PUBACK)
    c = Client(b.port)
    assert c.connect("keep", clean=False, properties=PERSIST).session_present
    for i in range(3):
        p = c.expect(PUBLISH)
        assert p.payload == b"%d" % i
        c.ack(PUBACK, p.pid)


def test_session_discarded_after_expiry(b):
    # [MQTT-4.1.0-2] [MQTT-4.8.2-5] an expired session's queued message goes to nobody
    c = connected(b.port, "gone", clean=False, properties=[(SESSION_EXPIRY, 1)])
    c.subscribe(1, [("g", 1)])
    c.close()
    pub = connected(b.port, "pub")
    pub.publish("g", b"lost", qos=1, pid=1)
    pub.expect(PUBACK)
    time.sleep(1.5)
    c = Client(b.port)
    assert not c.connect("gone", clean=False).session_present
    c.expect_none(0.3)


def test_client_id_chars(b):
    # [MQTT-3.1.3-5] 1..23 bytes of 0-9a-zA-Z are always accepted
    cid = "0123456789abcdefABCDEFz"
    assert len(cid) == 23
    c = connected(b.port, cid)
    c.close()


def test_pingresp(b):
    # [MQTT-3.12.4-1]
    c = connected(b.port, "ping")
    c.send(b"\xc0\x00")
    c.expect(PINGRESP)


def test_pingresp_with_zero_send_quota(b):
    # [MQTT-3.3.4-10] [MQTT-4.9.0-1] [MQTT-4.9.0-2] [MQTT-4.9.0-3] with the client's receive
    # maximum used up, no more QoS>0 PUBLISH, but other packets still flow
    c = connected(b.port, "rm1", properties=[(RECEIVE_MAXIMUM, 1)])
    c.subscribe(1, [("q", 1)])
    pub = connected(b.port, "pub")
    pub.publish("q", b"a", qos=1, pid=1)
    pub.publish("q", b"b", qos=1, pid=2)
    first = c.expect(PUBLISH)
    assert first.payload == b"a"
    c.expect_none(0.3)  # quota 0: b waits
    c.send(b"\xc0\x00")
    c.expect(PINGRESP)
    assert c.subscribe(2, [("other", 0)]).codes == [0]
    c.ack(PUBACK, first.pid)
    assert c.expect(PUBLISH).payload == b"b"


def test_puback_reason_codes(b):
    # [MQTT-3.4.2-1] [MQTT-3.5.2-1] [MQTT-3.6.2-1] [MQTT-3.7.2-1] acks carry valid codes
    c = connected(b.port, "acks")
    c.subscribe(1, [("r", 2)])
    c.publish("r", b"1", qos=1, pid=10)
    got = {p.type: p for p in (c.recv(), c.recv())}  # own copy and ack, in either order
    assert set(got) == {PUBACK, PUBLISH}
    assert got[PUBACK].pid == 10 and got[PUBACK].rc in (0x00, 0x10)
    c.ack(PUBACK, got[PUBLISH].pid)
    c.subscribe(2, [("r2", 2)])
    pub = connected(b.port, "pub")
    pub.publish("r2", b"2", qos=2, pid=11)
    rec = pub.expect(PUBREC)
    assert rec.pid == 11 and rec.rc in (0x00, 0x10)
    pub.ack(PUBREL, 11)
    comp = pub.expect(PUBCOMP)
    assert comp.pid == 11 and comp.rc == 0x00
    p = c.expect(PUBLISH)
    c.ack(PUBREC, p.pid)
    rel = c.expect(PUBREL)
    assert rel.pid == p.pid and rel.rc == 0x00
    c.ack(PUBCOMP, p.pid)
    # PUBREL for an unknown id: PUBCOMP 0x92 (packet identifier not found)
    c.ack(PUBREL, 999)
    comp = c.expect(PUBCOMP)
    assert comp.pid == 999 and comp.rc == 0x92


def test_negative_ack_discards(b):
    # [MQTT-4.8.2-6] a PUBACK >= 0x80 discards the message: not resent, not given to others
    c = connected(b.port, "neg", clean=False, properties=PERSIST)
    c.subscribe(1, [("$share/g/n", 1)])
    other = connected(b.port, "other")
    other.subscribe(1, [("$share/g/n", 1)])
    pub = connected(b.port, "pub")
    pub.publish("n", b"x", qos=1, pid=1)
    pub.expect(PUBACK)
    got = None
    for who in (c, other):
        p = who.recv(0.5)
        if p is not None:
            got = (who, p)
            break
    assert got is not None
    who, p = got
    who.ack(PUBACK, p.pid, rc=0x80)
    c.expect_none(0.3)
    other.expect_none(0.3)
    if who is c:
        c.close()
        c = Client(b.port)
        assert c.connect("neg", clean=False, properties=PERSIST).session_present
        c.expect_none(0.3)


def test_subscribe_several_filters(b):
    # [MQTT-3.8.4-1] [MQTT-3.8.4-5] [MQTT-3.8.4-6] [MQTT-3.9.3-2] one SUBACK, one code per filter
    c = connected(b.port, "multi")
    sa = c.subscribe(7, [("a", 0), ("b/+", 1), ("c/#", 2), ("bad/#/x", 0), ("d", 1)])
    assert sa.pid == 7
    assert sa.codes == [0, 1, 2, 0x8F, 1]


def test_granted_qos_caps_delivery(b):
    # [MQTT-3.8.4-8] [MQTT-4.8.2-3] delivered QoS = min(published, granted)
    c = connected(b.port, "min")
    c.subscribe(1, [("m/0", 0), ("m/1", 1)])
    pub = connected(b.port, "pub")
    pub.publish("m/0", b"a", qos=2, pid=1)
    pub.expect(PUBREC)
    pub.ack(PUBREL, 1)
    pub.expect(PUBCOMP)
    assert c.expect(PUBLISH).qos == 0
    pub.publish("m/1", b"b", qos=2, pid=2)
    pub.expect(PUBREC)
    pub.ack(PUBREL, 2)
    pub.expect(PUBCOMP)
    p = c.expect(PUBLISH)
    assert p.qos == 1
    c.ack(PUBACK, p.pid)


def test_unsubscribe_semantics(b):
    # [MQTT-3.10.4-1] [MQTT-3.10.4-2] [MQTT-3.10.4-4] [MQTT-3.10.4-5] [MQTT-3.10.4-6]
    # [MQTT-3.11.3-2] exact-string match, one UNSUBACK with the id, 0x11 for no subscription
    c = connected(b.port, "uns")
    c.subscribe(1, [("u/+", 1), ("u/x", 1)])
    ua = c.unsubscribe(9, ["u/+", "u/#", "nothing"])
    assert ua.pid == 9 and ua.codes == [0x00, 0x11, 0x11]
    pub = connected(b.port, "pub")
    pub.publish("u/y", b"gone")  # only u/+ matched it
    pub.publish("u/x", b"kept")
    assert c.expect(PUBLISH).payload == b"kept"
    c.expect_none(0.3)


def test_unsubscribe_completes_inflight(b):
    # [MQTT-3.10.4-3] a QoS 1 message already sent is completed after UNSUBSCRIBE
    c = connected(b.port, "inflight")
    c.subscribe(1, [("i", 1)])
    pub = connected(b.port, "pub")
    pub.publish("i", b"x", qos=1, pid=1)
    p = c.expect(PUBLISH)
    assert c.unsubscribe(2, ["i"]).codes == [0]
    c.ack(PUBACK, p.pid)  # accepted without complaint
    c.send(b"\xc0\x00")
    c.expect(PINGRESP)


def test_unsubscribe_bad_flags(b):
    # [MQTT-3.10.1-1] UNSUBSCRIBE with reserved bits other than 0010 is malformed
    c = connected(b.port, "flags")
    c.send(packet(0xA0, struct.pack("!H", 1) + props() + s("x")))
    c.expect_disconnect(0x81)


def test_auth_bad_flags(b):
    # [MQTT-3.15.1-1] AUTH with non-zero reserved bits is malformed
    c = connected(b.port, "auth")
    c.send(packet(0xF1, b"\x00"))
    c.expect_disconnect(0x81)


def test_auth_without_method(b):
    # [MQTT-4.12.0-6] [MQTT-4.12.0-7] no Authentication Method: no AUTH and none in CONNACK;
    # an AUTH from such a client is a protocol error
    c = Client(b.port)
    ca = c.connect("noauth")
    assert 0x15 not in ca.props and 0x16 not in ca.props
    c.send(packet(0xF0, b"\x18\x00"))
    c.expect_disconnect(0x82)


def test_disconnect_reserved_bits(b):
    # [MQTT-3.14.1-1] DISCONNECT with reserved bits set is malformed
    c = connected(b.port, "dflags")
    c.send(b"\xe1\x00")
    c.expect_disconnect(0x81)


def test_no_disconnect_before_connack(b):
    # [MQTT-3.14.0-1] a refused CONNECT gets a CONNACK and a close, never a DISCONNECT
    c = Client(b.port)
    body = s(b"MQTT") + bytes([5, 0x02, 0, 60]) + props((0x15, "X")) + s("x")
    c.send(packet(0x10, body))
    p = c.recv()
    assert p.type == CONNACK and p.rc >= 0x80
    assert c.recv(0.5) is None


def test_disconnect_success_discards_will(b):
    # [MQTT-3.14.4-3] [MQTT-3.1.2-26]
    sub = connected(b.port, "s")
    sub.subscribe(1, [("lastwill", 0)])
    w = connected(b.port, "w", will=dict(topic="lastwill", payload=b"x"))
    w.disconnect()
    w.close()
    sub.expect_none(0.5)


def test_forwarded_properties_unchanged(b):
    # [MQTT-3.3.2-4] [MQTT-3.3.2-16] [MQTT-3.3.2-18] [MQTT-3.3.2-20] payload format, correlation
    # data, content type and user properties (in order) forwarded unaltered
    c = connected(b.port, "fw")
    c.subscribe(1, [("f", 0)])
    pub = connected(b.port, "pub")
    users = [(USER_PROPERTY, ("k%d" % i, "v%d" % (9 - i))) for i in range(5)]
    users.append((USER_PROPERTY, ("k0", "again")))
    pub.publish("f", b"\xff\xfe", properties=[(0x01, 0), (0x09, b"\x00\x01corr"), (0x03, "x/y")] + users)
    p = c.expect(PUBLISH)
    assert p.props[0x01] == 0 and p.props[0x09] == b"\x00\x01corr" and p.props[0x03] == "x/y"
    assert p.props[USER_PROPERTY] == [u[1] for u in users]


def test_subscription_ids_overlapping(b):
    # [MQTT-3.3.4-3] [MQTT-3.3.4-4] [MQTT-3.3.4-5] one copy carrying every matching id
    c = connected(b.port, "ids")
    c.subscribe(1, [("o/+", 1)], properties=[(SUBSCRIPTION_ID, 3)])
    c.subscribe(2, [("o/#", 0)], properties=[(SUBSCRIPTION_ID, 500)])
    c.subscribe(3, [("o/x", 0)])
    pub = connected(b.port, "pub")
    pub.publish("o/x", b"1", qos=1, pid=1)
    p = c.expect(PUBLISH)
    ids = p.props[SUBSCRIPTION_ID]
    ids = sorted(ids if isinstance(ids, list) else [ids])
    assert ids == [3, 500] and p.qos == 1
    c.ack(PUBACK, p.pid)
    c.expect_none(0.3)


def test_topic_matches_filter_no_normalisation(b):
    # [MQTT-3.3.2-3] [MQTT-4.7.3-4] topics are compared byte for byte
    c = connected(b.port, "norm")
    c.subscribe(1, [("A/b", 0), ("caf\u00e9/+", 0)])
    pub = connected(b.port, "pub")
    for t in ("a/b", "A/b ", "A//b", "cafe\u0301/x", "caf\u00e9/x", "A/b"):
        pub.publish(t, t.encode())
    got = [c.expect(PUBLISH).topic for _ in range(2)]
    assert got == ["caf\u00e9/x", "A/b"]
    c.expect_none(0.3)


def test_order_per_publisher(b):
    # [MQTT-4.6.0-5] [MQTT-4.6.0-6] order kept per publisher, per topic and QoS
    c = connected(b.port, "ord")
    c.subscribe(1, [("ord/#", 1)])
    pub = connected(b.port, "pub")
    for i in range(200):
        pub.publish("ord/t", b"%d" % i, qos=1, pid=i + 1)
    for i in range(200):
        p = c.expect(PUBLISH)
        assert p.payload == b"%d" % i
        c.ack(PUBACK, p.pid)


def test_no_topic_alias_when_client_max_absent(b):
    # [MQTT-3.1.2-30] [MQTT-3.3.2-11] no alias to a client that allowed none
    c = connected(b.port, "noalias")
    c.subscribe(1, [("alias/long/topic/name", 0)])
    pub = connected(b.port, "pub")
    for i in range(5):
        pub.publish("alias/long/topic/name", b"%d" % i)
    for i in range(5):
        assert TOPIC_ALIAS not in c.expect(PUBLISH).props


def test_no_reason_string_when_problem_info_off(b):
    # [MQTT-3.1.2-31] [MQTT-3.1.2-32] request problem information 0: no reason string or user
    # property on PUBACK/SUBACK/UNSUBACK; request response information 0: no response information
    c = Client(b.port)
    ca = c.connect("rp", properties=[(0x17, 0)])
    assert 0x1A not in ca.props
    c.publish("x", b"y", qos=1, pid=1)
    pa = c.expect(PUBACK)
    assert REASON_STRING not in pa.props and USER_PROPERTY not in pa.props
    sa = c.subscribe(2, [("a/#/b", 0)])
    assert REASON_STRING not in sa.props
    ua = c.unsubscribe(3, ["none"])
    assert REASON_STRING not in ua.props and ua.type == UNSUBACK


def test_acks_fit_client_max_packet_size(b):
    # [MQTT-3.1.2-27] [MQTT-3.2.2-19] [MQTT-3.2.2-20] [MQTT-3.9.2-1] [MQTT-3.9.2-2] [MQTT-3.11.2-1]
    # [MQTT-3.11.2-2] nothing larger than the client's maximum packet size, acks included
    c = Client(b.port)
    ca = c.connect("small", properties=[(MAXIMUM_PACKET_SIZE, 32)])
    assert ca.rc == 0
    filters = [("f%d" % i, 0) for i in range(20)]
    sa = c.subscribe(1, filters)
    assert len(sa.body) + 2 <= 32
    ua = c.unsubscribe(2, [f for f, _ in filters])
    assert len(ua.body) + 2 <= 32


def test_too_large_discarded_then_next_delivered(b):
    # [MQTT-3.1.2-28] a packet too large for the client is dropped as if sent; later ones flow
    c = Client(b.port)
    c.connect("small", properties=[(MAXIMUM_PACKET_SIZE, 100)])
    c.subscribe(1, [("big", 1)])
    pub = connected(b.port, "pub")
    pub.publish("big", b"x" * 200, qos=1, pid=1)
    pub.publish("big", b"ok", qos=1, pid=2)
    p = c.expect(PUBLISH)
    assert p.payload == b"ok"
    c.ack(PUBACK, p.pid)
    c.expect_none(0.3)


def test_qos2_subscribe_accepted(b):
    # [MQTT-3.2.2-9] [MQTT-3.2.2-10] the broker supports QoS 2: no Maximum QoS in CONNACK,
    # SUBSCRIBE with QoS 0, 1, 2 all granted
    c = Client(b.port)
    ca = c.connect("q")
    assert 0x24 not in ca.props
    assert c.subscribe(1, [("a", 0), ("b", 1), ("c", 2)]).codes == [0, 1, 2]


def test_will_qos_3_refused(b):
    # [MQTT-3.2.2-12] [MQTT-3.1.4-1] a Will QoS the server cannot honour (3) is refused
    c = Client(b.port)
    body = s(b"MQTT") + bytes([5, 0x02 | 0x04 | 0x18, 0, 60]) + props() + s("wq") + props() + s("t") + s("p")
    c.send(packet(0x10, body))
    p = c.recv()
    assert p is None or (p.type == CONNACK and p.rc >= 0x80)
    assert c.closed()


@conf("max_keepalive 30")
def test_server_keep_alive_used(b):
    # [MQTT-3.2.2-21] [MQTT-3.2.2-22] Server Keep Alive replaces the client's; absent, the
    # client's value is used
    c = Client(b.port)
    ca = c.connect("ka", keepalive=60)
    assert ca.props.get(0x13) == 30
    c2 = Client(b.port)
    ca2 = c2.connect("ka2", keepalive=1)
    assert 0x13 not in ca2.props
    assert c2.expect_disconnect(0x8D, timeout=3.0) is None  # 1.5 x 1 s


def test_dup_on_redelivery(b):
    # [MQTT-3.3.1-1] a redelivered PUBLISH has DUP set; a first delivery has not
    c = connected(b.port, "dup", clean=False, properties=PERSIST)
    c.subscribe(1, [("d", 1)])
    pub = connected(b.port, "pub")
    pub.publish("d", b"x", qos=1, pid=1)
    assert not c.expect(PUBLISH).dup
    c.close()
    c = Client(b.port)
    c.connect("dup", clean=False, properties=PERSIST)
    p = c.expect(PUBLISH)
    assert p.dup
    c.ack(PUBACK, p.pid)


def test_retain_handling_options(b):
    # [MQTT-3.3.1-10] [MQTT-3.3.1-11] [MQTT-3.3.1-13]
    pub = connected(b.port, "pub")
    pub.publish("rh/x", b"r", retain=True, qos=1, pid=1)
    pub.expect(PUBACK)
    c = connected(b.port, "rh")
    c.subscribe(1, [("rh/#", 0x10)])  # handling 1, new subscription: sent
    assert c.expect(PUBLISH).retain
    c.subscribe(2, [("rh/#", 0x10)])  # handling 1, existing: not sent
    c.expect_none(0.3)
    c.subscribe(3, [("rh/+", 0x20)])  # handling 2: never
    c.expect_none(0.3)
    c2 = connected(b.port, "rap")
    c2.subscribe(1, [("rh/x", 0x08)])
    assert c2.expect(PUBLISH).retain
    pub.publish("rh/x", b"live", retain=True)
    p = c2.expect(PUBLISH)
    assert p.retain and p.payload == b"live"  # retain as published on a live message


def test_disconnect_codes_valid(b):
    # [MQTT-3.14.2-1] [MQTT-4.13.1-1] the server's DISCONNECT uses a listed code and closes
    valid = {0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93,
             0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2}
    c = connected(b.port, "bad")
    c.publish("a/#", b"x")
    p = c.recv()
    assert p.type == DISCONNECT and p.rc in valid
    assert c.closed()

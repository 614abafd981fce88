# SPDX-License-Identifier: MIT
"""Server normative statements of MQTT 5.0 not covered by a more specific test file,
one test per statement or small group, each named in its comment."""

import struct
import time

from lqtest import conf
from mqttraw import (AUTH_METHOD, CONNACK, CONTENT_TYPE, DISCONNECT,
                     MAXIMUM_PACKET_SIZE, MESSAGE_EXPIRY, PINGRESP, PUBACK, PUBCOMP, PUBLISH, PUBREC,
                     PUBREL, REASON_STRING, RECEIVE_MAXIMUM, REQUEST_PROBLEM_INFO, RESPONSE_TOPIC,
                     SESSION_EXPIRY, SUBACK, SUBSCRIPTION_ID, TOPIC_ALIAS, UNSUBACK, USER_PROPERTY,
                     Client, connected, packet, props, s)

PERSIST = [(SESSION_EXPIRY, 60)]


def test_session_present_flags(b):
    # [MQTT-3.1.2-5] [MQTT-3.1.2-6] [MQTT-3.2.2-2] [MQTT-3.2.2-3] [MQTT-3.1.3-2] [MQTT-3.1.4-4]
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
    assert sub.subscribe(1, [("leak", 0)]).codes == [0]
    c = Client(b.port)
    body = s(b"MQTT") + bytes([5, 0x02, 0, 60]) + props((0x15, "X")) + s("bad")
    pub = packet(0x30, s("leak") + props() + b"x")
    c.send(packet(0x10, body) + pub)
    assert c.closed()
    sub.expect_none(0.4)
    # issue 12.19: the same PUBLISH from an accepted client does arrive
    ok = connected(b.port, "good")
    ok.send(pub)
    assert sub.expect(PUBLISH).payload == b"x"


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
    # issue 12.19: the same subscription on the new session does get the next message
    assert c.subscribe(2, [("g", 1)]).codes == [1]
    pub.publish("g", b"now", qos=1, pid=2)
    pub.expect(PUBACK)
    assert c.expect(PUBLISH).payload == b"now"


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
    assert c.recv(2) is None and c.eof  # the close, no DISCONNECT first (issue 12.18)


def test_disconnect_success_discards_will(b):
    # [MQTT-3.14.4-3] [MQTT-3.1.2-26]
    sub = connected(b.port, "s")
    assert sub.subscribe(1, [("lastwill", 0)]).codes == [0]
    w = connected(b.port, "w", will=dict(topic="lastwill", payload=b"x"))
    w.disconnect()
    w.close()
    sub.expect_none(0.5)
    # issue 12.19: a will that is not discarded (a lost connection) does arrive
    w = connected(b.port, "w2", will=dict(topic="lastwill", payload=b"y"))
    w.close()
    assert sub.expect(PUBLISH).payload == b"y"


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


# ---- statements checked in a second pass over the list (2026-11-25) ----

def refused_and_closed(c):
    """A malformed or refused CONNECT: at most a CONNACK of 0x80 or above, then the close."""
    p = c.recv()
    assert p is None or (p.type == CONNACK and p.rc >= 0x80), p
    assert c.closed()


def raw_connect(port, flags, payload, version=5):
    c = Client(port, version)
    body = s(b"MQTT") + bytes([version, flags, 0, 60]) + (props() if version == 5 else b"")
    c.send(packet(0x10, body + payload))
    return c


def test_connect_payload_must_match_its_flags(b):
    # [MQTT-3.1.2-15] no Will Flag, Will Retain set: malformed
    refused_and_closed(raw_connect(b.port, 0x02 | 0x20, s("wr")))
    # [MQTT-3.1.2-19] [MQTT-3.1.3-10] User Name Flag without a user name, or one that is not UTF-8
    refused_and_closed(raw_connect(b.port, 0x02 | 0x80, s("un")))
    refused_and_closed(raw_connect(b.port, 0x02 | 0x80, s("un") + s(b"\xc3\x28")))
    # [MQTT-3.1.2-21] Password Flag without a password
    refused_and_closed(raw_connect(b.port, 0x02 | 0x80 | 0x40, s("pw") + s("u")))
    # [MQTT-3.1.2-18] [MQTT-3.1.2-20] [MQTT-3.1.3-1] fields the flags do not announce
    refused_and_closed(raw_connect(b.port, 0x02, s("extra") + s("user")))
    # [MQTT-3.1.3-3] [MQTT-3.1.3-4] the ClientID is there, first, and UTF-8
    refused_and_closed(raw_connect(b.port, 0x02, b""))
    refused_and_closed(raw_connect(b.port, 0x02, s(b"id\xff")))
    # and well-formed, in that order, it is accepted
    c = raw_connect(b.port, 0x02 | 0x80 | 0x40, s("ok") + s("user") + s(b"\x00\x01pw"))
    assert c.expect(CONNACK).rc == 0


def test_connack_reserved_flag_bits_zero(b):
    # [MQTT-3.2.2-1] bits 7-1 of the Connect Acknowledge Flags are 0, session present or not
    c = Client(b.port)
    assert c.connect("flags", clean=False, properties=PERSIST).body[0] == 0
    c.close()
    time.sleep(0.1)
    c = Client(b.port)
    assert c.connect("flags", clean=False, properties=PERSIST).body[0] == 1


def test_unsubscribe_must_be_well_formed(b):
    # [MQTT-3.10.3-2] at least one Topic Filter
    c = connected(b.port, "u1")
    c.send(packet(0xA2, struct.pack("!H", 1) + props()))
    assert c.expect(DISCONNECT).rc in (0x81, 0x82)
    assert c.closed()
    # [MQTT-3.10.3-1] Topic Filters are UTF-8 Encoded Strings
    c = connected(b.port, "u2")
    c.send(packet(0xA2, struct.pack("!H", 1) + props() + s(b"a/\xff")))
    assert c.expect(DISCONNECT).rc == 0x81
    assert c.closed()


def test_suback_and_unsuback_follow_the_request(b):
    # [MQTT-3.8.4-2] [MQTT-3.9.3-1] [MQTT-3.8.4-7] SUBACK: same Packet Identifier, one code per
    # filter in order, each the granted QoS or a failure
    c = connected(b.port, "order")
    sa = c.subscribe(4242, [("o/a", 0), ("o/b/#", 2), ("o/#/bad", 1), ("o/c", 1)])
    assert sa.pid == 4242
    assert sa.codes[:2] == [0, 2] and sa.codes[2] >= 0x80 and sa.codes[3] == 1
    # [MQTT-3.11.3-1] UNSUBACK codes in the order of the filters
    ua = c.unsubscribe(77, ["o/b/#", "o/none", "o/a"])
    assert ua.pid == 77 and ua.codes == [0x00, 0x11, 0x00]


def test_topic_alias_not_carried_to_a_new_connection(b):
    # [MQTT-3.3.2-7] an alias set on one connection means nothing on the next
    c = Client(b.port)
    c.connect("ta", clean=False, properties=PERSIST)
    c.publish("ta/x", b"1", qos=1, pid=1, properties=[(TOPIC_ALIAS, 1)])
    assert c.expect(PUBACK).rc in (0, 0x10)
    c.close()
    c = Client(b.port)
    assert c.connect("ta", clean=False, properties=PERSIST).session_present
    c.publish("", b"2", qos=1, pid=2, properties=[(TOPIC_ALIAS, 1)])
    assert c.expect(DISCONNECT).rc == 0x82
    assert c.closed()


def test_publish_answered_by_qos(b):
    # [MQTT-3.3.4-1] [MQTT-4.3.2-4] [MQTT-4.3.3-8] [MQTT-4.3.3-11] QoS 0: nothing; QoS 1: PUBACK;
    # QoS 2: PUBREC, and PUBCOMP for the PUBREL, each with the PUBLISH's Packet Identifier
    c = connected(b.port, "answers")
    c.publish("ans", b"0")
    c.expect_none(0.2)
    c.publish("ans", b"1", qos=1, pid=301)
    assert c.expect(PUBACK).pid == 301
    c.publish("ans", b"2", qos=2, pid=302)
    assert c.expect(PUBREC).pid == 302
    c.ack(PUBREL, 302)
    assert c.expect(PUBCOMP).pid == 302


def test_qos1_same_packet_id_after_puback_is_a_new_message(b):
    # [MQTT-4.3.2-5] once PUBACK is sent, a PUBLISH with the same Packet Identifier is new
    sub = connected(b.port, "sub")
    sub.subscribe(1, [("q1new", 1)])
    c = connected(b.port, "pub")
    for payload in (b"first", b"second"):
        c.publish("q1new", payload, qos=1, pid=9)
        assert c.expect(PUBACK).pid == 9
        p = sub.expect(PUBLISH)
        assert p.payload == payload
        sub.ack(PUBACK, p.pid)


@conf("message_size_limit 10")
def test_qos2_after_refused_pubrec_is_a_new_message(b):
    # [MQTT-4.3.3-9] after a PUBREC of 0x80 or above, the same Packet Identifier is new
    sub = connected(b.port, "sub")
    sub.subscribe(1, [("q2r", 2)])
    c = connected(b.port, "pub")
    c.publish("q2r", b"far too large for the limit", qos=2, pid=21)
    assert c.expect(PUBREC).rc == 0x97
    c.publish("q2r", b"small", qos=2, pid=21)
    p = c.expect(PUBREC)
    assert p.pid == 21 and p.rc == 0
    assert sub.expect(PUBLISH).payload == b"small"


def test_qos2_sequence_completes_past_message_expiry(b):
    # [MQTT-4.3.3-13] the QoS 2 exchange goes on even when the message has expired
    c = connected(b.port, "pub")
    c.publish("q2e", b"x", qos=2, pid=31, properties=[(MESSAGE_EXPIRY, 1)])
    assert c.expect(PUBREC).pid == 31
    time.sleep(1.2)
    c.ack(PUBREL, 31)
    assert c.expect(PUBCOMP).pid == 31


def test_server_as_sender_qos_flows(b):
    # [MQTT-4.3.1-1] QoS 0 out: DUP 0. [MQTT-4.3.2-1] [MQTT-4.3.2-2] QoS 1 out: an unused
    # non-zero Packet Identifier, DUP 0. [MQTT-4.3.3-1] [MQTT-4.3.3-2] the same for QoS 2;
    # [MQTT-4.3.3-4] PUBREC answered with PUBREL of the same identifier.
    # [MQTT-3.3.1-3] DUP out does not follow DUP in.
    sub = connected(b.port, "sub")
    sub.subscribe(1, [("out/0", 0), ("out/1", 1), ("out/2", 2)])
    pub = connected(b.port, "pub")
    pub.publish("out/0", b"a", dup=False)
    p0 = sub.expect(PUBLISH)
    assert p0.qos == 0 and not p0.dup and p0.pid is None
    pub.publish("out/1", b"b", qos=1, pid=5, dup=True)
    pub.publish("out/1", b"c", qos=1, pid=6)
    pub.publish("out/2", b"d", qos=2, pid=7, dup=True)
    first, second = sub.expect(PUBLISH), sub.expect(PUBLISH)
    third = sub.expect(PUBLISH)
    assert [x.qos for x in (first, second, third)] == [1, 1, 2]
    assert not any(x.dup for x in (first, second, third))
    pids = [x.pid for x in (first, second, third)]
    assert 0 not in pids and len(set(pids)) == 3  # unused: none in flight twice
    sub.ack(PUBACK, first.pid)
    sub.ack(PUBACK, second.pid)
    sub.ack(PUBREC, third.pid)
    assert sub.expect(PUBREL).pid == third.pid
    sub.ack(PUBCOMP, third.pid)
    sub.expect_none(0.3)


def test_server_as_sender_keeps_unacknowledged_state(b):
    # [MQTT-4.3.2-3] a QoS 1 PUBLISH stays unacknowledged until PUBACK: sent again on
    # resume. [MQTT-4.3.3-3] [MQTT-4.3.3-5] [MQTT-4.3.3-6] a QoS 2 one until PUBREC, then
    # its PUBREL until PUBCOMP: after PUBREC only the PUBREL is sent again, never the
    # PUBLISH. [MQTT-4.3.3-7] no expiry once sent: the PUBREL survives the message's expiry.
    # [MQTT-4.4.0-2] a PUBACK with 0x80 or above acknowledges too.
    c = connected(b.port, "s", clean=False, properties=PERSIST)
    c.subscribe(1, [("st/1", 1), ("st/2", 2)])
    pub = connected(b.port, "pub")
    pub.publish("st/1", b"one", qos=1, pid=1)
    pub.publish("st/1", b"refused", qos=1, pid=2)
    pub.publish("st/2", b"two", qos=2, pid=3, properties=[(MESSAGE_EXPIRY, 1)])
    pub.expect(PUBACK)
    pub.expect(PUBACK)
    pub.expect(PUBREC)
    pub.ack(PUBREL, 3)
    pub.expect(PUBCOMP)
    c.expect(PUBLISH)  # "one": left unacknowledged
    refused, two = c.expect(PUBLISH), c.expect(PUBLISH)
    assert two.qos == 2
    c.ack(PUBACK, refused.pid, rc=0x80)  # unspecified error: still acknowledged
    c.ack(PUBREC, two.pid)
    assert c.expect(PUBREL).pid == two.pid
    c.close()  # "one" never acknowledged, "two" never completed
    time.sleep(1.3)  # past the QoS 2 message's expiry
    c = Client(b.port)
    assert c.connect("s", clean=False, properties=PERSIST).session_present
    got = [c.recv() for _ in range(2)]
    c.expect_none(0.3)
    pubs = [p for p in got if p.type == PUBLISH]
    rels = [p for p in got if p.type == PUBREL]
    assert [p.payload for p in pubs] == [b"one"] and pubs[0].dup
    assert [p.pid for p in rels] == [two.pid]
    c.ack(PUBACK, pubs[0].pid)
    c.ack(PUBCOMP, two.pid)
    c.expect_none(0.3)


def test_null_character_refused_in_topics(b):
    # [MQTT-4.7.3-2] no U+0000 in a Topic Name or a Topic Filter
    c = connected(b.port, "n1")
    c.publish("a\x00b", b"x")
    assert c.expect(DISCONNECT).rc == 0x81
    c = connected(b.port, "n2")
    c.subscribe(1, [("a/\x00", 0)], expect=False)
    assert c.expect(DISCONNECT).rc == 0x81
    assert c.closed()


def test_publish_string_properties_must_be_valid(b):
    # [MQTT-3.3.2-13] Response Topic is UTF-8; [MQTT-3.3.2-14] without wildcards;
    # [MQTT-3.3.2-19] Content Type is UTF-8; [MQTT-1.5.7-1] both strings of a user property
    # are UTF-8; [MQTT-3.3.2-1] the Topic Name is UTF-8
    def bad(properties, topic="p", rc=0x81):
        c = connected(b.port, "bad")
        c.publish(topic, b"x", qos=1, pid=1, properties=properties)
        p = c.expect(DISCONNECT)
        assert p.rc in (rc, 0x81, 0x82), p
        assert c.closed()
    bad([(RESPONSE_TOPIC, b"r/\xff")])
    bad([(RESPONSE_TOPIC, "r/+/x")], rc=0x82)
    bad([(CONTENT_TYPE, b"\xed\xa0\x80")])  # a UTF-16 surrogate
    bad([(USER_PROPERTY, ("k", b"\xc0\xaf"))])  # overlong
    bad([], topic=b"t/\xfe")
    c = connected(b.port, "good")
    c.publish("p", b"x", qos=1, pid=1, properties=[(RESPONSE_TOPIC, "r/x"), (CONTENT_TYPE, "a/b"),
                                                  (USER_PROPERTY, ("k", "v"))])
    assert c.expect(PUBACK).rc in (0, 0x10)


def test_zero_property_length_when_none(b):
    # [MQTT-2.2.2-1] no properties: a Property Length of 0, in SUBACK and in PUBLISH
    c = connected(b.port, "plen")
    sa = c.subscribe(1, [("pl", 0)])
    assert sa.body[2] == 0 and sa.body[3:] == b"\x00"
    pub = connected(b.port, "pub")
    pub.publish("pl", b"payload")
    p = c.expect(PUBLISH)
    assert p.body == s("pl") + b"\x00" + b"payload"


def test_unknown_authentication_method_refused(b):
    # [MQTT-4.12.0-4] the server rejects enhanced authentication it does not support:
    # CONNACK of 0x80 or above (0x8C bad authentication method) and the close
    c = Client(b.port)
    ca = c.connect("scram", properties=[(AUTH_METHOD, "SCRAM-SHA-1")])
    assert ca.rc == 0x8C
    assert c.closed()


def test_acks_and_disconnect_fit_client_max_packet_size(b):
    # [MQTT-3.4.2-2] [MQTT-3.4.2-3] [MQTT-3.5.2-2] [MQTT-3.5.2-3] [MQTT-3.6.2-2] [MQTT-3.6.2-3]
    # [MQTT-3.7.2-2] [MQTT-3.7.2-3] [MQTT-3.14.2-3] [MQTT-3.14.2-4] no reason string or user
    # property that would make PUBACK, PUBREC, PUBREL, PUBCOMP or DISCONNECT larger than the
    # client's Maximum Packet Size, even with problem information requested
    limit = 12
    c = Client(b.port)
    c.connect("tiny", properties=[(MAXIMUM_PACKET_SIZE, limit), (REQUEST_PROBLEM_INFO, 1)])
    c.subscribe(1, [("q", 2)])
    c.publish("t", b"x", qos=1, pid=1)
    assert len(c.expect(PUBACK).body) + 2 <= limit
    c.publish("q", b"x", qos=2, pid=2)  # to itself: PUBREC, then the delivery
    got = [c.recv(), c.recv()]
    rec = next(p for p in got if p.type == PUBREC)
    out = next(p for p in got if p.type == PUBLISH)
    assert len(rec.body) + 2 <= limit
    c.ack(PUBREL, 2)
    assert len(c.expect(PUBCOMP).body) + 2 <= limit
    c.ack(PUBREC, out.pid)
    assert len(c.expect(PUBREL).body) + 2 <= limit
    c.ack(PUBCOMP, out.pid)
    c.send(packet(0x30, s("a/+")))  # wildcard in a Topic Name: the server disconnects
    d = c.expect(DISCONNECT)
    assert d.rc >= 0x80 and len(d.body) + 2 <= limit
    assert c.closed()


def test_will_qos_0_1_2_accepted(b):
    # [MQTT-3.1.2-14] with the Will Flag, Will QoS may be 0, 1 or 2
    for q in (0, 1, 2):
        c = Client(b.port)
        assert c.connect("wq%d" % q, will=dict(topic="w", payload=b"p", qos=q)).rc == 0
        c.close()

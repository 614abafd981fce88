# SPDX-License-Identifier: MIT
"""Malformed and protocol-violating input: that one connection is closed with the
right reason code and a log line naming the client; a client connected before and one
connected after keep working."""

import socket
import struct
import time

from lqtest import conf
from mqttraw import (AUTH, CONNACK, DISCONNECT, PUBCOMP, PUBLISH, Client, Probe, connected, packet, props,
                     prop, roundtrip, s, varint, CONTENT_TYPE, SUBSCRIPTION_ID, TOPIC_ALIAS,
                     SESSION_EXPIRY, RECEIVE_MAXIMUM)


def violation(b, raw, rc, reason, version=5, client_id="bad"):
    """Send raw after a good CONNECT; expect DISCONNECT rc (v5) and a close; others
    unaffected; the log names the client and the reason."""
    bystander = connected(b.port, "bystander-" + client_id)
    bystander.subscribe(1, [("by/" + client_id, 1)])
    c = connected(b.port, client_id, version=version)
    c.send(raw)
    c.expect_disconnect(rc)
    assert b.wait_log('client "%s"' % client_id), b.output()
    assert b.wait_log(reason), "log lacks %r:\n%s" % (reason, b.output())
    # the connection before still works, and a new one does
    p = connected(b.port, "pub-" + client_id)
    p.publish("by/" + client_id, b"x", qos=1, pid=3)
    assert bystander.expect(PUBLISH).payload == b"x"
    roundtrip(b.port, client_id)


def test_remaining_length_five_bytes(b):
    # [MQTT-1.5.5-1] a Variable Byte Integer has at most 4 bytes
    violation(b, b"\x30\xff\xff\xff\xff\x01", 0x81, "malformed packet")


def test_invalid_utf8_topic(b):
    # [MQTT-1.5.4-1] ill-formed UTF-8
    violation(b, packet(0x30, s(b"a\xc0\xaf") + props()), 0x81, "malformed packet")


def test_nul_in_topic(b):
    # [MQTT-1.5.4-2] U+0000
    violation(b, packet(0x30, s(b"a\x00b") + props()), 0x81, "malformed packet", client_id="nul")


def test_surrogate_in_topic(b):
    # [MQTT-1.5.4-1] U+D800..U+DFFF
    violation(b, packet(0x30, s(b"a\xed\xa0\x80") + props()), 0x81, "malformed packet")


def test_wildcard_in_publish_topic(b):
    # [MQTT-3.3.2-2]
    violation(b, packet(0x30, s("a/+") + props()), 0x90, "topic name invalid")


def test_qos3_publish(b):
    # [MQTT-3.3.1-4]
    violation(b, packet(0x36, s("a") + b"\x00\x01" + props()), 0x81, "malformed packet")


def test_qos0_with_dup(b):
    # [MQTT-3.3.1-2]
    violation(b, packet(0x38, s("a") + props()), 0x81, "malformed packet")


def test_subscribe_reserved_flags(b):
    # [MQTT-3.8.1-1] SUBSCRIBE flags must be 0010
    violation(b, packet(0x80, b"\x00\x01" + props() + s("a") + b"\x00"), 0x81, "malformed packet")


def test_subscribe_without_filters(b):
    # [MQTT-3.8.3-2]
    violation(b, packet(0x82, b"\x00\x01" + props()), 0x82, "protocol error")


def test_subscribe_option_reserved_bits(b):
    # [MQTT-3.8.3-5]
    violation(b, packet(0x82, b"\x00\x01" + props() + s("a") + b"\xc0"), 0x81, "malformed packet")


def test_subscribe_retain_handling_3(b):
    # 3.8.3.1: Retain Handling 3 is a protocol error
    violation(b, packet(0x82, b"\x00\x01" + props() + s("a") + b"\x30"), 0x82, "protocol error")


def test_shared_subscription_no_local(b):
    # [MQTT-3.8.3-4]
    violation(b, packet(0x82, b"\x00\x01" + props() + s("$share/g/a") + b"\x04"), 0x82, "protocol error")


def test_subscription_identifier_zero(b):
    body = b"\x00\x01" + varint(2) + bytes([SUBSCRIPTION_ID, 0]) + s("a") + b"\x00"
    violation(b, packet(0x82, body), 0x82, "protocol error")


def test_duplicate_property(b):
    # 2.2.2.2: a property other than user property twice is a protocol error
    body = s("a") + props((CONTENT_TYPE, "x"), (CONTENT_TYPE, "y")) + b"payload"
    violation(b, packet(0x30, body), 0x82, "protocol error")


def test_property_not_allowed_in_packet(b):
    body = s("a") + props((SESSION_EXPIRY, 5))
    violation(b, packet(0x30, body), 0x82, "protocol error")


def test_packet_id_zero(b):
    # [MQTT-2.2.1-3]
    violation(b, packet(0x32, s("a") + b"\x00\x00" + props()), 0x82, "protocol error")


def test_property_length_overruns_packet(b):
    violation(b, packet(0x30, s("a") + varint(50) + b"\x01\x00"), 0x81, "malformed packet")


@conf("max_packet_size 1000")
def test_packet_too_large(b):
    # [MQTT-3.2.2-?] advertised maximum; larger packets close with 0x95
    c = Client(b.port)
    ca = c.connect("probe")
    assert ca.props.get(0x27) == 1000
    c.close()
    violation(b, packet(0x30, s("a") + props() + b"x" * 2000), 0x95, "packet too large")


def test_topic_alias_zero(b):
    # [MQTT-3.3.2-8] topic alias 0 is not allowed
    violation(b, packet(0x30, s("a") + props((TOPIC_ALIAS, 0))), 0x94, "topic alias invalid")


def test_topic_alias_above_maximum(b):
    # [MQTT-3.3.2-9..10] above the advertised Topic Alias Maximum (10)
    violation(b, packet(0x30, s("a") + props((TOPIC_ALIAS, 11))), 0x94, "topic alias invalid")


def test_unknown_topic_alias(b):
    violation(b, packet(0x30, s("") + props((TOPIC_ALIAS, 3))), 0x82, "protocol error")


def test_empty_topic_without_alias(b):
    violation(b, packet(0x30, s("") + props()), 0x82, "protocol error")


def test_second_connect(b):
    # [MQTT-3.1.0-2]
    violation(b, packet(0x10, s("MQTT") + b"\x05\x02\x00\x3c" + props() + s("x")), 0x82,
              "protocol error")


def test_auth_without_method(b):
    # [MQTT-4.12.0-1]-like: AUTH with no authentication method agreed
    violation(b, packet(AUTH << 4, b"\x18\x00"), 0x82, "protocol error")


def test_server_packet_from_client(b):
    violation(b, packet(CONNACK << 4, b"\x00\x00"), 0x82, "protocol error")


def test_reserved_packet_type(b):
    violation(b, packet(0x00, b""), 0x81, "malformed packet")


def test_pingreq_with_flags(b):
    violation(b, packet(0xC1, b""), 0x81, "malformed packet")


def test_disconnect_session_expiry_from_zero(b):
    # [MQTT-3.14.2-2] session expiry 0 in CONNECT, non-zero in DISCONNECT
    violation(b, packet(0xE0, b"\x00" + props((SESSION_EXPIRY, 30))), 0x82, "protocol error")


@conf("max_inflight_messages 3")
def test_receive_maximum_exceeded(b):
    # [MQTT-3.3.4-7] more unacknowledged QoS 2 PUBLISHes than the Receive Maximum (3)
    c = connected(b.port, "greedy")
    assert c.connack.props.get(RECEIVE_MAXIMUM) == 3
    c.send(b"".join(packet(0x34, s("q") + struct.pack("!H", i) + props() + b"x") for i in range(1, 5)))
    for i in range(1, 4):
        assert c.expect(5).pid == i  # PUBREC for the first three
    c.expect_disconnect(0x93)
    assert b.wait_log("receive maximum exceeded")
    roundtrip(b.port)


def test_v311_malformed_just_closes(b):
    # 3.1.1 has no DISCONNECT from the server: the connection is closed
    violation(b, packet(0x30, s(b"a\x00") + b"x"), 0x81, "malformed packet", version=4,
              client_id="v3bad")


def test_first_packet_not_connect(b):
    # [MQTT-3.1.0-1] closed without CONNACK
    c = Client(b.port)
    c.publish("a", b"x")
    assert c.recv(2) is None and c.eof  # closed, nothing sent first (issue 12.18)
    assert b.wait_log("not CONNECT")
    roundtrip(b.port)


def test_bad_protocol_name(b):
    # [MQTT-3.1.2-1] closed (no CONNACK needed)
    c = Client(b.port)
    c.send(packet(0x10, s("MQTX") + b"\x05\x02\x00\x3c" + props() + s("x")))
    assert c.closed(2)
    roundtrip(b.port)


def test_unsupported_protocol_level(b):
    # [MQTT-3.1.2-2] CONNACK 0x84 then close
    c = Client(b.port)
    c.send(packet(0x10, s("MQTT") + b"\x06\x02\x00\x3c" + props() + s("x")))
    p = c.expect(CONNACK)
    assert p.rc == 0x84
    assert c.closed(2)


def test_connect_reserved_flag(b):
    # [MQTT-3.1.2-3]
    c = Client(b.port)
    c.send(packet(0x10, s("MQTT") + b"\x05\x03\x00\x3c" + props() + s("x")))
    assert c.closed(2)
    roundtrip(b.port)


def test_will_flag_inconsistent(b):
    # [MQTT-3.1.2-11,13] will QoS / retain without the will flag
    for flags in (b"\x0a", b"\x22"):
        c = Client(b.port)
        c.send(packet(0x10, s("MQTT") + b"\x05" + flags + b"\x00\x3c" + props() + s("x")))
        assert c.closed(2)
    roundtrip(b.port)


def test_connect_with_auth_method(b):
    # [MQTT-4.12.0-1]-like: an unsupported authentication method gets 0x8C
    c = Client(b.port)
    ca = c.connect("authy", properties=[(0x15, "SCRAM-SHA-1")])
    assert ca.rc == 0x8C
    assert c.closed(2)


def test_pubrel_unknown_packet_id(b):
    # 4.3.3: PUBCOMP with 0x92 packet identifier not found
    c = connected(b.port, "rel")
    c.ack(6, 42)
    p = c.expect(PUBCOMP)
    assert p.pid == 42 and p.rc == 0x92
    c.expect_none()


def test_puback_unknown_is_ignored(b):
    """An unknown PUBACK is ignored: the connection stays open and served. expect_none
    fails on a close and then makes a PINGREQ -> PINGRESP round trip (issue 12.18); the
    3.1.1 client covers a broker that would close without a DISCONNECT."""
    for version in (5, 4):
        c = connected(b.port, "ack%d" % version, version=version)
        c.ack(4, 42)
        c.expect_none()
        c.ack(4, 43)
        c.ping()
    roundtrip(b.port)


def read_until_close(sock, timeout=5.0):
    """Every byte the broker sent up to its close; raises ConnectionResetError when a
    reset discarded what was not read yet."""
    sock.settimeout(timeout)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def first_disconnect(data):
    """The reason code of the first DISCONNECT in a byte stream, or None."""
    i = 0
    while i + 2 <= len(data):
        n, shift, j = 0, 0, i + 1
        while True:
            c = data[j]
            n |= (c & 0x7F) << shift
            shift += 7
            j += 1
            if not c & 0x80:
                break
        if data[i] >> 4 == DISCONNECT:
            return data[j] if n else 0
        i = j + n
    return None


def test_reason_code_survives_pipelined_input(b):
    """issue 12.4: a v5 client sends 21 QoS 2 PUBLISHes back to back (Receive Maximum
    20) and more after them without reading; it then reads the DISCONNECT 0x93, not a
    reset: the broker shuts down writing and reads the rest before closing."""
    for attempt in range(3):
        c = connected(b.port, "pipelined-%d" % attempt)
        burst = b"".join(packet(0x34, s("q") + struct.pack("!H", i) + props() + b"x")
                         for i in range(1, 22))
        more = packet(0x30, s("q") + props() + b"y" * 16000) * 2  # still on its way
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        c.send(burst + more)
        time.sleep(0.3)  # the broker has answered and closed meanwhile
        data = read_until_close(c.sock)  # ConnectionResetError before the fix
        assert first_disconnect(data) == 0x93, data[-16:]
        c.close()
    roundtrip(b.port)


def test_lingering_close_is_bounded(b):
    """issue 12.4: after the final DISCONNECT the broker reads and discards only for a
    bounded time and amount: a peer that keeps sending (fast, or a trickle) is cut."""
    with Probe(b.port) as probe:
        for fast in (True, False):
            c = connected(b.port, "hostile-%s" % fast)
            c.send(b"".join(packet(0x34, s("q") + struct.pack("!H", i) + props() + b"x")
                            for i in range(1, 22)))
            t0 = time.time()
            cut = None
            c.sock.settimeout(1.0)
            while time.time() - t0 < 8:
                try:
                    c.sock.sendall(b"\x00" * (65536 if fast else 1))
                except OSError:  # EPIPE / ECONNRESET: the broker closed the socket
                    cut = time.time() - t0
                    break
                time.sleep(0.001 if fast else 0.1)
            assert cut is not None, "peer held the connection open for 8 s"
            assert (cut < 1.5) if fast else (1.5 < cut < 3.5), (fast, cut)
            c.close()
    probe.check(0.5)

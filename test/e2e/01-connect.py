# SPDX-License-Identifier: MIT
"""CONNECT and CONNACK: identifiers, the limits advertised, keep alive, takeover,
anonymous access."""

import time

from lqtest import conf, wait_for
from mqttraw import (ASSIGNED_CLIENT_ID, DISCONNECT, MAXIMUM_PACKET_SIZE, PINGRESP, PUBLISH,
                     RECEIVE_MAXIMUM, RETAIN_AVAILABLE, SERVER_KEEP_ALIVE, SESSION_EXPIRY,
                     SHARED_SUB_AVAILABLE, SUB_ID_AVAILABLE, TOPIC_ALIAS_MAXIMUM,
                     WILDCARD_SUB_AVAILABLE, Client, connected, packet, roundtrip)


@conf("max_inflight_messages 7")
def test_connack_advertises_limits(b):
    # [MQTT-3.2.2-?] CONNACK says what the server supports
    c = Client(b.port)
    ca = c.connect("limits")
    assert ca.rc == 0 and not ca.session_present
    assert ca.props[RECEIVE_MAXIMUM] == 7
    assert ca.props[TOPIC_ALIAS_MAXIMUM] == 10
    assert ca.props[RETAIN_AVAILABLE] == 1
    assert ca.props[WILDCARD_SUB_AVAILABLE] == 1
    assert ca.props[SUB_ID_AVAILABLE] == 1
    assert ca.props[SHARED_SUB_AVAILABLE] == 1
    assert MAXIMUM_PACKET_SIZE not in ca.props  # no limit configured
    assert 0x24 not in ca.props  # Maximum QoS absent: QoS 2 supported


def test_assigned_client_identifier(b):
    # [MQTT-3.1.3-6] [MQTT-3.1.3-7] [MQTT-3.2.2-16] an empty id gets a new unique one,
    # returned in CONNACK, and the session is that id's
    ids = set()
    for _ in range(3):
        c = Client(b.port)
        ca = c.connect("", clean=False, properties=[(SESSION_EXPIRY, 60)])
        assert ca.rc == 0
        ids.add(ca.props[ASSIGNED_CLIENT_ID])
        c.subscribe(1, [("assigned", 1)])
        c.close()
    assert len(ids) == 3 and all(i.startswith("auto-") for i in ids)
    time.sleep(0.1)
    c = Client(b.port)
    assert c.connect(sorted(ids)[0], clean=False, properties=[(SESSION_EXPIRY, 60)]).session_present


def test_v311_empty_id(b):
    # 3.1.1 [MQTT-3.1.3-8]: accepted with clean session, refused (rc 2) without
    c = Client(b.port, version=4)
    assert c.connect("", clean=True).rc == 0
    c = Client(b.port, version=4)
    assert c.connect("", clean=False).rc == 2
    assert c.closed(2)


def test_v31_client(b):
    c = Client(b.port, version=3)
    assert c.connect("old-client").rc == 0
    c.send(packet(0xC0, b""))
    assert c.expect(PINGRESP)


def test_v31_connack_flags_reserved(b):
    """issue 12.3: in MQTT 3.1 (MQIsdp) the CONNACK byte before the return code is
    reserved and 0, also when the session is resumed; 3.1.1 has Session Present there."""
    for version in (3, 4):
        c = Client(b.port, version=version)
        ca = c.connect("resume-%d" % version, clean=False)
        assert ca.rc == 0 and ca.body[0] == 0
        c.close()
        c = Client(b.port, version=version)
        ca = c.connect("resume-%d" % version, clean=False)
        assert ca.rc == 0
        assert ca.body[0] == (0 if version == 3 else 1), (version, ca.body)


def test_session_takeover(b):
    # [MQTT-3.1.4-3] the existing connection gets DISCONNECT 0x8E and is closed;
    # [MQTT-3.14.4-1] [MQTT-3.14.4-2] after that DISCONNECT nothing more is sent on it
    first = connected(b.port, "same")
    first.subscribe(1, [("after", 0)])
    second = connected(b.port, "same")
    p = first.recv()
    assert p is not None and p.type == DISCONNECT and p.rc == 0x8E
    second.publish("after", b"x")
    assert first.closed(2)
    assert first.buf == b""
    second.send(packet(0xC0, b""))
    assert second.expect(PINGRESP)


def test_takeover_v311(b):
    first = connected(b.port, "same3", version=4)
    connected(b.port, "same3", version=4)
    assert first.closed(2)


@conf("max_keepalive 10")
def test_server_keep_alive(b):
    # [MQTT-3.2.2-?] Server Keep Alive when the client asks for more than max_keepalive
    c = Client(b.port)
    assert c.connect("ka", keepalive=60).props[SERVER_KEEP_ALIVE] == 10
    c = Client(b.port)
    assert SERVER_KEEP_ALIVE not in c.connect("ka2", keepalive=5).props
    # 3.1.1 cannot be told: refused, as mosquitto does, also keep alive 0 (issue 12.2)
    c = Client(b.port, version=4)
    assert c.connect("ka3", keepalive=60).rc == 2
    c = Client(b.port, version=4)
    assert c.connect("ka4", keepalive=0).rc == 2
    c = Client(b.port)
    assert c.connect("ka5", keepalive=0).props[SERVER_KEEP_ALIVE] == 10


def test_keep_alive_zero_accepted_without_a_limit(b):
    """issue 12.2: as mosquitto since 2.0.13, max_keepalive defaults to 0 = no limit:
    keep alive 0 (keep alive off) is legal and accepted from 3.1.1, 3.1 and 5 clients, and
    a long one is kept as asked (no Server Keep Alive)."""
    for version in (4, 3):
        c = Client(b.port, version=version)
        assert c.connect("ka0-%d" % version, keepalive=0).rc == 0
        c.send(packet(0xC0, b""))
        assert c.expect(PINGRESP)
    c = Client(b.port)
    ca = c.connect("ka0-5", keepalive=0)
    assert ca.rc == 0 and SERVER_KEEP_ALIVE not in ca.props
    c = Client(b.port)
    ca = c.connect("ka-long", keepalive=65535)
    assert ca.rc == 0 and SERVER_KEEP_ALIVE not in ca.props
    c = Client(b.port, version=4)
    assert c.connect("ka-long-4", keepalive=65535).rc == 0


@conf("max_keepalive 0")
def test_max_keepalive_0_is_no_limit(b):
    """issue 12.2: `max_keepalive 0` is accepted and means no limit, as in mosquitto."""
    c = Client(b.port, version=4)
    assert c.connect("ka0", keepalive=0).rc == 0
    c = Client(b.port)
    ca = c.connect("ka0-5", keepalive=0)
    assert ca.rc == 0 and SERVER_KEEP_ALIVE not in ca.props


def test_keep_alive_enforced(b):
    # [MQTT-3.1.2-22] nothing within 1.5 x keep alive: disconnected with 0x8D
    c = connected(b.port, "sleepy", keepalive=1)
    t0 = time.time()
    c.expect_disconnect(0x8D, timeout=4)
    assert 1.2 < time.time() - t0 < 3.0
    assert b.wait_log("keep alive timeout")


def test_keep_alive_kept_by_pings(b):
    c = connected(b.port, "pinger", keepalive=1)
    for _ in range(4):
        time.sleep(0.5)
        c.send(packet(0xC0, b""))
        assert c.expect(PINGRESP)


@conf("allow_anonymous false")
def test_anonymous_refused(b):
    # [MQTT-3.1.4-2] [MQTT-4.13.2-1] a failed check: CONNACK 0x80 or above, then the close
    c = Client(b.port)
    assert c.connect("anon").rc == 0x87
    assert c.closed(2)
    c = Client(b.port, version=4)
    assert c.connect("anon3").rc == 5
    c = Client(b.port)
    assert c.connect("named", username="dev").rc == 0


def test_no_packet_before_connack(b):
    # the server sends nothing but CONNACK first
    c = Client(b.port)
    ca = c.connect("first")
    assert ca.type == 2
    roundtrip(b.port)
    c.expect_none(0.2)


def test_will_topic_invalid(b):
    c = Client(b.port)
    ca = c.connect("w", will={"topic": "a/#", "payload": b"x"})
    assert ca.rc == 0x90
    assert c.closed(2)


def test_publish_not_echoed_without_subscription(b):
    c = connected(b.port, "quiet")
    c.publish("nobody/listens", b"x", qos=1, pid=5)
    assert c.expect(4).pid == 5
    p = c.recv(0.3)
    assert p is None or p.type != PUBLISH


def test_control_characters_cannot_forge_log_lines(b):
    """A client id, user name or topic may hold control characters (only U+0000 is
    forbidden): in the log they are escaped, so a device cannot forge or split lines."""
    forged = "\n2026-01-01T00:00:00.000Z notice: forged line"
    c = connected(b.port, "evil" + forged, username="u\r\x1b[2Jser")
    c.subscribe(1, [("t" + forged, 0)])
    c.disconnect()
    assert wait_for(lambda: "disconnected" in b.output(), 3)
    log = b.output()
    assert not any(line.startswith("2026-01-01") for line in log.splitlines()), log
    assert "\x1b" not in log and "\r" not in log
    assert 'client "evil\\n2026-01-01T00:00:00.000Z notice: forged line"' in log, log

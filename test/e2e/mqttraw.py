# SPDX-License-Identifier: MIT
"""A raw-socket MQTT client for tests: it sends exactly the bytes a test asks for,
well-formed or not, and decodes what comes back. Loopback only."""

import socket
import struct
import time

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = range(8, 16)

# property identifiers
PAYLOAD_FORMAT, MESSAGE_EXPIRY, CONTENT_TYPE = 0x01, 0x02, 0x03
RESPONSE_TOPIC, CORRELATION_DATA, SUBSCRIPTION_ID = 0x08, 0x09, 0x0B
SESSION_EXPIRY, ASSIGNED_CLIENT_ID, SERVER_KEEP_ALIVE = 0x11, 0x12, 0x13
AUTH_METHOD, AUTH_DATA, REQUEST_PROBLEM_INFO, WILL_DELAY = 0x15, 0x16, 0x17, 0x18
REQUEST_RESPONSE_INFO, RESPONSE_INFO, SERVER_REFERENCE, REASON_STRING = 0x19, 0x1A, 0x1C, 0x1F
RECEIVE_MAXIMUM, TOPIC_ALIAS_MAXIMUM, TOPIC_ALIAS, MAXIMUM_QOS = 0x21, 0x22, 0x23, 0x24
RETAIN_AVAILABLE, USER_PROPERTY, MAXIMUM_PACKET_SIZE = 0x25, 0x26, 0x27
WILDCARD_SUB_AVAILABLE, SUB_ID_AVAILABLE, SHARED_SUB_AVAILABLE = 0x28, 0x29, 0x2A

_BYTE = {PAYLOAD_FORMAT, REQUEST_PROBLEM_INFO, REQUEST_RESPONSE_INFO, MAXIMUM_QOS,
         RETAIN_AVAILABLE, WILDCARD_SUB_AVAILABLE, SUB_ID_AVAILABLE, SHARED_SUB_AVAILABLE}
_U16 = {SERVER_KEEP_ALIVE, RECEIVE_MAXIMUM, TOPIC_ALIAS_MAXIMUM, TOPIC_ALIAS}
_U32 = {MESSAGE_EXPIRY, SESSION_EXPIRY, WILL_DELAY, MAXIMUM_PACKET_SIZE}
_STR = {CONTENT_TYPE, RESPONSE_TOPIC, ASSIGNED_CLIENT_ID, AUTH_METHOD, RESPONSE_INFO,
        SERVER_REFERENCE, REASON_STRING}
_BIN = {CORRELATION_DATA, AUTH_DATA}


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def s(x):
    """An MQTT string or binary: 2-byte length then bytes."""
    if isinstance(x, str):
        x = x.encode()
    return struct.pack("!H", len(x)) + x


def prop(pid, value):
    """One property entry; value type follows the identifier."""
    if pid in _BYTE:
        return bytes([pid, value])
    if pid in _U16:
        return bytes([pid]) + struct.pack("!H", value)
    if pid in _U32:
        return bytes([pid]) + struct.pack("!I", value)
    if pid == SUBSCRIPTION_ID:
        return bytes([pid]) + varint(value)
    if pid in _STR or pid in _BIN:
        return bytes([pid]) + s(value)
    if pid == USER_PROPERTY:
        return bytes([pid]) + s(value[0]) + s(value[1])
    raise ValueError(pid)


def props(*entries):
    """A property block with its length: props((ID, value), ...)."""
    body = b"".join(prop(p, v) for p, v in entries)
    return varint(len(body)) + body


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


def parse_props(b, i):
    """Decode a property block at b[i:]; returns ({id: value or [values]}, next index)."""
    n, i = read_varint(b, i)
    end = i + n
    out = {}
    while i < end:
        pid, i = read_varint(b, i)
        if pid in _BYTE:
            v = b[i]
            i += 1
        elif pid in _U16:
            v = struct.unpack("!H", b[i:i + 2])[0]
            i += 2
        elif pid in _U32:
            v = struct.unpack("!I", b[i:i + 4])[0]
            i += 4
        elif pid == SUBSCRIPTION_ID:
            v, i = read_varint(b, i)
        elif pid in _STR or pid in _BIN:
            ln = struct.unpack("!H", b[i:i + 2])[0]
            v = bytes(b[i + 2:i + 2 + ln])
            if pid in _STR:
                v = v.decode()
            i += 2 + ln
        elif pid == USER_PROPERTY:
            k = struct.unpack("!H", b[i:i + 2])[0]
            key = b[i + 2:i + 2 + k].decode()
            i += 2 + k
            ln = struct.unpack("!H", b[i:i + 2])[0]
            val = b[i + 2:i + 2 + ln].decode()
            i += 2 + ln
            v = (key, val)
        else:
            raise ValueError("unknown property 0x%02x" % pid)
        if pid in (USER_PROPERTY, SUBSCRIPTION_ID):
            out.setdefault(pid, []).append(v)
        else:
            out[pid] = v
    return out, end


def read_varint(b, i):
    n, shift = 0, 0
    while True:
        c = b[i]
        i += 1
        n |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return n, i


class Packet:
    """A received packet, decoded as far as its type allows for `version`."""

    def __init__(self, first, body, version):
        self.first, self.body, self.type, self.flags = first, body, first >> 4, first & 15
        self.rc, self.props, self.pid = 0, {}, None
        b, v5 = body, version == 5
        t = self.type
        if t == CONNACK:
            self.session_present = bool(b[0] & 1)
            self.rc = b[1]
            if v5 and len(b) > 2:
                self.props, _ = parse_props(b, 2)
        elif t == PUBLISH:
            self.qos, self.dup, self.retain = (self.flags >> 1) & 3, bool(self.flags & 8), bool(self.flags & 1)
            tl = struct.unpack("!H", b[:2])[0]
            self.topic = b[2:2 + tl].decode()
            i = 2 + tl
            if self.qos:
                self.pid = struct.unpack("!H", b[i:i + 2])[0]
                i += 2
            if v5:
                self.props, i = parse_props(b, i)
            self.payload = bytes(b[i:])
        elif t in (PUBACK, PUBREC, PUBREL, PUBCOMP):
            self.pid = struct.unpack("!H", b[:2])[0]
            if v5 and len(b) > 2:
                self.rc = b[2]
                if len(b) > 3:
                    self.props, _ = parse_props(b, 3)
        elif t in (SUBACK, UNSUBACK):
            self.pid = struct.unpack("!H", b[:2])[0]
            i = 2
            if v5:
                self.props, i = parse_props(b, i)
            self.codes = list(b[i:])
        elif t == DISCONNECT:
            if len(b) >= 1:
                self.rc = b[0]
            if len(b) > 1:
                self.props, _ = parse_props(b, 1)

    def __repr__(self):
        return "<Packet type=%d flags=%d rc=0x%02x pid=%s>" % (self.type, self.flags, self.rc, self.pid)


class Client:
    def __init__(self, port, version=5, host="127.0.0.1", timeout=5.0):
        self.version = version
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.connack = None
        self.eof = False  # the broker closed (or reset) the connection: recv() saw it

    # ---- sending ----
    def send(self, data):
        self.sock.sendall(data)

    def connect(self, client_id="c", clean=True, keepalive=60, properties=(), will=None,
                username=None, password=None, expect=True):
        """Send CONNECT; with expect, return the CONNACK (asserting it arrived).
        will = dict(topic=, payload=, qos=, retain=, props=())."""
        flags = 0x02 if clean else 0
        if will:
            flags |= 0x04 | (will.get("qos", 0) << 3) | (0x20 if will.get("retain") else 0)
        if username is not None:
            flags |= 0x80
        if password is not None:
            flags |= 0x40
        name = b"MQIsdp" if self.version == 3 else b"MQTT"
        body = s(name) + bytes([self.version, flags]) + struct.pack("!H", keepalive)
        if self.version == 5:
            body += props(*properties)
        body += s(client_id)
        if will:
            if self.version == 5:
                body += props(*will.get("props", ()))
            body += s(will["topic"]) + s(will.get("payload", b""))
        if username is not None:
            body += s(username)
        if password is not None:
            body += s(password)
        self.send(packet(0x10, body))
        if not expect:
            return None
        p = self.recv()
        assert p is not None and p.type == CONNACK, "expected CONNACK, got %r" % (p,)
        self.connack = p
        return p

    def publish(self, topic, payload=b"", qos=0, retain=False, pid=None, properties=(), dup=False):
        if isinstance(payload, str):
            payload = payload.encode()
        first = 0x30 | (8 if dup else 0) | (qos << 1) | (1 if retain else 0)
        body = s(topic)
        if qos:
            body += struct.pack("!H", pid or 1)
        if self.version == 5:
            body += props(*properties)
        self.send(packet(first, body + payload))

    def subscribe(self, pid, filters, properties=(), expect=True):
        """filters: [(filter, options byte)]; returns the SUBACK."""
        body = struct.pack("!H", pid)
        if self.version == 5:
            body += props(*properties)
        for f, o in filters:
            body += s(f) + bytes([o])
        self.send(packet(0x82, body))
        if not expect:
            return None
        return self.expect(SUBACK)

    def unsubscribe(self, pid, filters, properties=()):
        body = struct.pack("!H", pid)
        if self.version == 5:
            body += props(*properties)
        for f in filters:
            body += s(f)
        self.send(packet(0xA2, body))
        return self.expect(UNSUBACK)

    def ack(self, ptype, pid, rc=None):
        body = struct.pack("!H", pid)
        if rc is not None and self.version == 5:
            body += bytes([rc])
        self.send(packet((ptype << 4) | (2 if ptype == PUBREL else 0), body))

    def disconnect(self, rc=None, properties=()):
        body = b""
        if self.version == 5 and (rc or properties):
            body = bytes([rc or 0]) + (props(*properties) if properties else b"")
        self.send(packet(0xE0, body))

    # ---- receiving ----
    def _fill(self, deadline):
        remaining = deadline - time.time()
        if remaining <= 0:
            raise socket.timeout()
        self.sock.settimeout(remaining)
        data = self.sock.recv(65536)
        if not data:
            raise EOFError()
        self.buf += data

    def recv(self, timeout=3.0):
        """Next packet, or None if nothing came in time or the connection closed; the two
        are told apart by self.eof, which a close sets (issue 12.18)."""
        deadline = time.time() + timeout
        try:
            while True:
                if len(self.buf) >= 2:
                    n, shift, i = 0, 0, 1
                    complete = False
                    while i < len(self.buf) and i <= 4:
                        c = self.buf[i]
                        n |= (c & 0x7F) << shift
                        shift += 7
                        i += 1
                        if not c & 0x80:
                            complete = True
                            break
                    if complete and len(self.buf) >= i + n:
                        first, body = self.buf[0], self.buf[i:i + n]
                        self.buf = self.buf[i + n:]
                        return Packet(first, body, self.version)
                self._fill(deadline)
        except socket.timeout:
            return None
        except (EOFError, OSError):  # EOF, reset, broken pipe: closed, not a timeout
            self.eof = True
            return None

    def expect(self, ptype, timeout=3.0):
        p = self.recv(timeout)
        assert p is not None, "expected packet type %d, got %s" % (
            ptype, "a close" if self.eof else "nothing in %.1f s" % timeout)
        assert p.type == ptype, "expected packet type %d, got %r" % (ptype, p)
        return p

    def ping(self, timeout=3.0):
        """PINGREQ -> PINGRESP: the connection is open and served (issue 12.18)."""
        self.send(packet(0xC0, b""))
        self.expect(PINGRESP, timeout)

    def expect_none(self, timeout=0.5, ping=True):
        """Nothing arrives within timeout, and the connection stays open: a close is a
        failure, not "nothing", and with ping a PINGREQ then gets its PINGRESP (with no
        other packet before it), so the broker still serves this client (issue 12.18).
        ping=False only before CONNACK, where PINGREQ is not allowed."""
        p = self.recv(timeout)
        assert p is None, "unexpected %r" % (p,)
        assert not self.eof, "the broker closed the connection (expected it to stay open)"
        if ping:
            self.ping()

    def closed(self, timeout=3.0):
        """True when the server closes the connection within timeout (packets before
        the close are read and dropped)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                self._fill(deadline)
            except EOFError:
                return True
            except (ConnectionResetError, BrokenPipeError):
                return True
            except (socket.timeout, OSError):
                return False
            self.buf = b""
        return False

    def expect_disconnect(self, rc, timeout=3.0):
        """v5: DISCONNECT with rc, then close. v3: just the close."""
        if self.version == 5:
            p = self.recv(timeout)
            assert p is not None and p.type == DISCONNECT, "expected DISCONNECT 0x%02x, got %r" % (rc, p)
            assert p.rc == rc, "DISCONNECT reason 0x%02x, expected 0x%02x" % (p.rc, rc)
        assert self.closed(timeout), "connection not closed"

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def publish_bytes(topic, payload, qos=0, pid=1, retain=False):
    """A v5 PUBLISH without properties, as bytes: for sending many in one write."""
    body = s(topic)
    if qos:
        body += struct.pack("!H", pid)
    return packet(0x30 | (qos << 1) | (1 if retain else 0), body + b"\x00" + payload)


def connected(port, client_id="c", version=5, **kw):
    c = Client(port, version)
    ca = c.connect(client_id, **kw)
    assert ca.rc == 0, "CONNACK rc 0x%02x" % ca.rc
    return c


def roundtrip(port, tag="check"):
    """A fresh subscriber and publisher exchange one QoS 1 message: the broker serves."""
    sub = connected(port, "rt-sub-" + tag)
    assert sub.subscribe(1, [("rt/" + tag, 1)]).codes == [1]
    pub = connected(port, "rt-pub-" + tag)
    pub.publish("rt/" + tag, b"ping", qos=1, pid=1)
    assert pub.expect(PUBACK).pid == 1
    p = sub.expect(PUBLISH)
    assert p.topic == "rt/" + tag and p.payload == b"ping"
    sub.close()
    pub.close()


class Probe:
    """A well-behaved neighbour: one connection that sends itself a QoS 1 message every
    `interval` seconds on a background thread and records each round trip (PUBLISH out,
    PUBACK and its own copy back). Used as `with Probe(port) as p: ...harm...`, then
    p.worst (seconds) and p.alive say how the broker served it meanwhile. A round trip
    that takes longer than `limit` ends the probe (worst = limit, alive = False)."""

    def __init__(self, port, client_id="probe", interval=0.02, limit=10.0):
        import threading
        self.port, self.client_id, self.interval, self.limit = port, client_id, interval, limit
        self.worst = 0.0
        self.count = 0
        self.alive = True
        self.error = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.c = connected(self.port, self.client_id, keepalive=60)
        self.c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle delays
        assert self.c.subscribe(1, [("probe/" + self.client_id, 1)]).codes == [1]
        self._thread.start()
        return self

    def _once(self, pid):
        t0 = time.time()
        self.c.publish("probe/" + self.client_id, b"p", qos=1, pid=pid)
        got_ack = got_msg = False
        while not (got_ack and got_msg):
            left = t0 + self.limit - time.time()
            p = self.c.recv(max(left, 0.001))
            if p is None:
                raise AssertionError("probe: no answer in %.1f s (closed or stalled)" % self.limit)
            if p.type == PUBACK and p.pid == pid:
                got_ack = True
            elif p.type == PUBLISH:
                got_msg = True
                if p.qos:
                    self.c.ack(PUBACK, p.pid)
        return time.time() - t0

    def _run(self):
        pid = 1
        try:
            while not self._stop.is_set():
                took = self._once(pid)
                self.worst = max(self.worst, took)
                self.count += 1
                pid = pid % 60000 + 1
                self._stop.wait(self.interval)
        except Exception as e:  # noqa: BLE001 -- reported through alive/error
            self.alive = False
            self.worst = max(self.worst, self.limit)
            self.error = e

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(self.limit + 1)
        if self.alive:  # one more after the harm: the broker still serves
            try:
                self.worst = max(self.worst, self._once(60001))
                self.count += 1
            except Exception as e:  # noqa: BLE001
                self.alive, self.error = False, e
        self.c.close()
        return False

    def check(self, worst):
        """Assert the probe stayed served: connected, answered, no round trip over worst."""
        end = time.time() + self.limit
        while self.count == 0 and self.alive and time.time() < end:  # called early
            time.sleep(0.01)
        assert self.alive, "probe lost: %s" % self.error
        assert self.count > 0, "probe made no round trip"
        assert self.worst <= worst, "probe's worst round trip %.3f s > %.3f s" % (self.worst, worst)

#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Write the seeds of test/fuzz/corpus: single packets, and whole client sessions as a
client sends them (CONNECT first; its protocol level decides how the rest is encoded),
one file each. Every packet in them decodes. Run: python3 test/fuzz/make_corpus.py"""
import os
import struct

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def u16(n):
    return struct.pack(">H", n)


def u32(n):
    return struct.pack(">I", n)


def s(text):
    b = text.encode() if isinstance(text, str) else text
    return u16(len(b)) + b


def props(*entries):
    body = b"".join(entries)
    return varint(len(body)) + body


def user(k, v):
    return b"\x26" + s(k) + s(v)


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


def connect(version, client_id, will=None, username=None, password=None, cprops=b""):
    name = "MQIsdp" if version == 3 else "MQTT"
    flags = 0x02 | (0x80 if username else 0) | (0x40 if password else 0)
    if will:
        flags |= 0x04 | 0x08 | 0x20  # will, will QoS 1, will retain
    body = s(name) + bytes([version, flags]) + u16(60)
    if version == 5:
        body += props(cprops)
    body += s(client_id)
    if will:
        if version == 5:
            body += props(b"\x18" + u32(5), b"\x01\x01", user("w", "1"))
        body += s(will[0]) + s(will[1])
    if username:
        body += s(username)
    if password:
        body += s(password)
    return packet(0x10, body)


def subscribe(version, pid, entries, sprops=b""):
    body = u16(pid) + (props(sprops) if version == 5 else b"")
    for topic, options in entries:
        body += s(topic) + bytes([options if version == 5 else options & 3])
    return packet(0x82, body)


def publish(version, qos, pid, topic, payload, pprops=b"", retain=False):
    body = s(topic) + (u16(pid) if qos else b"") + (props(pprops) if version == 5 else b"")
    return packet(0x30 | qos << 1 | (1 if retain else 0), body + payload)


def ack(version, first, pid, reason=None, aprops=None):
    body = u16(pid)
    if version == 5 and reason is not None:
        body += bytes([reason]) + (props(aprops) if aprops is not None else b"")
    return packet(first, body)


PINGREQ = packet(0xC0, b"")


def session(version):
    """CONNECT, SUBSCRIBE, PUBLISH QoS 1 and 2, PUBREL, PINGREQ, DISCONNECT."""
    v5 = version == 5
    out = connect(version, "fz%d" % version, will=("will/t", b"bye"), username="u",
                  password=b"p", cprops=b"\x11" + u32(30) + b"\x21" + u16(10) + b"\x17\x01" +
                  b"\x19\x01" + b"\x22" + u16(4) + b"\x27" + u32(65536) + user("k", "v"))
    out += subscribe(version, 1, [("a/+", 0x2E), ("b/#", 0x01)],
                     b"\x0b" + varint(7) + user("s", "1"))
    out += publish(version, 1, 2, "a/x", b"hello",
                   b"\x01\x01\x02" + u32(60) + b"\x03" + s("text/plain") + b"\x08" + s("r/t") +
                   b"\x09" + s(b"\x00\x01") + user("p", "q"))
    out += publish(version, 2, 3, "b/y", b"\x00\xff", b"\x23" + u16(1), retain=True)
    out += ack(version, 0x62, 3, 0x00 if v5 else None, b"" if v5 else None)  # PUBREL
    out += PINGREQ
    disconnect = bytes([0x04]) + props(b"\x11" + u32(0), b"\x1f" + s("done")) if v5 else b""
    return out + packet(0xE0, disconnect)


def session_v5_acks():
    """The rest a v5 client sends: acks with reasons and properties, UNSUBSCRIBE, AUTH."""
    out = connect(5, "")
    out += ack(5, 0x40, 4)                                             # PUBACK, short form
    out += ack(5, 0x50, 5, 0x10, b"\x1f" + s("no subscribers"))       # PUBREC
    out += ack(5, 0x70, 5, 0x92, user("x", "y"))                      # PUBCOMP
    out += packet(0xA2, u16(6) + props(user("u", "1")) + s("a/+") + s("b/#"))
    out += packet(0xF0, b"\x18" + props(b"\x15" + s("m"), b"\x16" + s(b"\x01")))
    return out + packet(0xE0, b"")


def main():
    os.makedirs(HERE, exist_ok=True)
    seeds = {
        "connect5": connect(5, "c", cprops=b"\x21" + u16(10)),
        "connect311": connect(4, "c"),
        "publish5": publish(5, 1, 1, "a/b", b"hi", b"\x01\x00\x23" + u16(2)),
        "subscribe5": subscribe(5, 1, [("a/#", 0x01)], b"\x0b" + varint(5)),
        "unsub5": packet(0xA2, u16(2) + props() + s("a/")),
        "disconnect5": packet(0xE0, b"\x04" + props()),
        "pubrel": ack(4, 0x62, 1),
        # client-side packets, with every CONNACK property
        "connack5": packet(0x20, b"\x01\x00" + props(
            b"\x11" + u32(10), b"\x21" + u16(20), b"\x24\x01", b"\x25\x01",
            b"\x27" + u32(1000), b"\x12" + s("id"), b"\x22" + u16(5), b"\x1f" + s("ok"),
            user("a", "b"), b"\x28\x01", b"\x29\x00", b"\x2a\x01", b"\x13" + u16(30),
            b"\x1a" + s("ri"), b"\x1c" + s("srv"), b"\x15" + s("m"), b"\x16" + s(b"\x00"))),
        "suback5": packet(0x90, u16(1) + props(b"\x1f" + s("r")) + b"\x00\x01\x02\x80\x87"),
        "unsuback311": packet(0xB0, u16(6)),
        "session5": session(5),
        "session311": session(4),
        "session31": session(3),
        "session5-acks": session_v5_acks(),
    }
    for name, data in seeds.items():
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()

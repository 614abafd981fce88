#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Write the seeds of test/fuzz/corpus-ws for fuzz_ws_frame: a client's WebSocket
frames (masked), binary messages whole and fragmented with control frames between
them, closes, text, long lengths, and a few broken ones. The first byte of each file
says how the stream arrives (low 3 bits: how many piece lengths follow it; bits 3-4:
max_message 0, 40, 1000 or none), then the stream.
Run: python3 test/fuzz/make_corpus_ws.py"""
import os
import struct

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus-ws")

LIMIT_0, LIMIT_40, LIMIT_1000, NO_LIMIT = 0, 1, 2, 3
KEY = b"\x37\xfa\x21\x3d"


def pieces(*lens, limit=NO_LIMIT):
    """The header byte and piece lengths (each byte + 1) for a stream."""
    return bytes([len(lens) | limit << 3] + [n - 1 for n in lens])


def frame(b0, payload, key=KEY):
    """A client's frame: b0 as given, the length in its shortest form, masked."""
    n = len(payload)
    if n < 126:
        head = bytes([b0, 0x80 | n])
    elif n < 65536:
        head = bytes([b0, 0x80 | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, 0x80 | 127]) + struct.pack(">Q", n)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def binary(payload, fin=True, key=KEY):
    return frame((0x80 if fin else 0) | 0x2, payload, key)


def cont(payload, fin=True, key=KEY):
    return frame(0x80 if fin else 0, payload, key)


def close(code=None, reason=b""):
    return frame(0x88, b"" if code is None else struct.pack(">H", code) + reason)


def main():
    os.makedirs(HERE, exist_ok=True)
    connect = bytes.fromhex("101000044d5154540402003c0004746573")  # MQTT CONNECT
    seeds = {
        "binary": pieces() + binary(connect),
        "binary-whole": pieces(255) + binary(connect) + binary(b"\xc0\x00"),
        "fragmented-ping": pieces(3, 7, 1) + binary(b"abc", fin=False) +
        frame(0x89, b"ping!") + cont(b"defgh", fin=False, key=b"\x01\x80\xfe\x55") +
        frame(0x8a, b"") + cont(b"ijk") + close(1000, b"bye"),
        "close-reason": pieces(4) + close(1001, b"going away \xc3\xa9"),
        "close-empty": pieces(1) + close(),
        "close-bad-code": pieces(2) + close(1005),
        "close-one-byte": pieces() + frame(0x88, b"\x03"),
        "text": pieces(5) + frame(0x81, "h\u00e9llo \u20ac \U0001f600".encode()),
        "text-split": pieces(2, 3) + frame(0x01, b"\xe2\x82") + frame(0x80, b"\xac"),
        "text-bad": pieces(6) + frame(0x81, b"ok \xed\xa0\x80"),
        "len16": pieces(100, 31) + binary(bytes(range(256)) * 2),
        # 64 KiB announced, 3000 bytes of it sent: the fuzzer's inputs stay under 4 KiB
        "len64": pieces(200, 255, 17) + binary(b"\x5a" * 65536)[:3014],
        "too-big": pieces(3, limit=LIMIT_40) + binary(b"x" * 41),
        "too-big-fragments": pieces(9, limit=LIMIT_1000) + binary(b"y" * 100, fin=False) +
        b"".join(cont(b"y" * 100, fin=False) for _ in range(12)),
        "limit-zero": pieces(limit=LIMIT_0) + binary(b"") + binary(b"z"),
        "unmasked": pieces() + b"\x82\x05Hello",
        "reserved": pieces(2) + frame(0xc2, b"rsv1") + frame(0x83, b"op3"),
        "non-minimal": pieces() + b"\x82\xfe\x00\x05" + KEY + b"hello",
        "control-long": pieces() + b"\x89\xfe\x00\x7e" + KEY + bytes(126),
    }
    for name, data in seeds.items():
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Write the seeds of test/fuzz/corpus-store for fuzz_store_read: journal segments
and a snapshot framed as broker/store/record.c frames them (u32 length, u32 CRC32C
over type, seq and payload, u8 type, u64 seq, payload; little-endian), whole, torn
and bit-flipped, plus record descriptions for the structured mode (odd first byte).
Run: python3 test/fuzz/make_corpus_store.py"""
import os
import struct

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus-store")


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def frame(rtype, seq, payload):
    body = struct.pack("<BQ", rtype, seq) + payload
    return struct.pack("<II", len(payload), crc32c(body)) + body


def journal(first, n):
    return b"".join(frame(1 + i % 3, first + i, struct.pack("<Q", i) + b"topic/%d" % i)
                    for i in range(n))


def snapshot(seq, n):
    out = frame(0, 0, struct.pack("<BQ", 1, seq))
    out += b"".join(frame(2, i + 1, b"retained/%d=value" % i) for i in range(n))
    return out + frame(0, n + 1, struct.pack("<BQ", 2, n))


def main():
    os.makedirs(HERE, exist_ok=True)
    seg = journal(1, 12)
    seeds = {
        "segment": b"\x00" + seg,
        "segment-torn": b"\x00" + seg[:-5],
        "segment-flipped": b"\x00" + seg[:40] + bytes([seg[40] ^ 0x10]) + seg[41:],
        "segment-huge-length": b"\x00" + b"\xff\xff\xff\x7f" + seg[4:],
        "snapshot": b"\x00" + snapshot(12, 5),
        "snapshot-no-footer": b"\x00" + snapshot(12, 5)[:-26],
        "records": b"\x01" + struct.pack("<HH", 90, 333) +
                   b"".join(bytes([t, 10]) + b"0123456789" for t in range(1, 8)),
        "records-empty": b"\x01\x00\x00\x00\x00\x05\x00",
    }
    for name, data in seeds.items():
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()

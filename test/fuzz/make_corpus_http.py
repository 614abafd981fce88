#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Write the seeds of test/fuzz/corpus-http for fuzz_http_request: HTTP/1.1 request
streams as a client sends them, whole, pipelined, waiting for "100 Continue", and a few
malformed or oversized ones. The first byte of each file says how the stream arrives
(low 3 bits: how many piece lengths follow it; bit 7: the tiny limits), then the
stream. Run: python3 test/fuzz/make_corpus_http.py"""
import os

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus-http")


def pieces(*lens, tiny=False):
    """The header byte and piece lengths (each byte + 1) for a stream."""
    return bytes([len(lens) | (0x80 if tiny else 0)] + [n - 1 for n in lens])


def post(path, body, extra=b""):
    return (b"POST " + path + b" HTTP/1.1\r\nHost: broker\r\n" + extra +
            b"Content-Length: %d\r\n\r\n" % len(body) + body)


GET = b"GET /retained/a%2Fb?qos=1&name=x+y&t=%7E HTTP/1.1\r\nHost: broker\r\nAccept: */*\r\n\r\n"


def main():
    os.makedirs(HERE, exist_ok=True)
    pub = post(b"/publish?topic=a%2Fb&qos=1&retain=true", b'{"hello": "world"}',
               b"Authorization: Basic dXNlcjpwYXNz\r\nContent-Type: application/json\r\n")
    seeds = {
        "get": pieces() + GET,
        "get-whole": pieces(255) + GET,
        "get-http10": pieces(7, 3) + b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "post": pieces(10, 1, 40) + pub,
        "pipelined": pieces(33, 5) + GET + pub + b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n",
        "pipelined-partial": pieces(64) + GET + GET[:30],
        "expect-continue": pieces(20) + post(b"/publish?topic=t", b"0123456789" * 5,
                                             b"Expect: 100-continue\r\n"),
        "tiny-limits": pieces(4, tiny=True) + post(b"/p", b"0123456789abcdefg"),
        "bad-method": pieces(8) + b"get / HTTP/1.1\r\n\r\n",
        "bad-folded": pieces(2) + b"GET / HTTP/1.1\r\nX-A: 1\r\n  2\r\n\r\n",
        "bad-space-colon": pieces() + b"GET / HTTP/1.1\r\nHost : b\r\n\r\n",
        "bad-nul": pieces(16) + b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
        "bad-lengths": pieces(16) + post(b"/p", b"ab", b"Content-Length: 2\r\n"),
        "chunked": pieces(16) + b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "http2": pieces(16) + b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "huge-header": pieces(128, 128) + b"GET / HTTP/1.1\r\nX: " + b"a" * 600 + b"\r\n\r\n",
        "huge-body": pieces(16) + b"POST / HTTP/1.1\r\nContent-Length: 4096\r\n\r\n",
        "many-headers": pieces(50) + b"GET / HTTP/1.1\r\n" + b"a:\r\n" * 65 + b"\r\n",
    }
    for name, data in seeds.items():
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()

# SPDX-License-Identifier: MIT
"""A raw WebSocket client for the tests (RFC 6455, client side): the upgrade request
written by hand, frames built bit by bit (masked or not, fragmented, with reserved
bits), and WsClient, mqttraw's Client over WebSockets, for packet-level checks."""

import base64
import hashlib
import os
import socket
import struct
import time

from mqttraw import Client

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG, CONT = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


def upgrade_request(path="/mqtt", key=None, version="13", protocol="mqtt", origin=None,
                    extra=(), host="127.0.0.1"):
    key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
    lines = ["GET %s HTTP/1.1" % path, "Host: %s" % host, "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Key: " + key]
    if version is not None:
        lines.append("Sec-WebSocket-Version: " + version)
    if protocol is not None:
        lines.append("Sec-WebSocket-Protocol: " + protocol)
    if origin is not None:
        lines.append("Origin: " + origin)
    lines += list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), key


def accept_of(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def frame(op, payload=b"", fin=True, mask=True, rsv=0, length=None):
    """One frame; length overrides the announced payload length (hostile frames)."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | op])
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def parse_frame(buf):
    """(fin, op, payload, used) of the first whole server frame in buf, or None."""
    if len(buf) < 2:
        return None
    fin, op, n, i = buf[0] & 0x80, buf[0] & 0x0F, buf[1] & 0x7F, 2
    assert not buf[1] & 0x80, "a server frame must not be masked"
    if n == 126:
        if len(buf) < 4:
            return None
        n, i = struct.unpack("!H", buf[2:4])[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, i = struct.unpack("!Q", buf[2:10])[0], 10
    if len(buf) < i + n:
        return None
    return bool(fin), op, buf[i:i + n], i + n


class Ws:
    """A WebSocket connection: upgrade() then send frames and read them."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.status = None
        self.headers = {}

    def upgrade(self, **kw):
        req, key = upgrade_request(**kw)
        self.sock.sendall(req)
        head = self.read_head()
        return head, key

    def read_head(self, timeout=5.0):
        """The HTTP answer's head (a str); the status in self.status, headers lower-case."""
        deadline = time.time() + timeout
        while b"\r\n\r\n" not in self.buf:
            self.sock.settimeout(max(0.01, deadline - time.time()))
            d = self.sock.recv(65536)
            if not d:
                break
            self.buf += d
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        text = head.decode(errors="replace")
        lines = text.split("\r\n")
        self.status = int(lines[0].split()[1]) if lines[0].startswith("HTTP/1.1 ") else None
        self.headers = {k.strip().lower(): v.strip() for k, _, v in
                        (ln.partition(":") for ln in lines[1:])}
        return text

    def send(self, data):
        self.sock.sendall(data)

    def recv_frame(self, timeout=3.0):
        """(fin, op, payload) of the next frame; None on timeout or close of the socket."""
        deadline = time.time() + timeout
        while True:
            f = parse_frame(self.buf)
            if f:
                self.buf = self.buf[f[3]:]
                return f[:3]
            remaining = deadline - time.time()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                return None
            except OSError:
                return None
            if not d:
                return None
            self.buf += d

    def close_code(self, timeout=3.0):
        """The code of the server's close frame (skipping data and pongs), or None."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            f = self.recv_frame(deadline - time.time())
            if f is None:
                return None
            if f[1] == CLOSE:
                return struct.unpack("!H", f[2][:2])[0] if len(f[2]) >= 2 else 1005
        return None

    def eof(self, timeout=3.0):
        """Did the server close the TCP connection (after what it still sent)?"""
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.time()))
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                return False
            except OSError:
                return True
            if not d:
                return True
        return False

    def close(self):
        self.sock.close()


class WsClient(Client):
    """mqttraw.Client whose packets travel in WebSocket frames: each send() is one
    masked binary frame (or `split` frames), and what comes back is deframed."""

    def __init__(self, port, version=5, path="/mqtt", timeout=5.0, split=1, **up):
        self.ws = Ws(port, timeout=timeout)
        self.ws.upgrade(path=path, **up)
        assert self.ws.status == 101, "upgrade answered %s" % self.ws.status
        self.version = version
        self.sock = self.ws.sock
        self.buf = b""
        self.raw = self.ws.buf  # frames that came with the 101
        self.connack = None
        self.eof = False
        self.split = split
        self.close_code = None
        self.frames = 0  # data frames received

    def send(self, data):
        n = max(1, self.split)
        step = max(1, -(-len(data) // n))
        parts = [data[i:i + step] for i in range(0, len(data), step)] or [b""]
        out = b""
        for i, p in enumerate(parts):
            out += frame(BINARY if i == 0 else CONT, p, fin=i == len(parts) - 1)
        self.sock.sendall(out)

    def _fill(self, deadline):
        while True:
            f = parse_frame(self.raw)
            if f:
                self.raw = self.raw[f[3]:]
                fin, op, payload = f[:3]
                if op in (BINARY, CONT):
                    self.buf += payload
                    self.frames += 1
                    return
                if op == CLOSE:
                    self.close_code = struct.unpack("!H", payload[:2])[0] if payload else 1005
                    raise EOFError()
                continue  # pong
            remaining = deadline - time.time()
            if remaining <= 0:
                raise socket.timeout()
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            if not data:
                raise EOFError()
            self.raw += data

# SPDX-License-Identifier: MIT
"""Publishing over HTTP (issue 20): `http_listener PORT` answers POST /publish/<topic>
and GET /retained/<topic> for applications that speak HTTP, through the password_file,
the acl_file and the hooks like any MQTT client's message, with the reason code as
JSON. Driven by curl as a user would, and by a raw socket for the malformed and
hostile requests, which each get their status and cost the others nothing."""

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from lqtest import install_hook as install, CTL, conf, free_port, pki_dir
from mqttraw import PUBACK, PUBLISH, USER_PROPERTY, CONTENT_TYPE, Probe, connected

HTTP = free_port()  # one port for the module: run.py runs these tests one at a time
H = "http_listener %d" % HTTP
BASE = "http://127.0.0.1:%d" % HTTP

FILES = tempfile.mkdtemp(prefix="lunamq-e2e-http-")
atexit.register(shutil.rmtree, FILES, True)
PASSWD = os.path.join(FILES, "passwd")
ACL = os.path.join(FILES, "acl")
subprocess.run(["mosquitto_passwd", "-c", "-b", PASSWD, "dev", "devpass"], check=True)
with open(ACL, "w") as f:
    f.write("user dev\ntopic readwrite devices/dev/#\ntopic read fleet/#\n")


def curl(*args, check=True):
    """(status, body, headers) of one curl request."""
    hdr = os.path.join(FILES, "h.txt")
    r = subprocess.run(["curl", "-s", "-o", "-", "-D", hdr, "-w", "\n%{http_code}", *args],
                       capture_output=True, timeout=20)
    out = r.stdout
    body, _, code = out.rpartition(b"\n")
    with open(hdr, "rb") as f:
        headers = f.read().decode(errors="replace")
    return int(code or 0), body, headers


def post(topic, data=b"", query="", *extra):
    return curl("-X", "POST", "--data-binary", data.decode("latin-1"), *extra,
                BASE + "/publish/" + topic + query)


def rc_of(body):
    return json.loads(body)["reason_code"]


def sub(b, topic, cid="s"):
    c = connected(b.port, cid)
    c.subscribe(1, [(topic, 1)])
    return c


def raw(data, read=True, timeout=5.0):
    """Send bytes on a fresh connection; the answer until the broker closes."""
    s = socket.create_connection(("127.0.0.1", HTTP), timeout=timeout)
    s.sendall(data)
    out = b""
    if read:
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                out += d
        except socket.timeout:
            pass
    s.close()
    return out


# ---- publishing ----

@conf(H)
def test_publish_with_curl_reaches_an_mqtt_subscriber(b):
    s = sub(b, "x/#")
    st, body, _ = post("x/y", b"hello", "?qos=1&retain=true", "-H", "Content-Type: text/plain",
                       "-H", "X-User-Property: site=Lyon", "-H", "X-User-Property: a=b=c")
    assert st == 200 and rc_of(body) == 0, (st, body)
    m = s.expect(PUBLISH)
    assert (m.topic, m.payload, m.qos, m.retain) == ("x/y", b"hello", 1, False)
    s.ack(PUBACK, m.pid)
    assert m.props[CONTENT_TYPE] == "text/plain"
    assert m.props[USER_PROPERTY] == [("site", "Lyon"), ("a", "b=c")]
    # a new subscriber gets it retained; so does GET /retained
    s2 = sub(b, "x/y", "s2")
    assert s2.expect(PUBLISH).retain
    st, body, headers = curl(BASE + "/retained/x/y")
    assert st == 200 and body == b"hello" and "Content-Type: text/plain" in headers, headers
    st, body, _ = curl(BASE + "/retained/x/none")
    assert st == 404
    # a topic with spaces and a percent-encoded slash level
    st, body, _ = post("a%20b/c", b"1")
    assert st == 200 and rc_of(body) == 0x10  # nobody subscribed: 0x10, still accepted
    stats = subprocess.run([CTL, "-s", b.admin, "--json", "stats"], capture_output=True,
                           text=True, timeout=10).stdout
    assert json.loads(stats)["http_publishes"] == 2


@conf(H)
def test_bad_topics_methods_and_paths(b):
    assert post("x/%23", b"w")[0] == 400  # a wildcard is no topic name
    assert post("x/%2B/y", b"w")[0] == 400
    st, body, _ = post("%24SYS/x", b"w")
    assert st == 403 and rc_of(body) == 0x87
    assert post("x", b"w", "?qos=3")[0] == 400
    assert post("x", b"w", "?retain=maybe")[0] == 400
    assert curl(BASE + "/publish/x")[0] == 405  # GET
    assert curl("-X", "POST", BASE + "/retained/x")[0] == 405
    assert curl(BASE + "/nothing")[0] == 404  # / is the dashboard (35-dashboard.py)
    assert post("x/%zz", b"w")[0] == 400  # a bad escape


@conf(H, "message_size_limit 10")
def test_message_size_limit_is_413(b):
    st, body, _ = post("x", b"0123456789A")
    assert st == 413 and rc_of(body) == 0x95


# ---- who may ----

@conf(H, "allow_anonymous false", "password_file " + PASSWD, "acl_file " + ACL)
def test_basic_auth_and_acl(b):
    st, body, headers = post("devices/dev/t", b"1")
    assert st == 401 and "WWW-Authenticate: Basic" in headers
    assert post("devices/dev/t", b"1", "", "-u", "dev:wrong")[0] == 401
    st, body, _ = post("devices/dev/t", b"1", "?retain=1", "-u", "dev:devpass")
    assert st == 200 and rc_of(body) == 0x10, body
    st, body, _ = post("devices/other/t", b"1", "", "-u", "dev:devpass")
    assert st == 403 and rc_of(body) == 0x87
    assert curl("-u", "dev:devpass", BASE + "/retained/devices/dev/t")[0] == 200
    assert curl("-u", "dev:devpass", BASE + "/retained/secret/x")[0] == 403
    assert curl("-H", "Authorization: Bearer x", BASE + "/retained/devices/dev/t")[0] == 400


@conf(H, "allow_anonymous false", "password_file " + PASSWD)
def test_one_password_check_per_connection(b):
    """curl reuses the connection for two URLs: the second request is not checked again
    (the check is PBKDF2, off the loop), and a wrong password on it still fails."""
    def auth_ok():
        out = subprocess.run([CTL, "-s", b.admin, "--json", "stats"], capture_output=True,
                             text=True, timeout=10).stdout
        return json.loads(out)["auth_ok"]

    r = subprocess.run(["curl", "-s", "-u", "dev:devpass", "-d", "1", BASE + "/publish/a",
                        "--next", "-u", "dev:devpass", "-d", "2", BASE + "/publish/b"],
                       capture_output=True, timeout=20)
    assert r.stdout.count(b'"reason_code": 16') == 2, r.stdout
    assert auth_ok() == 1  # one connection, one check
    r = subprocess.run(["curl", "-s", "-u", "dev:devpass", "-d", "1", BASE + "/publish/a",
                        "--next", "-u", "dev:bad", "-d", "2", BASE + "/publish/b"],
                       capture_output=True, timeout=20)
    assert r.stdout.count(b'"reason_code": 16') == 1 and b'"reason_code": 134' in r.stdout, \
        r.stdout
    assert auth_ok() == 2


@conf(H)
def test_hooks_see_and_refuse_http_publishes(b):
    install(b, "10-h.lua", '''
return {topics = {"h/#"}, on_publish = function(m)
  if m.payload == "no" then return false, 0x99 end
  m.payload = m.payload .. " via " .. m.client.id:sub(1, 5)
  return m
end}''')
    s = sub(b, "h/#")
    assert post("h/1", b"yes", "?qos=1")[0] == 200
    assert s.expect(PUBLISH).payload == b"yes via http:"
    st, body, _ = post("h/2", b"no")
    assert st == 403 and rc_of(body) == 0x99


# ---- durability and backpressure ----

@conf(H, "persistence true", "persistence_location {dir}/data")
def test_qos1_answer_means_durable(b):
    st, body, _ = post("keep/me", b"v1", "?qos=1&retain=true")
    assert st == 200
    b.proc.send_signal(signal.SIGKILL)  # right after the answer: it was on disk already
    b.proc.wait(10)
    b.start()
    assert curl(BASE + "/retained/keep/me")[1] == b"v1"


@conf(H, "max_queued_messages 5", "max_hold_time 30")
def test_held_back_is_503_with_retry_after(b):
    deaf = connected(b.port, "deaf")
    deaf.subscribe(1, [("busy/#", 1)])  # never acks: its queue fills
    p = connected(b.port, "p")
    for i in range(40):
        p.publish("busy/x", b"m", qos=1, pid=i + 1)
    time.sleep(0.5)
    st, body, headers = post("busy/x", b"h", "?qos=1")
    assert st == 503 and "Retry-After: 1" in headers and rc_of(body) == 0x89, (st, body)
    assert post("other/x", b"h")[0] == 503  # the broker holds its publishers back


# ---- hostile and malformed requests ----

@conf(H)
def test_malformed_requests_get_their_status_and_close(b):
    cases = [
        (b"GARBAGE\r\n\r\n", b" 400 "),
        (b"POST /publish/x HTTP/2.0\r\n\r\n", b" 505 "),
        (b"post /publish/x HTTP/1.1\r\n\r\n", b" 400 "),
        (b"POST /publish/x HTTP/1.1\r\nBad Header: 1\r\n\r\n", b" 400 "),
        (b"POST /publish/x HTTP/1.1\r\nX: 1\r\n folded\r\n\r\n", b" 400 "),
        (b"POST /publish/x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nab", b" 400 "),
        (b"POST /publish/x HTTP/1.1\r\nContent-Length: -1\r\n\r\n", b" 400 "),
        (b"POST /publish/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
         b" 411 "),
        (b"POST /publish/x HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n", b" 413 "),
        (b"GET /retained/x HTTP/1.1\r\n" + b"X-Long: " + b"a" * 9000 + b"\r\n\r\n", b" 431 "),
        (b"GET /retained/x HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(70)) +
         b"\r\n", b" 431 "),
        (b"GET /retained/x HTTP/1.1\r\nX: a\x01b\r\n\r\n", b" 400 "),
        (b"GET /retained/x\x00 HTTP/1.1\r\n\r\n", b" 400 "),
    ]
    with Probe(b.port) as probe:
        for req, want in cases:
            out = raw(req)
            assert out.startswith(b"HTTP/1.1" + want), (req[:60], out[:100])
    probe.check(0.1)
    p = connected(b.port, "after")  # the broker serves on
    p.publish("x", b"1", qos=1, pid=1)
    p.expect(PUBACK)


@conf(H)
def test_pipelined_and_kept_alive_requests_in_order(b):
    reqs = b"".join(b"POST /publish/p/%d HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n%d" % (i, i)
                    for i in range(5))
    reqs += b"GET /retained/none HTTP/1.1\r\nConnection: close\r\n\r\n"
    s = sub(b, "p/#")
    out = raw(reqs)
    assert out.count(b"HTTP/1.1 200 OK") == 5 and out.count(b"HTTP/1.1 404") == 1, out
    assert [s.expect(PUBLISH).topic for _ in range(5)] == ["p/%d" % i for i in range(5)]


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        v = f.read().rsplit(")", 1)[1].split()
    return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")


@conf(H)
def test_large_body_in_small_pieces_is_copied_once(b):
    """A 12 MiB body sent in 1 KiB writes costs its reads and one parse of the headers,
    not a copy or a parse of all that came per read (gigabytes). A Probe measures its
    own round trips meanwhile."""
    body = b"x" * (12 << 20)
    s = sub(b, "big/#")
    with Probe(b.port) as probe:
        c0 = cpu_s(b.pid)
        sock = socket.create_connection(("127.0.0.1", HTTP), timeout=20)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"POST /publish/big/x HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body))
        for i in range(0, len(body), 1024):
            sock.sendall(body[i:i + 1024])
        out = sock.recv(4096)
        used = cpu_s(b.pid) - c0
        sock.close()
    assert out.startswith(b"HTTP/1.1 200"), out
    assert s.expect(PUBLISH, 10).payload == body
    print("  broker CPU for a 12 MiB body in 1 KiB pieces: %.2f s" % used)
    assert used < 1.0, used
    probe.check(0.2)


@conf(H)
def test_slow_request_times_out_with_408(b):
    s = socket.create_connection(("127.0.0.1", HTTP), timeout=20)
    s.sendall(b"POST /publish/x HTTP/1.1\r\nContent-Length: 10\r\n\r\n123")  # 7 bytes never come
    t0 = time.time()
    out = s.recv(4096)
    assert out.startswith(b"HTTP/1.1 408"), out
    assert 9 < time.time() - t0 < 12
    assert s.recv(100) == b""


@conf(H)
def test_connections_are_bounded(b):
    socks = []
    for _ in range(300):
        s = socket.create_connection(("127.0.0.1", HTTP), timeout=5)
        socks.append(s)
    time.sleep(0.3)
    closed = 0
    for s in socks:
        s.settimeout(0.01)
        try:
            if s.recv(1) == b"":
                closed += 1
        except (socket.timeout, ConnectionResetError):
            pass
    assert closed >= 300 - 256 - 2, closed  # past 256, refused at once
    for s in socks:
        s.close()
    assert post("x", b"after")[0] == 200


# ---- TLS ----

@conf("http_listener {tls_port}", "certfile {pki}/server.crt", "keyfile {pki}/server.key")
def test_https_listener(b):
    st, body, _ = curl("--cacert", pki_dir() + "/ca.crt", "-X", "POST", "-d", "s",
                       "https://localhost:%d/publish/tls/x" % b.tls_port)
    assert st == 200 and rc_of(body) == 0x10, (st, body)

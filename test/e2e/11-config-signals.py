# SPDX-License-Identifier: MIT
"""Command line, configuration errors, signals (SIGTERM graceful shutdown with 0x8B,
SIGHUP reload), max_connections."""

import json
import os
import signal
import socket
import subprocess
import tempfile
import time

import lqtest
from lqtest import conf, may_exit
from mqttraw import (DISCONNECT, MAXIMUM_PACKET_SIZE, PUBACK, PUBLISH, RECEIVE_MAXIMUM,
                     RETAIN_AVAILABLE, SERVER_KEEP_ALIVE, Client, connected, roundtrip)


def serves_then_stops(p, port):
    """The broker process p serves a round trip on port, then stops cleanly on SIGTERM."""
    try:
        assert lqtest.wait_port(port)
        roundtrip(port)
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0


def run_with_conf(text, *args):
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
        f.write(text)
    try:
        p = subprocess.run([lqtest.BIN, "-c", f.name, *args], capture_output=True, timeout=10)
        return p.returncode, p.stderr.decode(), f.name
    finally:
        os.unlink(f.name)


def test_unknown_option_exit_3(b):
    rc, err, path = run_with_conf("listener 1883 127.0.0.1\nmax_bogus 1\n")
    assert rc == 3
    assert "%s:2: unknown option 'max_bogus'" % path in err


def test_bad_value_exit_3(b):
    rc, err, path = run_with_conf("max_keepalive 5\n")
    assert rc == 3 and "%s:1: max_keepalive" % path in err


def test_missing_file_exit_3(b):
    p = subprocess.run([lqtest.BIN, "-c", "/nonexistent.conf"], capture_output=True, timeout=10)
    assert p.returncode == 3 and b"/nonexistent.conf: cannot open" in p.stderr


def test_help(b):
    p = subprocess.run([lqtest.BIN, "-h"], capture_output=True, timeout=10)
    assert p.returncode == 0 and b"usage: lunamq" in p.stdout


def test_port_option(b):
    port = lqtest.free_port()
    serves_then_stops(subprocess.Popen([lqtest.BIN, "-p", str(port)], stderr=subprocess.DEVNULL),
                      port)


@may_exit
def test_sigterm_graceful(b):
    # v5 clients get DISCONNECT 0x8B; the broker exits 0
    c5 = connected(b.port, "five")
    c3 = connected(b.port, "three", version=4)
    b.send_signal(signal.SIGTERM)
    p = c5.recv(3)
    assert p is not None and p.type == DISCONNECT and p.rc == 0x8B
    assert c5.closed(3) and c3.closed(3)
    assert b.proc.wait(5) == 0


@may_exit
def test_sigint_graceful(b):
    c5 = connected(b.port, "five")
    b.send_signal(signal.SIGINT)
    assert c5.recv(3).rc == 0x8B
    assert b.proc.wait(5) == 0


@conf("max_inflight_messages 5")
def test_sighup_reload(b):
    assert connected(b.port, "before").connack.props[RECEIVE_MAXIMUM] == 5
    keep = connected(b.port, "kept")
    with open(b.conf_path) as f:
        text = f.read()
    with open(b.conf_path, "w") as f:
        f.write(text.replace("max_inflight_messages 5", "max_inflight_messages 9"))
    b.send_signal(signal.SIGHUP)
    assert b.wait_log("configuration reloaded")
    assert connected(b.port, "after").connack.props[RECEIVE_MAXIMUM] == 9
    keep.send(b"\xc0\x00")
    assert keep.expect(13)  # existing connections untouched


def test_sighup_bad_file_keeps_config(b):
    with open(b.conf_path, "a") as f:
        f.write("bogus_option 1\n")
    b.send_signal(signal.SIGHUP)
    assert b.wait_log("reload failed")
    roundtrip(b.port)


@conf("max_connections 2")
def test_max_connections(b):
    a = connected(b.port, "a")
    c = connected(b.port, "c")
    third = Client(b.port)
    third.connect("third", expect=False)
    assert third.closed(3)
    assert b.wait_log("max_connections")
    a.close()
    time.sleep(0.2)
    connected(b.port, "fourth")
    c.close()


def test_no_connect_timeout(b):
    # a socket that never sends CONNECT is closed (10 s)
    s = Client(b.port)
    t0 = time.time()
    assert s.closed(15)
    assert 9 < time.time() - t0 < 13


def test_long_help_and_version(b):
    """issue 12.11: --help prints the usage (status 0, not "invalid option" and 3);
    --version and -V print the version, and those of libevent, mbedTLS (which build:
    issue 15) and Lua."""
    p = subprocess.run([lqtest.BIN, "--help"], capture_output=True, timeout=10)
    assert p.returncode == 0 and b"usage: lunamq" in p.stdout and not p.stderr, p
    for opt in ("--version", "-V"):
        p = subprocess.run([lqtest.BIN, opt], capture_output=True, timeout=10)
        lines = p.stdout.decode().splitlines()
        assert p.returncode == 0 and lines[0] == "lunamq 0.1.0", p
        assert lines[1].startswith("libevent 2.1") and lines[3].startswith("Lua 5.4"), p
        assert lines[2].startswith("mbedTLS 3.6.") and ("lunamq's build" in lines[2] or
                                                        "packaged" in lines[2]), p
    p = subprocess.run([lqtest.BIN, "--bogus"], capture_output=True, timeout=10)
    assert p.returncode == 3 and b"usage: lunamq" in p.stderr


@conf("allow_anonymous false")
def test_allow_anonymous_false_warns_without_password_checks(b):
    """issue 12.16: with allow_anonymous false and no way to check passwords, any
    username gets in: the broker says so at start-up."""
    assert b.wait_log("warning: allow_anonymous false: lunamq checks no passwords", 3), \
        b.output()
    c = Client(b.port)
    assert c.connect("anyone", username="whoever", password="wrong").rc == 0  # as it warns
    c2 = Client(b.port)
    assert c2.connect("nobody").rc == 0x87  # no username: still refused


def test_allow_anonymous_true_does_not_warn(b):
    """issue 12.16: the warning is only for allow_anonymous false."""
    assert b.wait_log("listening on", 3)
    assert "warning: allow_anonymous" not in b.output()
    assert "notice: allow_anonymous true; password_file: 0 users" in b.output()  # what is in force


# ---- issue 12.21: README behaviours that had no test ----

def test_metrics_listener_cannot_bind_is_a_startup_error(b):
    """issue 12.21: a metrics_listener whose port is taken stops start-up (exit 3, a
    message naming the option), as the README says; it used to run on without it."""
    taken = socket.socket()
    taken.bind((lqtest.HOST, 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        rc, err, _ = run_with_conf("listener %d 127.0.0.1\nadmin_socket none\n"
                                   "metrics_listener %d\n" % (lqtest.free_port(), port))
    finally:
        taken.close()
    assert rc == 3, (rc, err)
    assert "metrics_listener" in err and str(port) in err, err


def test_broker_started_from_include_dir(b):
    """issue 12.21: the main file only names include_dir; the listener and an option
    come from a *.conf in it (a file of another name is not read)."""
    d = tempfile.mkdtemp(dir=b.dir)
    port = lqtest.free_port()
    with open(os.path.join(d, "10-listener.conf"), "w") as f:
        f.write("listener %d 127.0.0.1\nallow_anonymous true\nadmin_socket none\n" % port)
    with open(os.path.join(d, "20-limits.conf"), "w") as f:
        f.write("max_inflight_messages 7\n")
    with open(os.path.join(d, "30-ignored.conf.off"), "w") as f:
        f.write("bogus_option 1\n")
    main = os.path.join(b.dir, "main.conf")
    with open(main, "w") as f:
        f.write("include_dir %s\n" % d)
    p = subprocess.Popen([lqtest.BIN, "-c", main], stderr=subprocess.PIPE)
    try:
        assert lqtest.wait_port(port), p.stderr.read1(4096) if p.poll() is not None else ""
        assert connected(port, "inc").connack.props[RECEIVE_MAXIMUM] == 7
        roundtrip(port)
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0


def test_make_install_layout(b):
    """issue 12.21: make install with PREFIX and DESTDIR puts the two programs, the
    example configuration and (issue 18) the man pages where the README says, and the
    installed broker runs."""
    dest = tempfile.mkdtemp(dir=b.dir)
    r = subprocess.run(["make", "-s", "-C", lqtest.ROOT, "install", "DESTDIR=" + dest,
                        "PREFIX=/opt/lq"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    root = os.path.join(dest, "opt", "lq")
    found = sorted(os.path.relpath(os.path.join(d, f), root)
                   for d, _, fs in os.walk(root) for f in fs)
    pages = ["share/man/man1/lunamq-ctl.1", "share/man/man5/lunamq.conf.5",
             "share/man/man7/lunamq-hooks.7", "share/man/man8/lunamq.8"]
    assert found == sorted(["sbin/lunamq", "bin/lunamq-ctl", "share/lunamq/lunamq.conf.example"]
                           + pages), found
    for exe in ("sbin/lunamq", "bin/lunamq-ctl"):
        assert os.stat(os.path.join(root, exe)).st_mode & 0o777 == 0o755
    for f in ["share/lunamq/lunamq.conf.example"] + pages:
        assert os.stat(os.path.join(root, f)).st_mode & 0o777 == 0o644
    h = subprocess.run([os.path.join(root, "sbin/lunamq"), "-h"], capture_output=True, timeout=10)
    assert h.returncode == 0 and b"usage: lunamq" in h.stdout
    port = lqtest.free_port()  # the installed example configuration parses and serves
    with open(os.path.join(root, "share/lunamq/lunamq.conf.example")) as f:
        example = f.read()
    assert "listener 1883 127.0.0.1\n" in example  # moved to a free port: tests run side by side
    with open(os.path.join(dest, "example.conf"), "w") as f:
        f.write(example.replace("listener 1883 127.0.0.1\n", "listener %d 127.0.0.1\n" % port))
    serves_then_stops(subprocess.Popen([os.path.join(root, "sbin/lunamq"), "-c",
                                        os.path.join(dest, "example.conf")], cwd=dest,
                                       stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL), port)


RELOAD_BEFORE = ["max_packet_size 0", "max_keepalive 65535", "allow_anonymous true",
                 "retain_available true", "message_size_limit 0", "max_topic_levels 200",
                 "persistent_client_expiration 1h"]
RELOAD_AFTER = ["max_packet_size 5000", "max_keepalive 30", "allow_anonymous false",
                "retain_available false", "message_size_limit 10", "max_topic_levels 3",
                "persistent_client_expiration 2h"]


def observe(b, tag):
    """What each reloadable option shows to a new client."""
    c = connected(b.port, "obs-" + tag, keepalive=600, username="u")
    ca = c.connack.props
    anon = Client(b.port).connect("anon-" + tag).rc
    c.publish("big/" + tag, b"x" * 20, qos=1, pid=1)
    big = c.expect(PUBACK).rc
    c3 = connected(b.port, "v3-" + tag, version=4, clean=False, username="u", keepalive=10)
    c3.close()
    time.sleep(0.1)
    expiry = json.loads(subprocess.run([lqtest.CTL, "-s", b.admin, "--json", "client", "v3-" + tag],
                                       capture_output=True, text=True, timeout=10).stdout)
    c.publish("a/b/c/d/" + tag, b"x")  # 4 levels: refused past max_topic_levels 3
    deep = c.recv(1)
    return dict(max_packet=ca.get(MAXIMUM_PACKET_SIZE), keepalive=ca.get(SERVER_KEEP_ALIVE),
                anon=anon, retain=ca.get(RETAIN_AVAILABLE), big=big,
                expiry=expiry["session_expiry"], deep=deep and (deep.type, deep.rc))


@conf(*RELOAD_BEFORE)
def test_sighup_applies_each_reloadable_option_and_not_the_restart_ones(b):
    """issue 12.21: SIGHUP applies every reloadable option the README lists (seen by a
    new client), and not listener or metrics_listener (restart only)."""
    before = observe(b, "1")
    # big: 0x10, accepted with no subscriber (issue 12.7); after the reload, 0x97
    assert before == dict(max_packet=None, keepalive=None, anon=0, retain=1, big=0x10,
                          expiry=3600, deep=None), before
    new_port, metrics_port = lqtest.free_port(), lqtest.free_port()
    with open(b.conf_path) as f:
        text = f.read()
    for old, new in zip(RELOAD_BEFORE, RELOAD_AFTER):
        text = text.replace(old + "\n", new + "\n")
    text += "listener %d 127.0.0.1\nmetrics_listener %d\n" % (new_port, metrics_port)
    with open(b.conf_path, "w") as f:
        f.write(text)
    b.send_signal(signal.SIGHUP)
    assert b.wait_log("configuration reloaded")
    after = observe(b, "2")
    assert after == dict(max_packet=5000, keepalive=30, anon=0x87, retain=0, big=0x97,
                         expiry=7200, deep=(DISCONNECT, 0x90)), after
    for port in (new_port, metrics_port):  # restart-only: not opened by a reload
        with socket.socket() as s:
            assert s.connect_ex((lqtest.HOST, port)) != 0, port
    roundtrip_named(b.port)


def roundtrip_named(port):
    sub = connected(port, "rt-sub", username="u")
    assert sub.subscribe(1, [("rt", 1)]).codes == [1]
    pub = connected(port, "rt-pub", username="u")
    pub.publish("rt", b"ok", qos=1, pid=1)
    assert pub.expect(PUBACK).rc == 0
    assert sub.expect(PUBLISH).payload == b"ok"


@may_exit
def test_sigterm_flushes_for_up_to_2s(b):
    """issue 12.21: at SIGTERM what is queued for a client is still sent while it reads
    (up to 2 s), and a client that never reads holds the exit back no more than that."""
    reader = connected(b.port, "reader")
    assert reader.subscribe(1, [("f/#", 0)]).codes == [0]
    stuck = connected(b.port, "stuck")
    assert stuck.subscribe(1, [("f/#", 0)]).codes == [0]
    stuck.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    pub = connected(b.port, "pub")
    # 12 MB each: far more than the socket buffers (the kernel's send buffer alone may
    # take 4 MB, and then nothing would be left for the 2 s to wait for)
    n, payload = 600, b"x" * 20000
    for i in range(n):
        pub.publish("f/%d" % i, payload)
    pub.publish("f/end", b"end", qos=1, pid=1)
    assert pub.expect(PUBACK).rc == 0
    time.sleep(0.3)
    t0 = time.time()
    b.send_signal(signal.SIGTERM)
    got, last = 0, None
    while True:  # the reader, reading from now on, gets what was queued, then the close
        p = reader.recv(3)
        if p is None:
            break
        if p.type == PUBLISH:
            got += 1
        last = p
    # DISCONNECT 0x8B comes after everything queued before it: the whole queue left
    assert reader.eof and last is not None and (last.type, last.rc) == (DISCONNECT, 0x8B), (last, got, time.time() - t0)
    # megabytes, read after the signal: what its connection held (the session's own queue
    # ends with the session at shutdown: there is no persistence)
    assert got >= 150, got
    assert b.proc.wait(5) == 0
    took = time.time() - t0
    assert 1.5 <= took <= 3.5, took  # the stuck client was given its 2 s, no more
    stuck.close()

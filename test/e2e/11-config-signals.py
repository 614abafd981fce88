# SPDX-License-Identifier: MIT
"""Command line, configuration errors, signals (SIGTERM graceful shutdown with 0x8B,
SIGHUP reload), max_connections."""

import os
import signal
import subprocess
import tempfile
import time

import lqtest
from lqtest import conf, may_exit
from mqttraw import DISCONNECT, RECEIVE_MAXIMUM, Client, connected, roundtrip


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
    p = subprocess.Popen([lqtest.BIN, "-p", str(port)], stderr=subprocess.DEVNULL)
    try:
        assert lqtest.wait_port(port)
        roundtrip(port)
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0


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
    --version and -V print the version."""
    p = subprocess.run([lqtest.BIN, "--help"], capture_output=True, timeout=10)
    assert p.returncode == 0 and b"usage: lunamq" in p.stdout and not p.stderr, p
    for opt in ("--version", "-V"):
        p = subprocess.run([lqtest.BIN, opt], capture_output=True, timeout=10)
        assert p.returncode == 0 and p.stdout == b"lunamq 0.1.0\n", p
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
    assert "allow_anonymous" not in b.output()

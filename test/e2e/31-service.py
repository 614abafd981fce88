# SPDX-License-Identifier: MIT
"""Running as a system service (issue 18): lunamq -t (check a file), -d and pid_file,
user (root dropped once the ports are bound and the keys read), the systemd notify
protocol, and the log lines: log_timestamp, log_timestamp_format, connection_messages,
and log_format mosquitto, whose lines are checked against those Debian's mosquitto
writes for the same client actions."""

import atexit
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import lqtest
from lqtest import Broker, conf, free_port, pki_dir, wait_for, wait_port
from mqttraw import PUBACK, PUBLISH, Client, connected, roundtrip

HOST = "127.0.0.1"
MOSQUITTO = "/usr/sbin/mosquitto"
TEST_USER = "lunamq-test"

FILES = tempfile.mkdtemp(prefix="lunamq-e2e-service-")
atexit.register(shutil.rmtree, FILES, True)
PASSWD = os.path.join(FILES, "passwd")
subprocess.run(["mosquitto_passwd", "-c", "-b", PASSWD, "dev", "devpass"], check=True)


def tmpdir():
    d = tempfile.mkdtemp(prefix="t-", dir=FILES)
    return d


def write_conf(d, text, name="lunamq.conf"):
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def run(*args, timeout=30):
    return subprocess.run([lqtest.BIN, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def base_conf(d, port):
    """A listener, anonymous clients, and the admin socket and scripts in d."""
    os.makedirs(os.path.join(d, "scripts"), exist_ok=True)
    return ("listener %d %s\nallow_anonymous true\nscripts_dir %s/scripts\n"
            "admin_socket %s/admin.sock\n" % (port, HOST, d, d))


def gone(pid):
    """The process ended (it may linger as a zombie of a parent that does not reap)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


# ---- lunamq -t ----

def test_check_good_file(_b):
    d, port = tmpdir(), free_port()
    pki = pki_dir()
    path = write_conf(d, base_conf(d, port) +
                      "listener %d %s\ncafile %s/ca.crt\ncertfile %s/server.crt\n"
                      "keyfile %s/server.key\npassword_file %s\n"
                      % (free_port(), HOST, pki, pki, pki, PASSWD))
    p = run("-t", "-c", path)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "%s: configuration OK\n" % path, p.stdout
    assert not os.path.exists(os.path.join(d, "admin.sock"))  # nothing was opened
    assert not wait_port(port, timeout=0.2)


def test_check_tls_material(_b):
    """The listener's and the bridge's TLS files are loaded: each one that does not
    load is an error at its line."""
    d, pki = tmpdir(), pki_dir()
    path = write_conf(d, "listener %d %s\ncafile %s/ca.crt\ncertfile %s/server.crt\n"
                         "keyfile %s/missing.key\n"
                         "connection up\naddress 127.0.0.1:%d\ntopic # out\n"
                         "bridge_cafile %s/missing-ca.crt\n"
                      % (free_port(), HOST, pki, pki, d, free_port(), d))
    p = run("-t", "-c", path)
    assert p.returncode == 3, (p.returncode, p.stdout, p.stderr)
    assert "configuration OK" not in p.stdout
    lines = p.stderr.strip().splitlines()
    assert lines[0] == "%s:4: keyfile %s/missing.key: No such file or directory" % (path, d), \
        lines
    assert lines[1] == "%s:8: cafile %s/missing-ca.crt: No such file or directory" % (path, d), \
        lines
    assert len(lines) == 2, p.stderr


def test_check_lists_every_error(_b):
    """Every error of the file in one run, one per line with FILE:LINE (the
    configuration module reports them all: until it does, only the first is listed)."""
    d = tmpdir()
    path = write_conf(d, "listener %d %s\nbogus_one 1\nmax_keepalive banana\n"
                         "allow_anonymous true\nbogus_two\n" % (free_port(), HOST))
    p = run("-t", "-c", path)
    assert p.returncode == 3
    lines = p.stderr.strip().splitlines()
    for n in (2, 3, 5):
        assert any(l.startswith("%s:%d: " % (path, n)) for l in lines), p.stderr
    assert "configuration OK" not in p.stdout


def test_check_unknown_user(_b):
    if os.geteuid() != 0:
        return  # a user is only looked up when started as root
    d = tmpdir()
    path = write_conf(d, "listener %d %s\nuser lunamq-no-such-user\n" % (free_port(), HOST))
    p = run("-t", "-c", path)
    assert p.returncode == 3 and "user lunamq-no-such-user" in p.stderr, p.stderr


def test_check_needs_a_file(_b):
    p = run("-t")
    assert p.returncode == 3 and "-c FILE" in p.stderr


def test_help_and_version(_b):
    for opt in ("-h", "--help"):
        p = run(opt)
        assert p.returncode == 0 and p.stdout.startswith("usage: lunamq"), p
        assert " -t " in p.stdout and " -d " in p.stdout
    p = run("--version")
    assert p.returncode == 0
    lines = p.stdout.splitlines()
    assert re.match(r"^lunamq \d+\.\d+\.\d+$", lines[0]), lines
    assert any(re.match(r"^libevent \d+\.\d+\.\d+", l) for l in lines), lines
    assert any(re.match(r"^mbedTLS \d+\.\d+\.\d+", l) for l in lines), lines
    assert any(re.match(r"^Lua \d+\.\d+\.\d+", l) for l in lines), lines


# ---- -d and pid_file ----

def test_daemon_with_pid_file(_b):
    d, port = tmpdir(), free_port()
    pidf, log = os.path.join(d, "lunamq.pid"), os.path.join(d, "broker.log")
    path = write_conf(d, base_conf(d, port) + "log_dest file %s\npid_file %s\n" % (log, pidf))
    p = subprocess.Popen([lqtest.BIN, "-d", "-c", path], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    out, err = p.communicate(timeout=30)  # ends: the daemon keeps none of its pipes
    assert p.returncode == 0, err
    # the parent waited until the daemon served
    s = socket.create_connection((HOST, port), timeout=2)
    s.close()
    pid = int(open(pidf).read())
    try:
        assert pid != p.pid
        assert os.getsid(pid) == pid  # its own session, no terminal
        assert os.readlink("/proc/%d/exe" % pid) == os.path.realpath(lqtest.BIN)
        assert os.readlink("/proc/%d/fd/1" % pid) == "/dev/null"
        assert os.readlink("/proc/%d/fd/2" % pid) == "/dev/null"
        roundtrip(port)
    finally:
        os.kill(pid, signal.SIGTERM)
    assert wait_for(lambda: gone(pid), 10)
    assert not os.path.exists(pidf)
    text = open(log).read()
    assert "notice: stopped" in text and "signal 15 received" in text, text


def test_daemon_that_cannot_start_says_so(_b):
    """-d: the exit status and the error are the broker's own (a port taken)."""
    d = tmpdir()
    taken = socket.socket()
    taken.bind((HOST, 0))
    taken.listen()
    port = taken.getsockname()[1]
    pidf = os.path.join(d, "lunamq.pid")
    path = write_conf(d, base_conf(d, port) + "pid_file %s\n" % pidf)
    try:
        p = run("-d", "-c", path)
        assert p.returncode == 1, (p.returncode, p.stderr)
        assert "Address already in use" in p.stderr, p.stderr
        assert not os.path.exists(pidf)
    finally:
        taken.close()


def test_pid_file_without_daemon(_b):
    d, port = tmpdir(), free_port()
    pidf = os.path.join(d, "lunamq.pid")
    with open(pidf, "w") as f:
        f.write("999999\n")  # stale: replaced
    b = Broker(["pid_file " + pidf])
    b.start()
    try:
        assert int(open(pidf).read()) == b.pid
    finally:
        assert b.stop() == 0
    assert not os.path.exists(pidf)


def test_pid_file_not_writable_is_fatal(_b):
    d, port = tmpdir(), free_port()
    pidf = os.path.join(d, "no", "such", "dir", "lunamq.pid")
    path = write_conf(d, base_conf(d, port) + "pid_file %s\n" % pidf)
    p = run("-c", path)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "pid_file %s: No such file or directory" % pidf in p.stderr, p.stderr


# ---- user ----

def status_ids(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return line.split()[1:]
    return None


def tls_client(port, cid, cafile):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile)
    c = Client(port)
    c.sock = ctx.wrap_socket(c.sock, server_hostname="localhost")
    assert c.connect(cid).rc == 0
    return c


def test_user_drop(_b):
    """Started as root with `user`: the process runs as that user; a TLS key only root
    may read was loaded before the drop; persistence (a directory of the user's) works
    across a restart; a reload that cannot read the key keeps the old material and
    says why."""
    if os.geteuid() != 0:
        return
    created = False
    try:
        pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", TEST_USER], check=True, timeout=30)
        created = True
    pw = pwd.getpwnam(TEST_USER)
    b = None
    try:
        d = tmpdir()
        os.chmod(FILES, 0o755)  # the user reaches its persistence directory
        os.chmod(d, 0o755)
        for name in ("ca.crt", "server.crt", "server.key"):
            shutil.copy(os.path.join(pki_dir(), name), d)
        os.chmod(os.path.join(d, "server.key"), 0o600)  # root's alone
        store = os.path.join(d, "store")
        os.mkdir(store)
        os.chown(store, pw.pw_uid, pw.pw_gid)
        b = Broker(["user " + TEST_USER, "persistence true", "persistence_location " + store,
                    "listener {tls_port} 127.0.0.1", "cafile %s/ca.crt" % d,
                    "certfile %s/server.crt" % d, "keyfile %s/server.key" % d])
        os.chmod(b.dir, 0o755)  # its scripts_dir is read after the drop
        b.start()
        assert status_ids(b.pid, "Uid") == [str(pw.pw_uid)] * 4, status_ids(b.pid, "Uid")
        assert status_ids(b.pid, "Gid") == [str(pw.pw_gid)] * 4, status_ids(b.pid, "Gid")
        assert int(status_ids(b.pid, "CapEff")[0], 16) == 0
        assert int(status_ids(b.pid, "CapPrm")[0], 16) == 0
        assert "running as user %s (uid %d" % (TEST_USER, pw.pw_uid) in b.output()
        tls_client(b.tls_port, "tls-1", os.path.join(d, "ca.crt")).close()

        keeper = Client(b.port, version=4)
        assert keeper.connect("keeper", clean=False).rc == 0
        assert keeper.subscribe(1, [("svc/#", 1)]).codes == [1]
        keeper.disconnect()
        keeper.close()
        pub = connected(b.port, "pub")
        pub.publish("svc/1", b"kept", qos=1, pid=1)
        assert pub.expect(PUBACK).pid == 1
        pub.close()
        files = os.listdir(store)
        assert files
        for name in files:  # made after the drop: the user's
            assert os.stat(os.path.join(store, name)).st_uid == pw.pw_uid, name

        b.send_signal(signal.SIGHUP)
        assert b.wait_log("configuration reloaded"), b.output()
        assert re.search(r"reload: listener %d keeps its TLS material: .*keyfile .*server\.key: "
                         r"Permission denied \(running as uid %d\)" % (b.tls_port, pw.pw_uid),
                         b.output()), b.output()
        tls_client(b.tls_port, "tls-2", os.path.join(d, "ca.crt")).close()

        assert b.stop() == 0
        b.restart()
        assert status_ids(b.pid, "Uid")[0] == str(pw.pw_uid)
        keeper = Client(b.port, version=4)
        ca = keeper.connect("keeper", clean=False)
        assert ca.rc == 0 and ca.session_present
        p = keeper.expect(PUBLISH)
        assert p.topic == "svc/1" and p.payload == b"kept"
        keeper.close()
        assert b.stop() == 0
    finally:
        if b:
            b.stop()
            shutil.rmtree(b.dir, ignore_errors=True)
        if created:
            subprocess.run(["userdel", TEST_USER], timeout=30)


def test_user_that_does_not_exist_is_fatal(_b):
    if os.geteuid() != 0:
        return
    d, port = tmpdir(), free_port()
    path = write_conf(d, base_conf(d, port) + "user lunamq-no-such-user\n")
    p = run("-c", path)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "user lunamq-no-such-user: " in p.stderr, p.stderr


@conf("user root")
def test_user_root_stays_root(b):
    assert status_ids(b.pid, "Uid")[0] == str(os.geteuid())
    roundtrip(b.port)


# ---- systemd notify ----

def test_sd_notify(_b):
    d = tmpdir()
    path = os.path.join(d, "notify.sock")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(path)
    rx.settimeout(10)
    b = Broker()
    got = []

    def next_message():
        """The next message that is not a watchdog ping (those are counted)."""
        while True:
            m = rx.recv(4096).decode()
            got.append(m)
            if m != "WATCHDOG=1":
                return m

    try:
        b.start(wait=False, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
        assert next_message() == "READY=1"
        # READY=1 once the listener accepts: it does now
        socket.create_connection((HOST, b.port), timeout=2).close()
        roundtrip(b.port)
        t0 = time.time()
        while time.time() - t0 < 1.0:
            rx.settimeout(1)
            got.append(rx.recv(4096).decode())
        assert got.count("WATCHDOG=1") >= 4, got  # every 100 ms: half of 200 ms
        rx.settimeout(10)
        b.send_signal(signal.SIGHUP)
        m = next_message()
        assert re.match(r"^RELOADING=1\nMONOTONIC_USEC=\d+$", m), m
        usec = int(m.split("=")[-1])
        assert abs(usec / 1e6 - time.monotonic()) < 5  # the same clock as ours
        assert next_message() == "READY=1"
        b.send_signal(signal.SIGTERM)
        assert next_message() == "STOPPING=1"
        assert b.proc.wait(10) == 0
        assert "NOTIFY_SOCKET" not in b.output()  # no warning
    finally:
        b.stop()
        rx.close()
        shutil.rmtree(b.dir, ignore_errors=True)


def test_sd_notify_abstract_socket(_b):
    name = "lunamq-e2e-notify-%d" % os.getpid()
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind("\0" + name)
    rx.settimeout(10)
    b = Broker()
    try:
        b.start(wait=False, env={"NOTIFY_SOCKET": "@" + name})
        assert rx.recv(4096) == b"READY=1"
    finally:
        b.stop()
        rx.close()
        shutil.rmtree(b.dir, ignore_errors=True)


# ---- log lines ----

LEVEL = r"(error|warning|notice|info|debug|subscribe|unsubscribe): "


@conf("log_timestamp false")
def test_log_timestamp_false(b):
    roundtrip(b.port)
    lines = [l for l in b.output().splitlines() if l]
    assert lines and all(re.match("^" + LEVEL, l) for l in lines), lines[:5]


@conf("log_timestamp_format %Y-%m-%d %H:%M:%S")
def test_log_timestamp_format(b):
    roundtrip(b.port)
    lines = [l for l in b.output().splitlines() if l]
    for l in lines:
        assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d " + LEVEL, l), l
    stamp = time.mktime(time.strptime(lines[-1][:19], "%Y-%m-%d %H:%M:%S"))  # local time
    assert abs(stamp - time.time()) < 60


@conf("connection_messages false")
def test_connection_messages_false(b):
    c = connected(b.port, "quiet", version=4)
    c.disconnect()
    c.close()
    lost = connected(b.port, "quiet-lost")
    lost.close()
    Client(b.port, version=3).connect("", expect=False)  # refused: still logged
    assert b.wait_log("connection refused")
    roundtrip(b.port)
    out = b.output()
    for word in ("connected (", "disconnected (", "connection lost", "new connection"):
        assert word not in out, out


def mosquitto_events(port, log_text):
    """The same client actions against a broker on port; returns the lines that log_text()
    must hold (with the clients' own ports), after waiting for each."""
    want = []

    def expect(line, timeout=5.0):
        want.append(line)
        assert wait_for(lambda: line in log_text(), timeout), \
            "missing %r in:\n%s" % (line, log_text()[-3000:])

    c = Client(port, version=4)
    cport = c.sock.getsockname()[1]
    expect("New connection from %s:%d on port %d." % (HOST, cport, port))
    assert c.connect("svc-v311").rc == 0
    expect("New client connected from %s:%d as svc-v311 (p2, c1, k60)." % (HOST, cport))
    c.disconnect()
    expect("Client svc-v311 disconnected.")
    c.close()

    c = Client(port, version=5)
    cport = c.sock.getsockname()[1]
    assert c.connect("svc-v5", clean=False, keepalive=30, username="dev",
                     password=b"devpass").rc == 0
    expect("New client connected from %s:%d as svc-v5 (p5, c0, k30, u'dev')." % (HOST, cport))
    c.close()  # no DISCONNECT
    expect("Client svc-v5 closed its connection.")

    c = Client(port, version=3)
    cport = c.sock.getsockname()[1]
    assert c.connect("svc-v31").rc == 0
    expect("New client connected from %s:%d as svc-v31 (p1, c1, k60)." % (HOST, cport))
    c.close()

    c = Client(port, version=4)
    assert c.connect("svc-bad", username="dev", password=b"wrong").rc != 0
    expect("Client <unknown> disconnected, not authorised.")
    c.close()

    first = connected(port, "svc-take", version=4)
    second = connected(port, "svc-take", version=4)
    expect("Client svc-take already connected, closing old connection.")
    first.close()
    second.close()

    c = Client(port, version=4)
    assert c.connect("svc-idle", keepalive=1).rc == 0
    # mosquitto checks keep alive every few seconds
    expect("Client svc-idle has exceeded timeout, disconnecting.", timeout=10)
    c.close()
    return want


def mosquitto_shaped(text, want):
    """Each wanted line is a whole log line after mosquitto's "UNIXTIME: " prefix."""
    now = time.time()
    for line in want:
        hits = [l for l in text.splitlines() if l.endswith(": " + line)]
        assert hits, line
        for h in hits:
            m = re.match(r"^(\d+): (.*)$", h)
            assert m and m.group(2) == line, h
            assert abs(int(m.group(1)) - now) < 120, h


@conf("log_format mosquitto", "password_file " + PASSWD)
def test_log_format_mosquitto(b):
    """mosquitto's own lines for the same actions, then lunamq's, word for word."""
    if os.path.exists(MOSQUITTO):
        d, port = tmpdir(), free_port()
        log = os.path.join(d, "mosquitto.log")
        path = write_conf(d, "user root\nlistener %d %s\nallow_anonymous true\n"
                             "password_file %s\nlog_type all\nlog_dest stderr\n"
                             % (port, HOST, PASSWD), "mosquitto.conf")
        with open(log, "wb") as f:
            m = subprocess.Popen([MOSQUITTO, "-c", path], stdout=f, stderr=subprocess.STDOUT)
        try:
            assert wait_port(port, proc=m)
            want = mosquitto_events(port, lambda: open(log).read())
        finally:
            m.terminate()
            m.wait(10)
        mosquitto_shaped(open(log).read(), want)
    want = mosquitto_events(b.port, b.output)
    mosquitto_shaped(b.output(), want)
    # lunamq's other lines keep their words, after mosquitto's time
    assert re.search(r"^\d+: notice: listening on ", b.output(), re.M), b.output()[:2000]
    assert "connected (MQTT" not in b.output()

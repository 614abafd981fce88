# SPDX-License-Identifier: MIT
"""Issue 17: bridges in mosquitto's syntax. An edge lunamq forwards topics to a remote
broker (another lunamq, or Debian's mosquitto) and brings others back, with mosquitto's
`connection` blocks. Each test starts its own brokers on free loopback ports and stops
them by PID; the remote is restarted or killed where a test says so."""

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import lqtest
from lqtest import conf
from mqttraw import PUBACK, PUBCOMP, PUBLISH, PUBREC, SESSION_EXPIRY, Client, connected

MOSQUITTO = "/usr/sbin/mosquitto"
SAN = bool(os.environ.get("LUNAMQ_SAN"))
# a remote whose subscribers' sessions survive its restart
REMOTE_PERSISTS = ["persistence true", "persistence_location {dir}/store"]


def ctl(b, *args):
    r = subprocess.run([lqtest.CTL, "-s", b.admin, "--json"] + list(args), capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def finish(b):
    """Stop a broker the test started; under the sanitizers it must exit cleanly."""
    rc = b.stop(timeout=10)
    assert rc in (0, None) or not SAN, "exit %s:\n%s" % (rc, b.output()[-3000:])


def bridge(b, name="cloud"):
    for x in ctl(b, "bridges"):
        if x["name"] == name:
            return x
    raise AssertionError("no bridge %s" % name)


def wait_state(b, state, name="cloud", timeout=10):
    ok = lqtest.wait_for(lambda: bridge(b, name)["state"] == state, timeout, 0.05)
    assert ok, "bridge %s not %s: %s\n%s" % (name, state, bridge(b, name), b.output()[-3000:])


def block(port, *lines, name="cloud"):
    """A connection block as a mosquitto user writes it (fast reconnects for tests)."""
    return ["connection %s" % name, "address 127.0.0.1:%d" % port, "restart_timeout 1"] + list(lines)


class Mosquitto:
    """Debian's mosquitto on a free loopback port, with its own config and log."""

    def __init__(self, lines=(), port=None):
        self.port = port or lqtest.free_port()
        self.dir = tempfile.mkdtemp(prefix="lunamq-mosq-")
        self.conf_path = os.path.join(self.dir, "mosquitto.conf")
        self.log_path = os.path.join(self.dir, "mosquitto.log")
        with open(self.conf_path, "w") as f:
            # as root it would drop to user mosquitto, who cannot write the test's directory
            f.write("user root\nlistener %d 127.0.0.1\nallow_anonymous true\n" % self.port)
            f.write("log_dest file %s\nlog_type all\n" % self.log_path)
            for l in lines:
                f.write(l.replace("{dir}", self.dir) + "\n")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([MOSQUITTO, "-c", self.conf_path], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        assert lqtest.wait_port(self.port, proc=self.proc), "mosquitto did not start:\n" + self.output()
        return self

    def output(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Pair:
    """A remote broker and an edge lunamq whose bridge connects to it."""

    def __init__(self, edge_lines, remote_lines=(), mosquitto=False, edge_conf=(), start_edge=True):
        self.remote = (Mosquitto(remote_lines) if mosquitto else lqtest.Broker(list(remote_lines)))
        self.remote.start()
        self.edge = lqtest.Broker(list(edge_conf) + block(self.remote.port, *edge_lines))
        if start_edge:
            try:
                self.edge.start()
            except BaseException:
                self.remote.stop()
                raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        rc = self.edge.stop(timeout=10)
        rrc = self.remote.stop()
        if isinstance(self.remote, lqtest.Broker) and exc[0] is None:
            assert rrc in (0, None) or not SAN, "remote exit %s:\n%s" % (rrc, self.remote.output())
        if exc[0] is not None:
            print("---- edge log ----\n" + self.edge.output()[-4000:])
            print("---- remote log ----\n" + self.remote.output()[-3000:])
        if exc[0] is None:
            assert rc == 0 or not SAN, "edge exited %s:\n%s" % (rc, self.edge.output()[-3000:])


def drain(c, timeout=0.6):
    """Every PUBLISH until timeout passes quiet, acknowledged: [(topic, payload, retain)]."""
    return recv_n(c, 1 << 30, per_packet=timeout)


def recv_n(c, n, timeout=10.0, per_packet=None):
    """n PUBLISH (acknowledged as their QoS asks, QoS 2 through PUBCOMP); per_packet: stop
    once nothing came for that long."""
    got = []
    end = time.time() + (timeout if per_packet is None else 60)
    while len(got) < n and time.time() < end:
        p = c.recv(per_packet if per_packet is not None else max(end - time.time(), 0.01))
        if p is None:
            break
        if p.type == 6:  # PUBREL
            c.ack(PUBCOMP, p.pid)
            continue
        if p.type != PUBLISH:
            continue
        if p.qos == 1:
            c.ack(PUBACK, p.pid)
        elif p.qos == 2:
            c.ack(PUBREC, p.pid)
        got.append((p.topic, p.payload, p.retain))
    return got


def persistent(port, client_id):
    """A v5 client whose session outlives its connection (an hour)."""
    return connected(port, client_id, clean=False, properties=[(SESSION_EXPIRY, 3600)])


def collect(c, want, timeout=15.0):
    """Receive until every payload of want (ints) came at least once; duplicates are
    fine (QoS 1 after a restart). Returns the set seen."""
    seen = set()
    end = time.time() + timeout
    while not want <= seen and time.time() < end:
        for _, m, _ in recv_n(c, 1, max(end - time.time(), 0.01)):
            seen.add(int(m))
    return seen


def sub(port, client_id, filt, qos=1, version=5, clean=True):
    c = persistent(port, client_id) if not clean else connected(port, client_id, version=version)
    assert c.subscribe(1, [(filt, qos)]).codes[0] == qos
    return c


def pub(port, client_id, items, qos=1, version=5, retain=False):
    """Publish [(topic, payload)] and wait for each acknowledgement."""
    c = connected(port, client_id, version=version)
    for i, (t, p) in enumerate(items):
        c.publish(t, p, qos=qos, pid=i % 60000 + 1, retain=retain)
        if qos == 1:
            assert c.expect(PUBACK).pid == i % 60000 + 1
        elif qos == 2:
            assert c.expect(PUBREC).pid == i % 60000 + 1
            c.ack(6, i % 60000 + 1)
            assert c.expect(PUBCOMP).pid == i % 60000 + 1
    c.close()


# ---- both directions, prefixes, each protocol version, lunamq and mosquitto remotes ----

def _both_directions(mosquitto, proto, version):
    lines = ["bridge_protocol_version %s" % proto,
             "topic sensors/# out 1 site/ plant1/",
             "topic cmd/# in 1 local/ remote/",
             'topic "" out 1 edge/status plant1/edge-status']
    with Pair(lines, mosquitto=mosquitto) as p:
        wait_state(p.edge, "connected")
        assert bridge(p.edge)["protocol"] == version
        r = sub(p.remote.port, "r-sub", "plant1/#")
        e = sub(p.edge.port, "e-sub", "local/#")
        pub(p.edge.port, "e-pub", [("site/sensors/t1", b"21.5"), ("site/other", b"x"),
                                   ("edge/status", b"up")])
        got = recv_n(r, 2, 5)
        assert sorted((t, m) for t, m, _ in got) == [(b"plant1/edge-status".decode(), b"up"),
                                                    ("plant1/sensors/t1", b"21.5")], got
        r.expect_none(0.3)  # site/other matches no topic line
        # the way back: the remote prefix goes, the local one comes
        time.sleep(0.3)  # the bridge's SUBSCRIBE reached the remote with CONNACK
        pub(p.remote.port, "r-pub", [("remote/cmd/reboot", b"now"), ("cmd/reboot", b"no")])
        got = recv_n(e, 1, 5)
        assert got == [("local/cmd/reboot", b"now", False)], got
        e.expect_none(0.3)
        info = bridge(p.edge)
        assert info["messages_out"] >= 2 and info["messages_in"] >= 1, info


def test_lunamq_remote_v5_both_directions_with_prefixes(_b):
    _both_directions(False, "mqttv50", 5)


def test_lunamq_remote_v311_both_directions_with_prefixes(_b):
    _both_directions(False, "mqttv311", 4)


def test_lunamq_remote_v31_both_directions_with_prefixes(_b):
    _both_directions(False, "mqttv31", 3)


def test_mosquitto_remote_v5_both_directions_with_prefixes(_b):
    _both_directions(True, "mqttv50", 5)


def test_mosquitto_remote_v311_both_directions_with_prefixes(_b):
    _both_directions(True, "mqttv311", 4)


def test_mosquitto_remote_v31_both_directions_with_prefixes(_b):
    _both_directions(True, "mqttv31", 3)


# ---- loops ----

def _no_loop(mosquitto, proto):
    with Pair(["bridge_protocol_version %s" % proto, "topic # both 1"], mosquitto=mosquitto) as p:
        wait_state(p.edge, "connected")
        time.sleep(0.3)
        e = sub(p.edge.port, "e-sub", "t/#")
        r = sub(p.remote.port, "r-sub", "t/#")
        pub(p.edge.port, "e-pub", [("t/from-edge", b"1")])
        pub(p.remote.port, "r-pub", [("t/from-remote", b"2")])
        ge, gr = drain(e, 0.6), drain(r, 0.6)
        assert sorted(ge) == [("t/from-edge", b"1", False), ("t/from-remote", b"2", False)], ge
        assert sorted(gr) == [("t/from-edge", b"1", False), ("t/from-remote", b"2", False)], gr
        info = bridge(p.edge)
        assert info["messages_out"] == 1 and info["messages_in"] == 1, info


def test_no_loop_topic_hash_both_v5_lunamq(_b):
    _no_loop(False, "mqttv50")


def test_no_loop_topic_hash_both_v311_try_private_lunamq(_b):
    """lunamq takes try_private's protocol level (0x84) as a bridge: No Local for it."""
    _no_loop(False, "mqttv311")


def test_no_loop_topic_hash_both_v311_mosquitto(_b):
    _no_loop(True, "mqttv311")


def test_no_loop_topic_hash_both_v5_mosquitto(_b):
    _no_loop(True, "mqttv50")


def test_mosquitto_bridges_into_lunamq_try_private(b):
    """mosquitto's own bridge, its defaults (mqttv311, try_private true), into lunamq."""
    m = Mosquitto(["connection edge", "address 127.0.0.1:%d" % b.port, "topic # both 1",
                   "restart_timeout 1"])
    m.start()
    try:
        assert lqtest.wait_for(lambda: "connected (MQTT 3.1.1, a bridge (try_private)" in
                               b.output(), 10), b.output()[-2000:] + m.output()[-2000:]
        time.sleep(0.5)  # its SUBSCRIBE follows CONNACK
        lm = sub(b.port, "l-sub", "t/#")
        mm = sub(m.port, "m-sub", "t/#")
        pub(b.port, "l-pub", [("t/l", b"1")])
        pub(m.port, "m-pub", [("t/m", b"2")])
        gl, gm = drain(lm, 1.0), drain(mm, 1.0)
        assert sorted(gl) == [("t/l", b"1", False), ("t/m", b"2", False)], gl
        assert sorted(gm) == [("t/l", b"1", False), ("t/m", b"2", False)], gm
    finally:
        m.stop()


# ---- nothing lost ----

def _remote_restart(qos, mosquitto):
    remote_lines = (["persistence true", "persistence_location {dir}/"] if mosquitto
                    else ["persistence true", "persistence_location {dir}/store"])
    with Pair(["bridge_protocol_version mqttv50", "topic data/# out %d" % qos],
              remote_lines=remote_lines, mosquitto=mosquitto) as p:
        wait_state(p.edge, "connected")
        r = sub(p.remote.port, "r-sub", "data/#", qos=qos, clean=False)
        pub(p.edge.port, "e-pub", [("data/x", b"%d" % i) for i in range(100)], qos=qos)
        seen = collect(r, set(range(100)), 10)
        r.close()
        p.remote.stop()  # the remote goes; the edge queues
        pub(p.edge.port, "e-pub", [("data/x", b"%d" % i) for i in range(100, 200)], qos=qos)
        assert bridge(p.edge)["waiting"] == 100
        p.remote.start()
        r = persistent(p.remote.port, "r-sub")
        pub(p.edge.port, "e-pub", [("data/x", b"%d" % i) for i in range(200, 300)], qos=qos)
        seen |= collect(r, set(range(100, 300)), 20)
        assert seen == set(range(300)), "lost: %s" % sorted(set(range(300)) - seen)


def test_qos1_across_remote_restart_nothing_lost_lunamq(_b):
    _remote_restart(1, False)


def test_qos2_across_remote_restart_nothing_lost_lunamq(_b):
    _remote_restart(2, False)


def test_qos1_across_remote_restart_nothing_lost_mosquitto(_b):
    _remote_restart(1, True)


def test_queued_messages_survive_edge_restart_with_persistence(_b):
    """local_cleansession false (the default): the bridge's queue is a persistent session."""
    with Pair(["topic data/# out 1"], edge_conf=["persistence true",
                                                 "persistence_location {dir}/store"],
              remote_lines=REMOTE_PERSISTS) as p:
        wait_state(p.edge, "connected")
        r = sub(p.remote.port, "r-sub", "data/#", clean=False)
        r.close()
        p.remote.stop()
        pub(p.edge.port, "e-pub", [("data/x", b"%d" % i) for i in range(50)])
        assert bridge(p.edge)["waiting"] == 50
        assert p.edge.stop() == 0
        p.edge.restart()
        assert bridge(p.edge)["waiting"] == 50
        p.remote.start()
        r = persistent(p.remote.port, "r-sub")
        got = recv_n(r, 50, 15)
        assert sorted(int(m) for _, m, _ in got) == list(range(50))


@conf()
def test_queue_full_holds_publishers_never_acks_and_drops(_b):
    """Over max_queued_messages while the remote is away: PUBACKs are withheld, not sent
    for messages then dropped; once the remote is back everything arrives and is acked."""
    with Pair(["topic data/# out 1"], edge_conf=["max_queued_messages 10"],
              remote_lines=REMOTE_PERSISTS) as p:
        wait_state(p.edge, "connected")
        r = sub(p.remote.port, "r-sub", "data/#", clean=False)
        r.close()
        p.remote.stop()
        wait_state(p.edge, "waiting")
        c = connected(p.edge.port, "e-pub")
        for i in range(20):
            c.publish("data/x", b"%d" % i, qos=1, pid=i + 1)
        acks = []
        while True:
            a = c.recv(1.0)
            if a is None:
                break
            acks.append(a.pid)
        assert len(acks) < 20, "acknowledged past the bound: %s" % acks
        p.remote.start()
        r = persistent(p.remote.port, "r-sub")
        got = recv_n(r, 20, 15)
        while len(acks) < 20:
            a = c.recv(5.0)
            assert a is not None, "acks %s" % acks
            acks.append(a.pid)
        assert sorted(acks) == list(range(1, 21))
        assert sorted(int(m) for _, m, _ in got) == list(range(20))


# ---- hooks ----

def test_hooks_filter_incoming_and_outgoing_sees_rewrites(_b):
    with Pair(["topic out/# out 1", "topic cmd/# in 1"]) as p:
        lqtest.install_hook(p.edge, "10-filter.lua", """
return {topics = {"cmd/#"}, on_publish = function(m)
  if m.payload == "drop" then return nil end
  return m
end}""")
        lqtest.install_hook(p.edge, "20-rewrite.lua", """
return {topics = {"raw/#"}, on_publish = function(m)
  m.topic = "out/" .. m.topic:sub(5)
  return m
end}""")
        wait_state(p.edge, "connected")
        time.sleep(0.3)
        e = sub(p.edge.port, "e-sub", "cmd/#")
        r = sub(p.remote.port, "r-sub", "out/#")
        pub(p.remote.port, "r-pub", [("cmd/a", b"drop"), ("cmd/a", b"keep")])
        assert drain(e, 1.0) == [("cmd/a", b"keep", False)]
        pub(p.edge.port, "e-pub", [("raw/t", b"v")])
        assert drain(r, 1.0) == [("out/t", b"v", False)]


# ---- TLS ----

def test_tls_with_client_certificate(_b):
    pki = lqtest.pki_dir()
    remote = ["listener {tls_port} 127.0.0.1", "cafile {pki}/ca.crt", "certfile {pki}/server.crt",
              "keyfile {pki}/server.key", "require_certificate true"]
    r = lqtest.Broker(remote)
    r.start()
    try:
        e = lqtest.Broker(["connection cloud", "address 127.0.0.1:%d" % r.tls_port,
                           "restart_timeout 1", "bridge_cafile %s/ca.crt" % pki,
                           "bridge_certfile %s/dev1.crt" % pki, "bridge_keyfile %s/dev1.key" % pki,
                           "topic t/# both 1",
                           "connection wrongca", "address 127.0.0.1:%d" % r.tls_port,
                           "restart_timeout 1", "bridge_cafile %s/other-ca.crt" % pki,
                           "bridge_certfile %s/dev2.crt" % pki, "bridge_keyfile %s/dev2.key" % pki,
                           "topic w/# out 1",
                           "connection nocert", "address 127.0.0.1:%d" % r.tls_port,
                           "restart_timeout 1", "bridge_cafile %s/ca.crt" % pki, "topic n/# out 1"])
        e.start()
        try:
            wait_state(e, "connected")
            info = bridge(e)
            assert info["tls"] is True
            rs = sub(r.port, "r-sub", "t/#")
            pub(e.port, "e-pub", [("t/x", b"over tls")])
            assert recv_n(rs, 1, 5) == [("t/x", b"over tls", False)]
            assert "over TLS" in e.output()
            assert lqtest.wait_for(lambda: "verif" in bridge(e, "wrongca")["last_error"], 5), \
                bridge(e, "wrongca")
            assert bridge(e, "wrongca")["state"] != "connected"
            assert lqtest.wait_for(lambda: bridge(e, "nocert")["last_error"] != "", 5)
            assert bridge(e, "nocert")["state"] != "connected"
        finally:
            finish(e)
    finally:
        finish(r)


# ---- credentials, backoff ----

def test_remote_refuses_credentials_logged_backoff_then_reload_fixes(_b):
    r = lqtest.Broker(["allow_anonymous false", "password_file {dir}/passwd"])
    subprocess.run([lqtest.CTL, "passwd", "-c", "-b", os.path.join(r.dir, "passwd"), "edge", "right"],
                   check=True)
    r.start()
    try:
        e = lqtest.Broker(["connection cloud", "address 127.0.0.1:%d" % r.port,
                           "restart_timeout 1 4", "remote_username edge", "remote_password wrong",
                           "topic t/# out 1"])
        e.start()
        try:
            assert lqtest.wait_for(lambda: bridge(e)["connect_failures"] >= 2, 10)
            info = bridge(e)
            assert "refused by the remote" in info["last_error"], info
            assert "refused by the remote" in e.output()
            t0 = time.time()
            n0 = bridge(e)["connect_failures"]
            time.sleep(4)
            n = bridge(e)["connect_failures"] - n0
            assert 1 <= n <= 4, "attempts in 4 s with backoff 1..4 s: %d" % n
            with open(e.conf_path) as f:
                text = f.read().replace("remote_password wrong", "remote_password right")
            with open(e.conf_path, "w") as f:
                f.write(text)
            e.send_signal(signal.SIGHUP)
            wait_state(e, "connected")
            assert time.time() - t0 < 30
        finally:
            finish(e)
    finally:
        finish(r)


# ---- reload ----

def test_reload_keeps_unchanged_restarts_changed_adds_and_removes(_b):
    r = lqtest.Broker()
    r.start()
    try:
        lines = block(r.port, "topic a/# out 1", name="keep") + \
            block(r.port, "topic b/# out 1", name="change") + \
            block(r.port, "topic c/# out 1", name="gone")
        e = lqtest.Broker(lines)
        e.start()
        try:
            for n in ("keep", "change", "gone"):
                wait_state(e, "connected", n)
            new = block(r.port, "topic a/# out 1", name="keep") + \
                block(r.port, "topic b/# out 1 x/ y/", name="change") + \
                block(r.port, "topic d/# out 1", name="new")
            text = open(e.conf_path).read()
            head = text[:text.index("connection keep")]
            with open(e.conf_path, "w") as f:
                f.write(head + "\n".join(new) + "\n")
            e.send_signal(signal.SIGHUP)
            assert e.wait_log("configuration reloaded", 5)
            wait_state(e, "connected", "new")
            wait_state(e, "connected", "change")
            names = [x["name"] for x in ctl(e, "bridges")]
            assert sorted(names) == ["change", "keep", "new"], names
            assert bridge(e, "keep")["connects"] == 1  # never dropped
            rs = sub(r.port, "r-sub", "#")
            pub(e.port, "e-pub", [("a/1", b"k"), ("x/b/1", b"c"), ("b/1", b"old"), ("c/1", b"g"),
                                  ("d/1", b"n")])
            got = sorted(t for t, _, _ in drain(rs, 1.0) if not t.startswith("$"))
            assert got == ["a/1", "d/1", "y/b/1"], got
        finally:
            finish(e)
    finally:
        finish(r)


# ---- start types, addresses ----

def test_start_type_lazy_connects_at_threshold_and_stops_when_idle(_b):
    with Pair(["start_type lazy", "threshold 5", "idle_timeout 1", "topic t/# out 1"]) as p:
        time.sleep(1.2)
        assert bridge(p.edge)["state"] == "idle"
        rs = sub(p.remote.port, "r-sub", "t/#", clean=False)
        rs.close()
        pub(p.edge.port, "e-pub", [("t/x", b"%d" % i) for i in range(3)])
        time.sleep(1.2)
        assert bridge(p.edge)["state"] == "idle"
        pub(p.edge.port, "e-pub", [("t/x", b"%d" % i) for i in range(3, 6)])
        wait_state(p.edge, "connected", timeout=5)
        rs = persistent(p.remote.port, "r-sub")
        assert sorted(int(m) for _, m, _ in recv_n(rs, 6, 5)) == list(range(6))
        wait_state(p.edge, "idle", timeout=8)


def test_start_type_once_does_not_retry(_b):
    r = lqtest.Broker()
    e = lqtest.Broker(block(r.port, "start_type once", "topic t/# out 1"))
    e.start()  # the remote is not there
    try:
        wait_state(e, "stopped", timeout=5)
        r.start()
        time.sleep(1.5)  # restart_timeout 1: it would have tried by now
        assert bridge(e)["state"] == "stopped" and bridge(e)["connects"] == 0
    finally:
        finish(e)
        finish(r)


def test_second_address_then_back_to_first(_b):
    """round_robin false: the first address is the main one; on a secondary the bridge
    keeps probing the first and moves back when it answers."""
    first, second = lqtest.Broker(), lqtest.Broker()
    second.start()
    e = lqtest.Broker(["connection cloud",
                       "address 127.0.0.1:%d 127.0.0.1:%d" % (first.port, second.port),
                       "restart_timeout 1", "topic t/# out 1"])
    e.start()
    try:
        wait_state(e, "connected", timeout=10)
        assert bridge(e)["address"] == "127.0.0.1:%d" % second.port
        first.start()
        assert lqtest.wait_for(lambda: bridge(e)["address"] == "127.0.0.1:%d" % first.port and
                               bridge(e)["state"] == "connected", 15), bridge(e)
        rs = sub(first.port, "r-sub", "t/#")
        pub(e.port, "e-pub", [("t/x", b"main")])
        assert recv_n(rs, 1, 5) == [("t/x", b"main", False)]
    finally:
        finish(e)
        finish(first)
        finish(second)


def test_host_name_is_resolved(_b):
    r = lqtest.Broker()
    r.start()
    e = lqtest.Broker(["connection cloud", "address localhost:%d" % r.port, "restart_timeout 1",
                       "topic t/# out 1"])
    e.start()
    try:
        wait_state(e, "connected")
        assert bridge(e)["address"] == "localhost:%d" % r.port
    finally:
        finish(e)
        finish(r)


# ---- notifications, admin ----

def test_notifications_local_and_remote_with_will(_b):
    with Pair(["remote_clientid edge1", "topic t/# out 1"], start_edge=False) as p:
        rs = sub(p.remote.port, "r-sub", "$SYS/broker/connection/#")
        p.edge.start()
        es = sub(p.edge.port, "e-sub", "$SYS/broker/connection/#")
        wait_state(p.edge, "connected")
        topic = "$SYS/broker/connection/edge1/state"
        assert (topic, b"1", True) in drain(es, 0.6)  # retained: the subscriber came later
        assert (topic, b"1") in [x[:2] for x in recv_n(rs, 1, 3)]
        p.edge.kill()  # no goodbye: the remote's copy of the will says 0
        assert recv_n(rs, 1, 5)[-1][:2] == (topic, b"0")
        p.edge.restart()


def test_ctl_stats_and_metrics(_b):
    port = lqtest.free_port()
    with Pair(["topic t/# out 1"], edge_conf=["metrics_listener %d 127.0.0.1" % port]) as p:
        wait_state(p.edge, "connected")
        pub(p.edge.port, "e-pub", [("t/x", b"1")])
        info = bridge(p.edge)
        for k in ("state", "address", "connected_since", "messages_out", "messages_in", "waiting",
                  "reconnects", "last_error"):
            assert k in info, info
        assert info["connected_since"] > 0
        st = ctl(p.edge, "stats")
        assert st["bridges"] == 1 and st["bridges_connected"] == 1
        assert st["bridge_list"][0]["name"] == "cloud"
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()
        assert 'lunamq_bridge_connected{bridge="cloud"} 1' in text, text[-2000:]
        assert 'lunamq_bridge_messages_out_total{bridge="cloud"}' in text
        txt = subprocess.run([lqtest.CTL, "-s", p.edge.admin, "bridges"], capture_output=True,
                             text=True, timeout=10).stdout
        assert "cloud" in txt and "connected" in txt, txt


def test_unsupported_bridge_option_refused_with_line(_b):
    b = lqtest.Broker(["connection cloud", "address 127.0.0.1:1", "bridge_psk 0102",
                       "topic t/# out"])
    assert not b.start_or_exit()
    assert b.proc.returncode == 3
    assert "lunamq.conf:5: bridge_psk" in b.output() or "bridge_psk" in b.output(), b.output()


def test_client_cannot_take_the_bridges_local_id(_b):
    with Pair(["local_clientid edge-bridge", "topic t/# out 1"]) as p:
        wait_state(p.edge, "connected")
        c = Client(p.edge.port)
        ca = c.connect("edge-bridge", expect=True)
        assert ca.rc == 0x85
        wait_state(p.edge, "connected")


def test_qos2_across_remote_restart_nothing_lost_mosquitto(_b):
    _remote_restart(2, True)


def test_same_file_runs_in_mosquitto_and_lunamq(_b):
    """One mosquitto.conf with a bridge block, as a mosquitto operator has it, run unchanged
    by mosquitto and then by lunamq (in the file's directory: lunamq's relative defaults
    land there): the remote sees the same messages from both."""
    r = lqtest.Broker()
    r.start()
    work = tempfile.mkdtemp(prefix="lunamq-same-")
    port = lqtest.free_port()
    path = os.path.join(work, "edge.conf")
    with open(path, "w") as f:
        f.write("""# edge gateway
listener %d 127.0.0.1
allow_anonymous true

connection cloud
address 127.0.0.1:%d
bridge_protocol_version mqttv311
remote_clientid edge-1
cleansession false
keepalive_interval 30
restart_timeout 1 5
notifications true
try_private true
topic sensors/# out 1 "" site1/
topic cmd/# in 1
""" % (port, r.port))
    try:
        rs = connected(r.port, "r-sub")
        assert rs.subscribe(1, [("#", 1), ("$SYS/broker/connection/#", 1)]).codes == [1, 1]
        for binary in (MOSQUITTO, os.path.abspath(lqtest.BIN)):
            proc = subprocess.Popen([binary, "-c", path], cwd=work, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            try:
                assert lqtest.wait_port(port, proc=proc), binary
                state = "$SYS/broker/connection/edge-1/state"
                assert (state, b"1") in [x[:2] for x in recv_n(rs, 1, 5)], binary
                time.sleep(0.3)  # its SUBSCRIBE for cmd/# reached the remote
                es = sub(port, "e-sub", "cmd/#")
                pub(port, "e-pub", [("sensors/t", binary.encode())])
                assert recv_n(rs, 1, 5) == [("site1/sensors/t", binary.encode(), False)], binary
                pub(r.port, "r-pub", [("cmd/go", b"x")])
                got = [x for x in recv_n(rs, 1, 2)]  # the remote's own subscriber sees it too
                assert got == [("cmd/go", b"x", False)], got
                assert recv_n(es, 1, 5) == [("cmd/go", b"x", False)], binary
                es.close()
            finally:
                proc.terminate()
                proc.wait(10)
            if binary != MOSQUITTO:  # a "0" before its DISCONNECT (the will is not sent then)
                assert (state, b"0") in [x[:2] for x in recv_n(rs, 1, 5)], binary
            else:
                recv_n(rs, 1, 1)
    finally:
        finish(r)


@lqtest.serial
def test_remote_flood_leaves_local_clients_served(_b):
    """The remote floods the bridge's `in` topic (QoS 0 and 1, as fast as it can) into an
    edge subscriber that reads nothing: the edge's other clients are served meanwhile, and
    the edge's memory stays bounded (the bridge is held like any publisher)."""
    import threading
    from mqttraw import Probe
    with Pair(["bridge_protocol_version mqttv50", "topic flood/# in 1"],
              edge_conf=["max_queued_messages 200", "max_queued_bytes 1000000"]) as p:
        wait_state(p.edge, "connected")
        time.sleep(0.3)
        deaf = Client(p.edge.port)
        deaf.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        deaf.connect("deaf")
        deaf.subscribe(1, [("flood/#", 1)], expect=False)
        stop = threading.Event()

        def flood(qos):
            c = connected(p.remote.port, "flood%d" % qos)
            i = 0
            try:
                while not stop.is_set():
                    c.publish("flood/x", b"y" * 1000, qos=qos, pid=i % 60000 + 1)
                    i += 1
                    if qos and i % 20 == 0:  # within the remote's Receive Maximum
                        while c.recv(0.001 if i % 1000 else 0.05) is not None:
                            pass
            except OSError:  # the remote cut it off: the flood is over
                pass
            c.close()
        threads = [threading.Thread(target=flood, args=(q,), daemon=True) for q in (0, 1)]
        with Probe(p.edge.port) as probe:
            for t in threads:
                t.start()
            time.sleep(2)
            stop.set()
            for t in threads:
                t.join(10)
        probe.check(0.5)
        # (12 MB here; under ASan freed memory waits in its quarantine, up to 256 MB, and
        # counts in RSS: 756a777 measured 211-240 MB there too)
        limit = 200 * 1024 + (256 * 1024 if os.environ.get("LUNAMQ_SAN") else 0)
        assert lqtest.rss_kb(p.edge.pid) < limit, lqtest.rss_kb(p.edge.pid)
        deaf.close()
        assert bridge(p.edge)["messages_in"] > 0


def test_hostile_remote_malformed_and_wrong_packets(_b):
    """A "remote" that answers CONNECT with garbage, or with a SUBSCRIBE: the link is
    dropped with the reason as last error, retried with backoff, and the edge serves on."""
    import threading
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    answers = [b"\x20\x02\x00\x00" + b"\x30\xff\xff\xff\xff\x7f",  # CONNACK, then a bad length
               b"\x82\x05\x00\x01\x00\x00\x00",  # a SUBSCRIBE instead of CONNACK
               b"\x20\x02\x00\x05"]  # CONNACK: not authorised (v3 code 5)
    done = threading.Event()

    def serve():
        srv.settimeout(0.2)
        k = 0
        while not done.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                continue
            c.settimeout(2)
            try:
                c.recv(4096)  # its CONNECT
                c.sendall(answers[k % len(answers)])
                k += 1
                time.sleep(0.3)
            except OSError:
                pass
            c.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    e = lqtest.Broker(["connection cloud", "address 127.0.0.1:%d" % port, "restart_timeout 1",
                       "try_private false", "topic t/# out 1"])
    e.start()
    try:
        errors = set()
        end = time.time() + 12
        while time.time() < end and len(errors) < 3:
            errors.add(bridge(e)["last_error"])
            time.sleep(0.05)
        text = " | ".join(sorted(errors))
        assert "malformed" in text, text
        assert "not CONNACK" in text, text
        assert "refused by the remote: CONNACK code 5" in text, text
        assert bridge(e)["state"] != "connected"
        from mqttraw import roundtrip
        roundtrip(e.port)
    finally:
        done.set()
        t.join(5)
        srv.close()
        finish(e)


def test_outgoing_retain_and_retained_messages(_b):
    """Retained messages keep their flag through the bridge (Retain As Published), so the
    remote stores them; bridge_outgoing_retain false clears it (for remotes without them)."""
    for keep in (True, False):
        lines = ["bridge_protocol_version mqttv50", "topic r/# out 1"]
        if not keep:
            lines.append("bridge_outgoing_retain false")
        with Pair(lines) as p:
            wait_state(p.edge, "connected")
            pub(p.edge.port, "e-pub", [("r/state", b"on")], retain=True)
            time.sleep(0.3)
            late = sub(p.remote.port, "late", "r/#")  # after the fact: only a retained one
            got = drain(late, 0.5)
            assert got == ([("r/state", b"on", True)] if keep else []), (keep, got)


def test_bridge_max_packet_size_and_v5_session_options(_b):
    """bridge_max_packet_size: what would be larger is not sent (counted); the MQTT 5
    options reach the remote in CONNECT."""
    with Pair(["bridge_protocol_version mqttv50", "bridge_max_packet_size 200",
               "bridge_session_expiry_interval 120", "bridge_receive_maximum 7",
               "remote_clientid edge-x", "topic big/# out 1"]) as p:
        wait_state(p.edge, "connected")
        assert p.remote.wait_log('client "edge-x"', 5)
        assert "expiry 120" in p.remote.output(), p.remote.output()[-1500:]
        rs = sub(p.remote.port, "r-sub", "big/#")
        pub(p.edge.port, "e-pub", [("big/a", b"x" * 500), ("big/b", b"small")])
        assert drain(rs, 0.6) == [("big/b", b"small", False)]
        assert ctl(p.edge, "stats")["dropped_oversize"] >= 1


def test_local_cleansession_true_drops_the_queue_on_restart(_b):
    """local_cleansession true: the bridge's local session is not kept (mosquitto's
    meaning), so what waited for the remote is gone after a restart."""
    with Pair(["topic data/# out 1", "local_cleansession true"],
              edge_conf=["persistence true", "persistence_location {dir}/store"]) as p:
        wait_state(p.edge, "connected")
        p.remote.stop()
        pub(p.edge.port, "e-pub", [("data/x", b"%d" % i) for i in range(5)])
        assert bridge(p.edge)["waiting"] == 5
        assert p.edge.stop() == 0
        p.edge.restart()
        assert bridge(p.edge)["waiting"] == 0
        p.remote.start()

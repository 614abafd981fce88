# SPDX-License-Identifier: MIT
"""Persistence (issue 13): "a PUBACK/PUBREC means the message is durable". Retained
messages, persistent sessions (subscriptions and their options, queued and in-flight
QoS 1/2, the QoS 2 receive state, wills with delay, wall-clock message expiry) survive a
graceful restart (SIGTERM) and a crash (SIGKILL); clean sessions and QoS 0 are never
written; the directory lock; the options; disk errors (RLIMIT_FSIZE) hold acks and the
broker recovers; crash points (LUNAMQ_CRASH_AT) and a forced snapshot.
Each test uses its own persistence directory, {dir}/store, and restarts its broker on
the same port with the same config (lqtest.Broker.restart)."""

import glob
import json
import os
import resource
import shutil
import signal
import subprocess
import time

from lqtest import CTL, Broker, conf, may_exit, wait_for
from mqttraw import (CONTENT_TYPE, MESSAGE_EXPIRY, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL,
                     SESSION_EXPIRY, SUBSCRIPTION_ID, WILL_DELAY, Client, connected)

PCONF = ("persistence true", "persistence_location {dir}/store")
KEEP = [(SESSION_EXPIRY, 600)]  # a session that outlives its connection


def store_dir(b):
    return os.path.join(b.dir, "store")


def ctl(b, *args, check=True):
    r = subprocess.run([CTL, "-s", b.admin, *args], capture_output=True, text=True, timeout=10)
    if check:
        assert r.returncode == 0, "lunamq-ctl %s: %s%s" % (" ".join(args), r.stdout, r.stderr)
    return r


def stats(b):
    return json.loads(ctl(b, "--json", "stats").stdout)


def journal_records(b):
    st = stats(b)
    assert "persistence_journal_records" in st, "no persistence_journal_records in stats: %s" % st
    return st["persistence_journal_records"]


def restart(b, how):
    """Stop the broker by SIGTERM ("term", must exit 0) or SIGKILL ("kill"), start it again
    on the same port and directory."""
    if how == "kill":
        b.kill()
    else:
        rc = b.stop()
        assert rc == 0, "graceful stop exited %s:\n%s" % (rc, b.output()[-3000:])
    b.restart()


def pub1(c, topic, payload, pid, retain=False, properties=()):
    """QoS 1 publish, PUBACK with a success code."""
    c.publish(topic, payload, qos=1, pid=pid, retain=retain, properties=properties)
    a = c.expect(PUBACK, 5)
    assert a.pid == pid and a.rc < 0x80, "PUBACK %r" % (a,)


def pub2(c, topic, payload, pid, retain=False):
    """QoS 2 publish, the whole flow, success codes."""
    c.publish(topic, payload, qos=2, pid=pid, retain=retain)
    r = c.expect(PUBREC, 5)
    assert r.pid == pid and r.rc < 0x80, "PUBREC %r" % (r,)
    c.ack(PUBREL, pid)
    p = c.expect(PUBCOMP, 5)
    assert p.pid == pid and p.rc == 0, "PUBCOMP %r" % (p,)


def take(c, timeout=5):
    """Next PUBLISH in arrival order, acknowledged as its QoS asks. PUBRELs that arrive
    meanwhile get their PUBCOMP: a broker may send the next PUBLISH before a PUBREL."""
    q = c.__dict__.setdefault("_pubs", [])
    end = time.time() + timeout
    while not q:
        p = c.recv(max(0.01, end - time.time()))
        assert p is not None, "no PUBLISH in %.1f s%s" % (timeout, " (closed)" if c.eof else "")
        handle(c, p)
    return q.pop(0)


def handle(c, p):
    """A packet to a subscribing client: PUBLISH kept for take() and acknowledged (QoS 2:
    PUBREC, its PUBREL then owed), PUBREL answered with PUBCOMP."""
    q = c.__dict__.setdefault("_pubs", [])
    owed = c.__dict__.setdefault("_rel", set())
    if p.type == PUBLISH:
        q.append(p)
        if p.qos == 1:
            c.ack(PUBACK, p.pid)
        elif p.qos == 2:
            c.ack(PUBREC, p.pid)
            owed.add(p.pid)
    elif p.type == PUBREL:
        c.ack(PUBCOMP, p.pid)
        owed.discard(p.pid)
    else:
        raise AssertionError("unexpected %r" % (p,))


def quiet(c, timeout=0.5):
    """Nothing more is delivered within timeout, every QoS 2 delivery got its PUBREL, and
    the connection is open and served."""
    end = time.time() + timeout
    while time.time() < end:
        p = c.recv(max(0.01, end - time.time()))
        if p is None:
            break
        handle(c, p)
    extra = c.__dict__.get("_pubs", [])
    assert not extra, "unexpected %s" % [(m.topic, m.payload) for m in extra]
    assert not c.eof, "the broker closed the connection"
    assert not c.__dict__.get("_rel"), "no PUBREL for %s" % c._rel
    c.ping()


def retained(port, filt, settle=0.5, client_id="ret-check"):
    """{topic: PUBLISH} of the retained messages matching filt, for a fresh subscriber."""
    c = connected(port, client_id)
    c.subscribe(1, [(filt, 1)])
    out = {}
    while True:
        p = c.recv(settle)
        if p is None:
            break
        if p.type == PUBLISH:
            assert p.retain, "a live message while reading retained: %s" % p.topic
            out[p.topic] = p
            if p.qos:
                c.ack(PUBACK, p.pid)
    c.close()
    return out


def resume(b, client_id, version=5, properties=KEEP):
    """Reconnect a persistent session: CONNACK session present = 1."""
    c = Client(b.port, version)
    ca = c.connect(client_id, clean=False, properties=properties if version == 5 else ())
    assert ca.rc == 0, "CONNACK 0x%02x" % ca.rc
    assert ca.session_present, "session %s lost (session present 0)" % client_id
    return c


# ---- options ----

@conf("persistence_location {dir}/store")
def test_default_off_writes_nothing(b):
    """issue 13: persistence defaults to false, as mosquitto: with only persistence_location
    set, retained messages and persistent sessions write nothing into the directory."""
    c = connected(b.port, "sleeper", clean=False, properties=KEEP)
    c.subscribe(1, [("off/#", 2)])
    c.disconnect()
    c.close()
    p = connected(b.port, "pub")
    pub1(p, "off/r", b"kept", 1, retain=True)
    pub2(p, "off/q", b"queued", 2)
    time.sleep(0.3)
    d = store_dir(b)
    assert not os.path.exists(d) or os.listdir(d) == [], os.listdir(d)
    restart(b, "term")
    assert not os.path.exists(d) or os.listdir(d) == [], os.listdir(d)
    assert retained(b.port, "off/#") == {}  # not persisted: gone, as documented


@conf(*PCONF, "persistence_file mosquitto.db")
def test_persistence_file_accepted_with_notice(b):
    """issue 13: persistence_file is accepted (mosquitto configs keep working) with a log
    notice that lunamq uses a directory; no such file is made."""
    out = b.output()
    lines = [l for l in out.splitlines() if "persistence_file" in l]
    assert lines and any("director" in l for l in lines), out
    p = connected(b.port, "pub")
    pub1(p, "pf/r", b"kept", 1, retain=True)
    restart(b, "kill")
    assert not glob.glob(os.path.join(b.dir, "**", "mosquitto.db"), recursive=True)
    assert retained(b.port, "pf/#")["pf/r"].payload == b"kept"


def test_bad_persistence_sync_refused(b):
    """issue 13: persistence_sync takes power|process; anything else is a config error
    (non-zero exit, the option named in the log)."""
    for value in ("power", "process"):
        ok = Broker(["persistence true", "persistence_location {dir}/store",
                     "persistence_sync " + value])
        try:
            assert ok.start_or_exit(), "persistence_sync %s refused:\n%s" % (value, ok.output())
        finally:
            ok.stop()
            shutil.rmtree(ok.dir, ignore_errors=True)
    bad = Broker(["persistence true", "persistence_location {dir}/store",
                  "persistence_sync sometimes"])
    try:
        assert not bad.start_or_exit(), "persistence_sync sometimes accepted"
        assert bad.proc.returncode != 0
        assert "persistence_sync" in bad.output(), bad.output()
    finally:
        bad.stop()
        shutil.rmtree(bad.dir, ignore_errors=True)


@conf(*PCONF, "persistence_sync process")
def test_sync_process_mode_survives_kill(b):
    """issue 13: persistence_sync process (write() before the ack, fdatasync every second)
    survives kill -9: retained and queued messages acknowledged just before the kill."""
    c = connected(b.port, "sleeper", clean=False, properties=KEEP)
    c.subscribe(1, [("pm/#", 2)])
    c.disconnect()
    c.close()
    p = connected(b.port, "pub")
    pub1(p, "pm-r/x", b"retained", 1, retain=True)
    pub1(p, "pm/1", b"one", 2)
    pub2(p, "pm/2", b"two", 3)
    b.kill()  # at once: within the second before any fdatasync
    b.restart()
    assert retained(b.port, "pm-r/#")["pm-r/x"].payload == b"retained"
    c = resume(b, "sleeper")
    assert [take(c).payload, take(c).payload] == [b"one", b"two"]
    quiet(c, 0.3)


# ---- what is stored, across SIGTERM and SIGKILL ----

def retained_across(b, how):
    p = connected(b.port, "rpub")
    pub1(p, "keep/a", b"A", 1, retain=True, properties=[(CONTENT_TYPE, "text/plain")])
    pub1(p, "keep/b", b"B0", 2, retain=True)
    pub2(p, "keep/b", b"B1", 3, retain=True)  # replaced: the last one counts
    pub1(p, "keep/c", b"C", 4, retain=True)
    pub1(p, "keep/c", b"", 5, retain=True)  # cleared: stays cleared
    p.close()
    restart(b, how)
    got = retained(b.port, "keep/#")
    assert {t: m.payload for t, m in got.items()} == {"keep/a": b"A", "keep/b": b"B1"}, got
    assert got["keep/a"].props.get(CONTENT_TYPE) == "text/plain"
    restart(b, how)  # and again: what recovery read is stored as well
    assert sorted(retained(b.port, "keep/#")) == ["keep/a", "keep/b"]


@conf(*PCONF)
def test_retained_across_sigterm(b):
    """issue 13: retained messages (properties kept, a replaced one's last value, an empty
    payload clear stays cleared) survive a graceful restart."""
    retained_across(b, "term")


@conf(*PCONF)
def test_retained_across_sigkill(b):
    """issue 13: retained messages survive SIGKILL right after their PUBACK/PUBCOMP."""
    retained_across(b, "kill")


def session_across(b, how):
    c = connected(b.port, "dev", clean=False, properties=KEEP)
    assert c.subscribe(1, [("s/q1", 1)]).codes == [1]
    assert c.subscribe(2, [("s/nl", 1 | 0x04)]).codes == [1]  # no local
    assert c.subscribe(3, [("s/rap", 1 | 0x08)]).codes == [1]  # retain as published
    assert c.subscribe(4, [("s/id/#", 1)], properties=[(SUBSCRIPTION_ID, 42)]).codes == [1]
    assert c.subscribe(5, [("$share/g/s/sh", 2)]).codes == [2]
    c.disconnect()
    c.close()
    restart(b, how)
    c = resume(b, "dev")
    p = connected(b.port, "pub")
    pub2(p, "s/q1", b"q", 1)  # granted QoS 1: delivered at 1
    m = take(c)
    assert (m.topic, m.qos, m.payload) == ("s/q1", 1, b"q")
    pub1(c, "s/nl", b"self", 7)  # no local: its own message does not come back
    pub1(p, "s/nl", b"other", 2)
    m = take(c)
    assert (m.topic, m.payload) == ("s/nl", b"other"), (m.topic, m.payload)
    pub1(p, "s/rap", b"r", 3, retain=True)  # retain as published: the flag stays
    m = take(c)
    assert m.topic == "s/rap" and m.retain
    pub1(p, "s/id/x", b"i", 4)
    m = take(c)
    assert m.topic == "s/id/x" and m.props.get(SUBSCRIPTION_ID) == [42], m.props
    pub2(p, "s/sh", b"shared", 5)
    m = take(c)
    assert (m.topic, m.qos, m.payload) == ("s/sh", 2, b"shared")
    quiet(c, 0.3)


@conf(*PCONF)
def test_session_subscriptions_across_sigterm(b):
    """issue 13: a persistent session (MQTT 5 session expiry > 0) keeps its subscriptions and
    their options (QoS, no local, retain as published, subscription identifier, a shared
    subscription) across a graceful restart; CONNACK session present = 1."""
    session_across(b, "term")


@conf(*PCONF)
def test_session_subscriptions_across_sigkill(b):
    """issue 13: the same across SIGKILL."""
    session_across(b, "kill")


def queued_across(b, how):
    c = connected(b.port, "sleeper", clean=False, properties=KEEP)
    c.subscribe(1, [("cmd/#", 2)])
    c.disconnect()
    c.close()
    p = connected(b.port, "pub")
    pub1(p, "cmd/1", b"one", 1)
    pub2(p, "cmd/2", b"two", 2)
    p.publish("cmd/0", b"zero", qos=0)  # QoS 0 is not kept for absent clients
    pub1(p, "cmd/3", b"three", 3)
    p.close()
    restart(b, how)
    c = resume(b, "sleeper")
    got = [(m.topic, m.qos, m.payload) for m in (take(c), take(c), take(c))]
    assert got == [("cmd/1", 1, b"one"), ("cmd/2", 2, b"two"), ("cmd/3", 1, b"three")], got
    quiet(c, 0.5)
    c.disconnect()
    c.close()
    restart(b, how)  # delivered and acknowledged: not again
    c = resume(b, "sleeper")
    quiet(c, 0.5)


@conf(*PCONF, "max_queued_messages 0")
def test_queued_qos12_across_sigterm(b):
    """issue 13: QoS 1 and QoS 2 messages queued for an offline persistent session are
    delivered after a graceful restart, in order, once; QoS 0 is not kept."""
    queued_across(b, "term")


@conf(*PCONF, "max_queued_messages 0")
def test_queued_qos12_across_sigkill(b):
    """issue 13: the same across SIGKILL."""
    queued_across(b, "kill")


@conf(*PCONF)
def test_inflight_state_across_sigkill(b):
    """issue 13: messages in flight to a persistent session keep their packet ids and state
    ("QoS 1/2 messages queued or in flight ... with packet ids and state"): after SIGKILL
    a QoS 2 the subscriber PUBRECed gets a PUBREL with its id (not the PUBLISH again), an
    unacknowledged QoS 1 PUBLISH is re-sent with its original id and DUP [MQTT-4.4.0-1]
    [MQTT-3.3.1-1]."""
    c = connected(b.port, "dev", clean=False, properties=KEEP)
    c.subscribe(1, [("t/#", 2)])
    p = connected(b.port, "pub")
    for i in (1, 2):  # ids 1 and 2 used and done: the in-flight ones are not the first ids
        pub1(p, "t/warm", b"w", 10 + i)
        assert take(c).topic == "t/warm"
    pub1(p, "t/1", b"q1", 1)
    pub2(p, "t/2", b"q2", 2)
    m1 = c.expect(PUBLISH)
    m2 = c.expect(PUBLISH)
    assert (m1.qos, m2.qos) == (1, 2)
    c.ack(PUBREC, m2.pid)
    assert c.expect(PUBREL).pid == m2.pid
    c.ping()  # the PUBREC was read before the crash
    time.sleep(0.2)  # and its state change made durable (no ack tells when)
    b.kill()
    b.restart()
    c = resume(b, "dev")
    first, second = c.recv(3), c.recv(3)  # either order: the PUBLISH and the PUBREL
    assert first is not None and second is not None, "nothing re-sent after the restart"
    r1, r2 = (first, second) if first.type == PUBLISH else (second, first)
    assert r2.type == PUBREL and r2.pid == m2.pid, "%r (the QoS 2 PUBLISH again?)" % (r2,)
    assert r1.type == PUBLISH and r1.payload == b"q1", r1
    c.ack(PUBACK, r1.pid)
    c.ack(PUBCOMP, r2.pid)
    quiet(c, 0.5)
    assert (r1.pid, r1.dup) == (m1.pid, True), \
        "QoS 1 in flight re-sent as id %d DUP %d, was id %d: not its original id with DUP " \
        "[MQTT-4.4.0-1]" % (r1.pid, r1.dup, m1.pid)


@conf(*PCONF, "persistent_client_expiration 1h")
def test_mqtt311_persistent_session_across_sigkill(b):
    """issue 13: a 3.1.1 clean session 0 session (persistent_client_expiration allows it)
    keeps its subscription and queued QoS 1 message across SIGKILL."""
    c = connected(b.port, "old", version=4, clean=False)
    c.subscribe(1, [("v3/#", 1)])
    c.disconnect()
    c.close()
    p = connected(b.port, "pub")
    pub1(p, "v3/a", b"waiting", 1)
    restart(b, "kill")
    c = resume(b, "old", version=4)
    m = take(c)
    assert (m.topic, m.payload) == ("v3/a", b"waiting")
    quiet(c, 0.3)


@conf(*PCONF)
def test_mosquitto_sub_persistent_session_across_sigkill(b):
    """issue 13: a real client, mosquitto_sub -c -i ID -q 1 (MQTT 5, session never expires):
    the message published while it was away and the broker crashed is waiting for it."""
    base = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(b.port), "-V", "mqttv5", "-c",
            "-i", "msub", "-q", "1", "-t", "ms/#", "-v"]
    first = subprocess.Popen(base + ["-W", "10"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    try:
        assert b.wait_log("subscribe", 5), b.output()
        time.sleep(0.2)
    finally:
        first.send_signal(signal.SIGINT)  # disconnects; the session stays
        first.communicate(timeout=10)
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(b.port), "-V", "mqttv5",
                    "-t", "ms/cmd", "-m", "while-away", "-q", "1"], check=True, timeout=10)
    restart(b, "kill")
    again = subprocess.run(base + ["-C", "1", "-W", "8"], capture_output=True, timeout=15)
    assert again.stdout.decode().strip() == "ms/cmd while-away", (again.stdout, again.stderr)


def paho_client(b, client_id, clean_start, expiry=0):
    """A connected paho MQTT 5 client; returns (client, messages queue, CONNACK flags)."""
    import queue
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    msgs, connack = queue.Queue(), queue.Queue()
    c = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv5)
    c.on_message = lambda cl, u, m: msgs.put(m)
    c.on_connect = lambda cl, u, f, rc, p=None: connack.put((f, rc))
    props = None
    if expiry:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = expiry
    c.connect("127.0.0.1", b.port, keepalive=30, clean_start=clean_start, properties=props)
    c.loop_start()
    flags, rc = connack.get(timeout=5)
    assert rc == 0, rc
    return c, msgs, flags


@conf(*PCONF)
def test_paho_session_and_retained_across_sigkill(b):
    """issue 13: real clients (paho MQTT 5): a persistent session (clean start false,
    session expiry 600) with QoS 1 and QoS 2 messages queued, and a retained message,
    survive SIGKILL; the session is present on reconnection."""
    import queue
    s, _, _ = paho_client(b, "paho-sleeper", False, 600)
    done = queue.Queue()
    s.on_subscribe = lambda cl, u, mid, rcs, p=None: done.put(rcs)
    s.subscribe("pp/#", 2)
    done.get(timeout=5)
    s.disconnect()
    s.loop_stop()
    p, _, _ = paho_client(b, "paho-pub", True)
    for topic, payload, qos, retain in (("pp/1", b"one", 1, False), ("pp/2", b"two", 2, False),
                                        ("pr/r", b"kept", 1, True)):
        info = p.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(5)
        assert info.is_published()
    p.disconnect()
    p.loop_stop()
    restart(b, "kill")
    s, msgs, flags = paho_client(b, "paho-sleeper", False, 600)
    try:
        assert flags["session present"] == 1, flags
        got = [msgs.get(timeout=5) for _ in range(2)]
        assert [(m.topic, m.qos, m.payload) for m in got] == [("pp/1", 1, b"one"),
                                                               ("pp/2", 2, b"two")]
        time.sleep(0.3)
        assert msgs.empty(), "delivered again: %s" % msgs.get().topic
    finally:
        s.disconnect()
        s.loop_stop()
    assert retained(b.port, "pr/#")["pr/r"].payload == b"kept"


@conf(*PCONF)
def test_will_delay_published_after_crash(b):
    """issue 13: the will (delay 3 s) of a persistent session whose connection the crash
    cut is published after the restart, after its delay, to a persistent watcher."""
    w = connected(b.port, "watcher", clean=False, properties=KEEP)
    w.subscribe(1, [("will/#", 1)])
    v = connected(b.port, "victim", clean=False, properties=[(SESSION_EXPIRY, 60)],
                  will={"topic": "will/victim", "payload": b"gone", "qos": 1,
                        "props": [(WILL_DELAY, 3)]})
    v.ping()
    time.sleep(0.2)  # the will is made durable with the session (no ack says when)
    b.kill()
    t0 = time.time()
    b.restart()
    w = resume(b, "watcher")
    early = w.recv(max(0.1, t0 + 1.5 - time.time()))
    assert early is None, "the will came before its delay: %r" % (early,)
    m = w.expect(PUBLISH, 6)
    assert (m.topic, m.payload) == ("will/victim", b"gone")
    assert time.time() - t0 >= 2.5, "will published %.2f s after the crash" % (time.time() - t0)
    w.ack(PUBACK, m.pid)
    quiet(w, 0.3)
    v.close()


def expiry_across(b, how):
    c = connected(b.port, "sleeper", clean=False, properties=KEEP)
    c.subscribe(1, [("exp/#", 1)])
    c.disconnect()
    c.close()
    p = connected(b.port, "pub")
    pub1(p, "exp/short", b"short", 1, properties=[(MESSAGE_EXPIRY, 2)])
    pub1(p, "exp/long", b"long", 2, properties=[(MESSAGE_EXPIRY, 600)])
    t0 = time.time()
    if how == "kill":
        b.kill()
    else:
        assert b.stop() == 0
    time.sleep(max(0, t0 + 3.0 - time.time()))  # the short one expires while the broker is down
    b.restart()
    c = resume(b, "sleeper")
    m = take(c)
    assert m.topic == "exp/long", "got %s (expired while the broker was down)" % m.topic
    left = m.props.get(MESSAGE_EXPIRY)
    assert left is not None and left <= 597, "remaining expiry %s: the downtime not counted" % left
    quiet(c, 0.5)


@conf(*PCONF)
def test_message_expiry_is_wall_clock_across_sigkill(b):
    """issue 13: message expiry is a wall-clock deadline: a queued message whose expiry
    passes while the broker is down (SIGKILL) is not delivered; another's remaining
    expiry counts the downtime."""
    expiry_across(b, "kill")


@conf(*PCONF)
def test_message_expiry_is_wall_clock_across_sigterm(b):
    """issue 13: the same across a graceful restart."""
    expiry_across(b, "term")


@conf(*PCONF)
def test_qos2_receive_state_across_sigkill(b):
    """issue 13: the QoS 2 receive state is stored: PUBLISH QoS 2 id 77 got its PUBREC, the
    broker is SIGKILLed; after the restart the publisher (clean start 0) re-sends it with
    DUP and id 77: PUBREC again, not routed a second time, PUBREL -> PUBCOMP (success).
    Id 78 got its PUBREC too; after the restart only its PUBREL: PUBCOMP success, once."""
    s = connected(b.port, "q2sub", clean=False, properties=KEEP)
    s.subscribe(1, [("q2/#", 2)])
    s.disconnect()
    s.close()
    p = connected(b.port, "q2pub", clean=False, properties=KEEP)
    p.publish("q2/x", b"once-77", qos=2, pid=77)
    r = p.expect(PUBREC)
    assert r.pid == 77 and r.rc < 0x80
    p.publish("q2/y", b"once-78", qos=2, pid=78)
    r = p.expect(PUBREC)
    assert r.pid == 78 and r.rc < 0x80
    b.kill()
    b.restart()
    p = resume(b, "q2pub")
    p.publish("q2/x", b"once-77", qos=2, pid=77, dup=True)
    r = p.expect(PUBREC)
    assert r.pid == 77 and r.rc < 0x80, r
    p.ack(PUBREL, 77)
    c = p.expect(PUBCOMP)
    assert c.pid == 77 and c.rc == 0, "PUBCOMP %r (0x92: the receive state was lost)" % (c,)
    p.ack(PUBREL, 78)
    c = p.expect(PUBCOMP)
    assert c.pid == 78 and c.rc == 0, "PUBCOMP %r (0x92: the receive state was lost)" % (c,)
    s = resume(b, "q2sub")
    got = [take(s).payload, take(s).payload]
    quiet(s, 1.0)  # and not a third
    assert sorted(got) == [b"once-77", b"once-78"], "delivered %r (each exactly once)" % got


# ---- what is not stored ----

@conf(*PCONF)
def test_clean_sessions_and_qos0_never_written(b):
    """issue 13: QoS 0 messages and clean sessions are never written:
    persistence_journal_records does not grow with QoS 0 traffic (even to a persistent
    session) or with clean-session-only QoS 1/2 traffic; it grows with a retained publish."""
    ps = connected(b.port, "persist", clean=False, properties=KEEP)
    ps.subscribe(1, [("n/#", 0)])  # persistent session: these records are written now
    time.sleep(0.3)  # settled: its records are in
    base = journal_records(b)
    cs = connected(b.port, "clean-sub")
    cs.subscribe(1, [("n/#", 2), ("c/#", 2)])
    pub = connected(b.port, "clean-pub")
    for i in range(50):
        pub.publish("n/x", b"q0-%d" % i, qos=0)
    for i in range(50):
        assert take(ps).payload == b"q0-%d" % i
        assert take(cs).payload == b"q0-%d" % i
    assert journal_records(b) == base, "QoS 0 traffic was written"
    for i in range(1, 11):
        pub1(pub, "c/one", b"c1", i)
        assert take(cs).qos == 1
        pub2(pub, "c/two", b"c2", i + 100)
        assert take(cs).qos == 2
    time.sleep(0.2)
    assert journal_records(b) == base, "clean-session-only QoS 1/2 traffic was written"
    pub1(pub, "r/x", b"kept", 500, retain=True)
    assert wait_for(lambda: journal_records(b) > base, 2), "a retained publish was not written"


# ---- the directory lock ----

@may_exit
@conf(*PCONF)
def test_second_broker_on_same_directory_refused(b):
    """issue 13: a second broker on the same persistence_location refuses to start
    (non-zero exit) with a log line naming the directory / saying it is in use; the first
    keeps serving; once the first is gone (even SIGKILLed) the directory can be used."""
    other = Broker(["persistence true", "persistence_location " + store_dir(b)])
    try:
        assert not other.start_or_exit(), "a second broker started on %s" % store_dir(b)
        assert other.proc.returncode != 0
        out = other.output()
        assert any(store_dir(b) in l or "in use" in l for l in out.splitlines()), out
        p = connected(b.port, "still")
        pub1(p, "lk/r", b"first", 1, retain=True)
        p.close()
        b.kill()
        assert other.start_or_exit(), "the lock outlived its SIGKILLed owner:\n" + other.output()
        assert retained(other.port, "lk/#")["lk/r"].payload == b"first"
    finally:
        other.stop()
        shutil.rmtree(other.dir, ignore_errors=True)


# ---- compaction ----

def snapshot_files(b):
    return glob.glob(os.path.join(store_dir(b), "snapshot-*.snap"))


def send_retained_burst(p, n, topics=10, prefix="cp"):
    """n retained QoS 1 updates over `topics` topics, pipelined; returns {topic: last}."""
    last = {}
    for start in range(0, n, 20):  # windows of 20: within any receive maximum
        window = range(start, min(n, start + 20))
        for i in window:
            t = "%s/%d" % (prefix, i % topics)
            p.publish(t, b"v%d" % i, qos=1, pid=i % 60000 + 1, retain=True)
            last[t] = b"v%d" % i
        for _ in window:
            a = p.expect(PUBACK, 10)
            assert a.rc < 0x80, a
    return last


@conf(*PCONF)
def test_ctl_snapshot_compacts(b):
    """issue 13: lunamq-ctl persistence snapshot forces a compaction: stats then show a
    last snapshot time, the journal is smaller, and the state survives a restart."""
    s = connected(b.port, "sleeper", clean=False, properties=KEEP)
    s.subscribe(1, [("q/#", 1)])
    s.disconnect()
    s.close()
    p = connected(b.port, "pub")
    last = send_retained_burst(p, 300)
    pub1(p, "q/1", b"queued", 1)
    before = stats(b)
    assert before["persistence_journal_records"] >= 300, before
    assert not before.get("persistence_last_snapshot_at"), before
    ctl(b, "persistence", "snapshot")
    assert wait_for(lambda: stats(b).get("persistence_last_snapshot_at", 0) > 0, 10), stats(b)
    after = stats(b)
    assert after["persistence_journal_records"] < 300, after
    assert after["persistence_journal_bytes"] < before["persistence_journal_bytes"], (before, after)
    assert snapshot_files(b), os.listdir(store_dir(b))
    restart(b, "kill")
    assert {t: m.payload for t, m in retained(b.port, "cp/#").items()} == last
    c = resume(b, "sleeper")
    assert take(c).payload == b"queued"


@conf(*PCONF, "autosave_interval 20", "autosave_on_changes true")
def test_autosave_on_changes(b):
    """issue 13: autosave_on_changes true with autosave_interval N: a snapshot every N
    changes, so the journal stays short; the state survives SIGKILL."""
    p = connected(b.port, "pub")
    last = send_retained_burst(p, 200)
    assert wait_for(lambda: snapshot_files(b), 5), os.listdir(store_dir(b))
    assert wait_for(lambda: stats(b)["persistence_journal_records"] < 100, 5), stats(b)
    assert stats(b).get("persistence_last_snapshot_at", 0) > 0
    restart(b, "kill")
    assert {t: m.payload for t, m in retained(b.port, "cp/#").items()} == last


@conf(*PCONF, "autosave_interval 1", "autosave_on_changes false")
def test_autosave_interval_seconds(b):
    """issue 13: autosave_interval N (seconds, autosave_on_changes false): a snapshot within
    a few seconds of changes; the state survives SIGKILL."""
    p = connected(b.port, "pub")
    last = send_retained_burst(p, 20)
    assert wait_for(lambda: snapshot_files(b), 6), os.listdir(store_dir(b))
    restart(b, "kill")
    assert {t: m.payload for t, m in retained(b.port, "cp/#").items()} == last


# ---- disk errors ----

@conf(*PCONF)
def test_disk_error_holds_acks_then_recovers(b):
    """issue 13: the journal cannot be written (RLIMIT_FSIZE, EFBIG): a QoS 1 publish gets no
    PUBACK, QoS 0 still flows, a clear log line, stats persistence_failing true and
    persistence_errors > 0; the limit raised, the PUBACK comes within seconds and
    persistence_failing is false; the held message was stored."""
    assert b.stop() == 0
    b.restart(pipe_log=True)  # the log must not be a file the limit applies to
    s = connected(b.port, "dsub", clean=False, properties=KEEP)
    s.subscribe(1, [("d/#", 1), ("z/#", 0)])
    p = connected(b.port, "dpub")
    q0 = connected(b.port, "q0pub")  # not the held publisher: another client
    pub1(p, "d/1", b"ok", 1, retain=True)
    assert take(s).payload == b"ok"
    assert stats(b).get("persistence_failing") in (0, False), stats(b)
    log_before = len(b.output().splitlines())
    inf = resource.RLIM_INFINITY
    resource.prlimit(b.pid, resource.RLIMIT_FSIZE, (1, inf))
    try:
        p.publish("d/2", b"held", qos=1, pid=2, retain=True)
        a = p.recv(2.0)
        assert a is None, "acknowledged into a broken disk: %r" % (a,)
        assert not p.eof, "the publisher was disconnected"
        q0.publish("z/0", b"still", qos=0)  # QoS 0 keeps flowing
        m = take(s, 3)
        if m.topic == "d/2":  # the held message may go out already (QoS 1 may)
            m = take(s, 3)
        assert (m.topic, m.payload) == ("z/0", b"still"), "QoS 0 stopped with the disk"
        st = stats(b)
        assert st.get("persistence_failing"), st
        assert st.get("persistence_errors", 0) > 0, st
        new = b.output().splitlines()[log_before:]
        assert any("File too large" in l or "EFBIG" in l for l in new), \
            "no clear log line:\n" + "\n".join(new)
    finally:
        resource.prlimit(b.pid, resource.RLIMIT_FSIZE, (inf, inf))
    a = p.expect(PUBACK, 5)
    assert a.pid == 2 and a.rc < 0x80, a
    assert wait_for(lambda: stats(b).get("persistence_failing") in (0, False), 5), stats(b)
    pub1(p, "d/3", b"after", 3)
    restart(b, "kill")
    assert retained(b.port, "d/#")["d/2"].payload == b"held"


@conf(*PCONF)
def test_disk_error_new_clean_client_still_served(b):
    """issue 13: while the journal cannot be written (RLIMIT_FSIZE) and a QoS 1 publish is
    held, a new clean-session client (nothing of it is ever written) still gets its
    CONNACK and exchanges QoS 0: QoS 0 traffic keeps flowing."""
    assert b.stop() == 0
    b.restart(pipe_log=True)
    p = connected(b.port, "dpub")
    inf = resource.RLIM_INFINITY
    resource.prlimit(b.pid, resource.RLIMIT_FSIZE, (1, inf))
    try:
        p.publish("d/held", b"held", qos=1, pid=1, retain=True)
        assert p.recv(1.0) is None, "acknowledged into a broken disk"
        assert wait_for(lambda: stats(b).get("persistence_failing"), 3), stats(b)
        c = Client(b.port)
        c.connect("late-clean", expect=False)
        ca = c.recv(2.0)
        assert ca is not None and ca.type == 2 and ca.rc == 0, \
            "a clean-session CONNACK held by the failing disk: %r" % (ca,)
        c.subscribe(1, [("z/#", 0)])
        c.publish("z/1", b"q0", qos=0)
        assert take(c, 2).payload == b"q0"
    finally:
        resource.prlimit(b.pid, resource.RLIMIT_FSIZE, (inf, inf))
    assert p.expect(PUBACK, 5).pid == 1


# ---- crash points (LUNAMQ_CRASH_AT) ----

def make_state(b, tag):
    """Known acknowledged state: an offline persistent session with QoS 1/2 queued, and
    retained values. Returns what check_state expects."""
    s = connected(b.port, "cp-sub", clean=False, properties=KEEP)
    s.subscribe(1, [("cpq/#", 2)])
    s.disconnect()
    s.close()
    p = connected(b.port, "cp-pub")
    for i in range(3):
        pub1(p, "cpr/%d" % i, ("%s-%d" % (tag, i)).encode(), i + 1, retain=True)
    pub1(p, "cpq/1", b"q1", 10)
    pub2(p, "cpq/2", b"q2", 11)
    p.close()
    return {"cpr/%d" % i: ("%s-%d" % (tag, i)).encode() for i in range(3)}


def check_state(b, expected, maybe=()):
    """The retained values and the queued messages are there (maybe: topics a crash may
    or may not have kept, as they were never acknowledged)."""
    got = {t: m.payload for t, m in retained(b.port, "cpr/#").items()}
    for t in maybe:
        got.pop(t, None)
    assert got == expected, got
    c = resume(b, "cp-sub")
    assert [(m.topic, m.qos) for m in (take(c), take(c))] == [("cpq/1", 1), ("cpq/2", 2)]
    quiet(c, 0.3)
    c.close()


def expect_abort(b, why):
    assert wait_for(lambda: not b.alive(), 10), "crash point %s not reached" % why
    rc = b.stop()
    assert rc == -signal.SIGABRT, "crash point %s: exit %s, not an abort:\n%s" % (
        why, rc, b.output()[-2000:])


def crash_in_snapshot(b, point):
    expected = make_state(b, point)
    assert b.stop() == 0
    assert b.start_or_exit(env={"LUNAMQ_CRASH_AT": point}), b.output()[-2000:]
    ctl(b, "persistence", "snapshot", check=False)
    expect_abort(b, point)
    b.restart()
    check_state(b, expected)
    # and the directory it left works on: a snapshot, a restart, the state again
    expected = make_state(b, point + "-2")
    ctl(b, "persistence", "snapshot")
    assert wait_for(lambda: stats(b).get("persistence_last_snapshot_at", 0) > 0, 10), stats(b)
    restart(b, "kill")
    check_state(b, expected)


@conf(*PCONF)
def test_crash_at_after_write(b):
    """issue 13: LUNAMQ_CRASH_AT=after-write (abort between write() and fdatasync): the
    message being written was not acknowledged; after a restart without it everything
    acknowledged before is there."""
    expected = make_state(b, "aw")
    assert b.stop() == 0
    if b.start_or_exit(env={"LUNAMQ_CRASH_AT": "after-write"}):
        p = connected(b.port, "cp-pub")
        p.publish("cpr/new", b"never-acked", qos=1, pid=1, retain=True)
        a = p.recv(5)
        assert a is None or a.type != PUBACK, "acknowledged before fdatasync: %r" % (a,)
    expect_abort(b, "after-write")
    b.restart()
    check_state(b, expected, maybe=("cpr/new",))


@conf(*PCONF)
def test_crash_at_mid_snapshot(b):
    """issue 13: LUNAMQ_CRASH_AT=mid-snapshot (abort while a snapshot is half written):
    the restart recovers everything acknowledged; later snapshots work."""
    crash_in_snapshot(b, "mid-snapshot")


@conf(*PCONF)
def test_crash_at_snapshot_renamed(b):
    """issue 13: LUNAMQ_CRASH_AT=snapshot-renamed (abort between the snapshot's rename and
    the directory fsync): the restart recovers everything acknowledged."""
    crash_in_snapshot(b, "snapshot-renamed")


@conf(*PCONF)
def test_crash_at_recovery(b):
    """issue 13: LUNAMQ_CRASH_AT=recovery (abort while replaying): the broker does not
    listen; restarted without it (twice) the state is intact."""
    expected = make_state(b, "rc")
    assert b.stop() == 0
    for _ in range(2):
        assert not b.start_or_exit(env={"LUNAMQ_CRASH_AT": "recovery"}), \
            "listened with a crash point in recovery"
        expect_abort(b, "recovery")
    b.restart()
    check_state(b, expected)

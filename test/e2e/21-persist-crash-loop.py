# SPDX-License-Identifier: MIT
"""issue 13 crash loop: "a PUBACK/PUBREC means the message is durable", under SIGKILL at
random moments. Several raw MQTT 5 publishers with persistent sessions send QoS 1 and
QoS 2 messages with unique ids to a persistent OFFLINE subscriber and retained updates
to a few retained topics, recording every id the broker acknowledged; the broker is
SIGKILLed at random moments (sometimes before it even listens again) and restarted;
the publishers reconnect (clean start 0) and resume their flows as MQTT says (PUBLISH
re-sent with DUP and the same id until PUBREC, PUBREL re-sent after it). At the end the
subscriber drains its session: every acknowledged QoS 1 id at least once, every QoS 2
id that got its PUBREC exactly once (and no QoS 2 id twice), every retained topic holds
its last acknowledged value or a later one, and the broker restarted every time.

The seed is printed; LUNAMQ_SEED=N replays a run, ROUNDS=N sets the number of kills
(default 30)."""

import os
import random
import threading
import time

from lqtest import conf
from mqttraw import (PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, SESSION_EXPIRY, Client,
                     connected)

SAN = bool(os.environ.get("LUNAMQ_SAN"))
ROUNDS = int(os.environ.get("ROUNDS", "30"))
PUBLISHERS = 3
RETAINED_PER_PUB = 3
RATE = 60 if SAN else 120  # new messages a second per publisher: the drain stays short
WINDOW = 6  # in flight per publisher, within any receive maximum
EXPIRY = [(SESSION_EXPIRY, 86400)]

CONF = ("persistence true", "persistence_location {dir}/store", "max_queued_messages 0",
        "max_queued_bytes 1000000000", "max_inflight_messages 50",
        # compactions happen during the loop too, so kills land in them
        "autosave_interval 400", "autosave_on_changes true")


class Publisher(threading.Thread):
    """One raw MQTT 5 client with a persistent session that keeps publishing through
    broker crashes and records what was acknowledged."""

    def __init__(self, port, idx, seed):
        super().__init__(daemon=True)
        self.port, self.cid = port, "pub%d" % idx
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.n = 0
        self.inflight = {}  # pid -> message dict; insertion order = send order
        self.sent = {}  # id -> qos of every message ever sent
        self.retained_ids = set()  # to ret/...: not for the subscriber
        self.acked1, self.rec2, self.comp2 = set(), set(), set()
        self.refused = 0
        self.ret_acked = {}  # topic -> highest acknowledged sequence number
        self.connects = 0
        self.resent = {"pub1": 0, "pub2": 0, "rel": 0}  # flows resumed after reconnections
        self.anomalies = []
        self.error = None
        self.next_pid = 1

    # ---- the flows ----
    def _new_pid(self):
        while True:
            pid = self.next_pid
            self.next_pid = pid % 65535 + 1
            if pid not in self.inflight:
                return pid

    def _send_new(self, c):
        self.n += 1
        qos = self.rng.choice((1, 2))
        retain = self.rng.random() < 0.15
        if retain:
            topic = "ret/%s/%d" % (self.cid, self.rng.randrange(RETAINED_PER_PUB))
        else:
            topic = "cl/" + self.cid
        mid = "%s-%d" % (self.cid, self.n)
        m = {"id": mid, "n": self.n, "qos": qos, "topic": topic, "retain": retain,
             "payload": ("%s|%d" % (mid, qos)).encode(), "state": "sent"}
        pid = self._new_pid()
        self.inflight[pid] = m
        self.sent[mid] = qos
        if retain:
            self.retained_ids.add(mid)
        c.publish(topic, m["payload"], qos=qos, pid=pid, retain=retain)

    def _acked(self, m):
        if m["retain"]:
            self.ret_acked[m["topic"]] = max(self.ret_acked.get(m["topic"], 0), m["n"])

    def _on_packet(self, c, p):
        m = self.inflight.get(p.pid)
        if p.type == PUBACK:
            if m is None or m["qos"] != 1:
                self.anomalies.append("PUBACK for pid %s (%s)" % (p.pid, m and m["id"]))
                return
            del self.inflight[p.pid]
            if p.rc < 0x80:
                self.acked1.add(m["id"])
                self._acked(m)
            else:
                self.refused += 1
        elif p.type == PUBREC:
            if m is None or m["qos"] != 2:
                self.anomalies.append("PUBREC for pid %s (%s)" % (p.pid, m and m["id"]))
                return
            if p.rc >= 0x80:
                del self.inflight[p.pid]
                self.refused += 1
                return
            m["state"] = "rec"
            self.rec2.add(m["id"])
            self._acked(m)
            c.ack(PUBREL, p.pid)
        elif p.type == PUBCOMP:
            if m is None or m["state"] != "rec":
                self.anomalies.append("PUBCOMP for pid %s (%s)" % (p.pid, m and m["id"]))
                return
            del self.inflight[p.pid]
            if p.rc == 0 or (p.rc == 0x92 and m.get("rel_again")):
                # 0x92 to a PUBREL re-sent after a crash: the first one was processed
                # (state deleted) and the crash ate its PUBCOMP
                self.comp2.add(m["id"])
            else:  # the broker lost the receive state of an id it PUBRECed
                self.anomalies.append("PUBCOMP 0x%02x for %s" % (p.rc, m["id"]))
        elif p.type == 14:  # DISCONNECT (e.g. a takeover would be a bug here)
            self.anomalies.append("DISCONNECT 0x%02x" % p.rc)
        else:
            self.anomalies.append("unexpected %r" % (p,))

    def _resume(self, c):
        """After a reconnection: the flows in progress, in their order."""
        for pid, m in list(self.inflight.items()):
            if m["state"] == "rec":
                m["rel_again"] = True
                self.resent["rel"] += 1
                c.ack(PUBREL, pid)
            else:
                self.resent["pub%d" % m["qos"]] += 1
                c.publish(m["topic"], m["payload"], qos=m["qos"], pid=pid, retain=m["retain"],
                          dup=True)

    def _connection(self):
        try:
            c = Client(self.port, timeout=2)
        except OSError:
            return False
        try:
            ca = c.connect(self.cid, clean=False, properties=EXPIRY, expect=False)
            ca = c.recv(5)
            if ca is None or ca.type != 2 or ca.rc != 0:
                return False
            if self.connects and not ca.session_present:
                self.anomalies.append("session lost (session present 0) at connect %d"
                                      % self.connects)
            self.connects += 1
            self._resume(c)
            gap = 1.0 / RATE
            next_send = time.time()
            while True:
                if self.stop.is_set():  # finish the flows in progress, send nothing new
                    if not self.inflight:
                        c.disconnect()
                        return True
                elif len(self.inflight) < WINDOW and time.time() >= next_send:
                    self._send_new(c)
                    next_send = max(next_send + gap, time.time() - 0.1)
                    continue
                p = c.recv(0.05)
                if p is None:
                    if c.eof:
                        return False
                    continue
                self._on_packet(c, p)
        except OSError:  # the broker died under us
            return False
        finally:
            c.close()

    def run(self):
        try:
            deadline = None
            while True:
                if self.stop.is_set():
                    deadline = deadline or time.time() + 15
                    if time.time() > deadline:
                        self.anomalies.append("flows not finished at the end: %d" %
                                              len(self.inflight))
                        return
                if self._connection():
                    return
                time.sleep(0.02)
        except Exception as e:  # noqa: BLE001 -- reported by the test
            self.error = e


def drain(port, deadline):
    """The offline subscriber comes back: every PUBLISH of its session, acknowledged;
    returns {id: [qos, ...]} of what it was delivered."""
    c = Client(port)
    ca = c.connect("drain", clean=False, properties=EXPIRY)
    assert ca.rc == 0 and ca.session_present, "the subscriber's session was lost"
    got = {}
    owed = set()
    while time.time() < deadline:
        p = c.recv(2.0)
        if p is None:
            assert not c.eof, "the broker closed the draining subscriber"
            break
        if p.type == PUBLISH:
            mid, qos = p.payload.decode().split("|")
            got.setdefault(mid, []).append(int(qos))
            assert p.qos == int(qos), "%s delivered at QoS %d" % (mid, p.qos)
            if p.qos == 1:
                c.ack(PUBACK, p.pid)
            else:
                c.ack(PUBREC, p.pid)
                owed.add(p.pid)
        elif p.type == PUBREL:
            c.ack(PUBCOMP, p.pid)
            owed.discard(p.pid)
        else:
            raise AssertionError("subscriber got %r" % (p,))
    else:
        raise AssertionError("the drain did not end in time")
    assert not owed, "no PUBREL for %d QoS 2 deliveries" % len(owed)
    c.disconnect()
    c.close()
    return got


def read_retained(port):
    c = connected(port, "ret-reader")
    c.subscribe(1, [("ret/#", 1)])
    out = {}
    while True:
        p = c.recv(1.0)
        if p is None:
            break
        assert p.type == PUBLISH and p.retain, p
        out[p.topic] = int(p.payload.decode().split("|")[0].rsplit("-", 1)[1])
        if p.qos:
            c.ack(PUBACK, p.pid)
    c.close()
    return out


def kill_and_restart(b, rng, k):
    """SIGKILL now; start again. Sometimes the new process is killed again at once, while
    it recovers (before or just after it listens). Returns the kills made."""
    kills = 0
    b.kill()
    kills += 1
    if rng.random() < 0.2:
        b.start(wait=False)
        time.sleep(rng.uniform(0, 0.03))
        b.kill()
        kills += 1
    if not b.start_or_exit(timeout=30):
        raise AssertionError("round %d: the broker did not restart (exit %s):\n%s" % (
            k, b.proc.returncode, b.output()[-4000:]))
    return kills


@conf(*CONF)
def test_crash_loop(b):
    """issue 13: SIGKILL at random moments (>= 30 kills, seeded: LUNAMQ_SEED, ROUNDS) under
    QoS 1/2 and retained traffic from 3 persistent publishers to an offline persistent
    subscriber: nothing acknowledged is lost, no QoS 2 message is delivered twice, the
    retained topics hold their last acknowledged value or a later one, the broker
    restarts every time. persistence_sync power (the default)."""
    crash_loop(b, ROUNDS)


@conf(*CONF, "persistence_sync process")
def test_crash_loop_sync_process(b):
    """issue 13: the same with persistence_sync process (write() before the ack, fdatasync
    every second), whose promise is to survive kill -9 (>= 30 kills; 15 under the
    sanitizers, where each round is slower)."""
    crash_loop(b, ROUNDS // 2 if SAN else ROUNDS)


def crash_loop(b, rounds):
    seed = int(os.environ.get("LUNAMQ_SEED") or random.SystemRandom().randrange(1 << 31))
    print("crash loop: LUNAMQ_SEED=%d ROUNDS=%d" % (seed, rounds), flush=True)
    rng = random.Random(seed)
    s = connected(b.port, "drain", clean=False, properties=EXPIRY)
    assert s.subscribe(1, [("cl/#", 2)]).codes == [2]
    s.disconnect()
    s.close()
    pubs = [Publisher(b.port, i, rng.randrange(1 << 31)) for i in range(PUBLISHERS)]
    for p in pubs:
        p.start()
    kills = 0
    t0 = time.time()
    try:
        for k in range(rounds):
            time.sleep(rng.uniform(0.15, 1.0) * (2 if SAN else 1))
            for p in pubs:
                assert p.is_alive() and p.error is None, "%s: %s" % (p.cid, p.error)
            kills += kill_and_restart(b, rng, k)
        time.sleep(0.5)
    finally:
        for p in pubs:
            p.stop.set()
        for p in pubs:
            p.join(20)
    loop_s = time.time() - t0
    for p in pubs:
        assert not p.is_alive(), "%s did not finish" % p.cid
        assert p.error is None, "%s: %r" % (p.cid, p.error)
    acked1 = set().union(*(p.acked1 for p in pubs))
    rec2 = set().union(*(p.rec2 for p in pubs))
    comp2 = set().union(*(p.comp2 for p in pubs))
    sent = {}
    for p in pubs:
        sent.update(p.sent)
    print("crash loop: %d kills in %.1f s; sent %d, acknowledged QoS 1 %d, QoS 2 PUBREC %d "
          "PUBCOMP %d, refused %d, reconnections %s; resumed: QoS 1 PUBLISH %d, QoS 2 "
          "PUBLISH %d, PUBREL %d" % (
              kills, loop_s, len(sent), len(acked1), len(rec2), len(comp2),
              sum(p.refused for p in pubs), [p.connects for p in pubs],
              sum(p.resent["pub1"] for p in pubs), sum(p.resent["pub2"] for p in pubs),
              sum(p.resent["rel"] for p in pubs)), flush=True)
    assert kills >= rounds
    # enough traffic that the checks mean something
    assert len(acked1) > 100 and len(rec2) > 100, "too little acknowledged traffic"
    anomalies = [a for p in pubs for a in p.anomalies]
    got = drain(b.port, time.time() + 60)
    # a pass ends after 2 s without a PUBLISH; a slower fdatasync (a QoS 2 delivery
    # waits for its packet id to be durable) can end one before the queue is empty:
    # the subscriber comes back until a pass brings nothing, and says if one did
    for _ in range(3):
        more = drain(b.port, time.time() + 60)
        if not more:
            break
        print("crash loop: a later drain pass delivered %d more ids" % len(more), flush=True)
        for mid, qs in more.items():
            got.setdefault(mid, []).extend(qs)
    delivered = set(got)
    ret = read_retained(b.port)
    # the verdict
    ret_acked = {}
    for p in pubs:
        ret_acked.update(p.ret_acked)
    retained_ids = set().union(*(p.retained_ids for p in pubs))
    lost1 = sorted(i for i in acked1 - retained_ids if i not in got)
    lost2 = sorted(i for i in rec2 - retained_ids if i not in got)
    twice2 = sorted(i for i, qs in got.items() if sent.get(i) == 2 and len(qs) > 1)
    unknown = sorted(i for i in delivered if i not in sent)
    stale = sorted("%s: %s < acked %d" % (t, ret.get(t), n) for t, n in ret_acked.items()
                   if ret.get(t, -1) < n)
    problems = []
    if lost1:
        problems.append("%d acknowledged QoS 1 ids never delivered, e.g. %s" % (
            len(lost1), lost1[:5]))
    if lost2:
        problems.append("%d PUBRECed QoS 2 ids never delivered (%d of them PUBCOMPed), e.g. "
                        "%s" % (len(lost2), len([i for i in lost2 if i in comp2]), lost2[:5]))
    if twice2:
        problems.append("%d QoS 2 ids delivered more than once, e.g. %s" % (
            len(twice2), twice2[:5]))
    if unknown:
        problems.append("delivered ids never sent: %s" % unknown[:5])
    if stale:
        problems.append("retained topics behind their last acknowledged value: %s" % stale)
    if anomalies:
        problems.append("protocol anomalies seen by the publishers: %d, e.g. %s" % (
            len(anomalies), anomalies[:8]))
    log = b.output()
    print("crash loop: drained %d ids (%d deliveries), %d retained topics; recoveries that "
          "left out a change cut short at the journal's end: %d" % (
              len(got), sum(len(v) for v in got.values()), len(ret),
              log.count("the journal ended inside one change")), flush=True)
    assert not problems, "seed %d:\n  " % seed + "\n  ".join(problems)


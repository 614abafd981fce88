# SPDX-License-Identifier: MIT
"""Issue 13: the journal on disk, cut or damaged by hand between two runs of the broker.

The tests read the frame format (u32 length, u32 CRC32C, u8 type, u64 seq, payload) to
cut a segment at a record boundary, as a crash in the middle of a write would, or to flip
a byte in the middle, as a bad disk would."""

import glob
import os
import signal
import struct

import lqtest
from lqtest import conf
from mqttraw import Client, PUBLISH, PUBREC, PUBCOMP, PUBREL

PERSIST = ("persistence true", "persistence_location {dir}/data")
EXPIRY = (0x11, 3600)  # Session Expiry Interval
R_IN_PUT = 10
GROUPED = 0x80


def frames(path):
    """[(offset, type, seq, length)] of a segment's whole frames."""
    out = []
    with open(path, "rb") as f:
        data = f.read()
    at = 0
    while at + 17 <= len(data):
        n, _crc, t, seq = struct.unpack_from("<IIBQ", data, at)
        if at + 17 + n > len(data):
            break
        out.append((at, t, seq, n))
        at += 17 + n
    return out


def segments(b):
    return sorted(glob.glob(os.path.join(b.dir, "data", "journal-*.log")))


def persistent_subscriber(b, cid, topic):
    c = Client(b.port)
    c.connect(cid, clean=False, properties=[EXPIRY])
    c.subscribe(1, [(topic, 2)])
    c.disconnect()
    c.close()


def drain(b, cid, timeout=1.5):
    """The payloads a persistent subscriber receives on reconnecting (acking each)."""
    c = Client(b.port)
    ack = c.connect(cid, clean=False, properties=[EXPIRY])
    assert ack.session_present, "the session did not survive"
    got = []
    while True:
        p = c.recv(timeout)
        if p is None:
            break
        if p.type == PUBLISH:
            got.append(p.payload)
            if p.qos == 1:
                c.ack(4, p.pid)
            elif p.qos == 2:
                c.ack(PUBREC, p.pid)
        elif p.type == PUBREL:
            c.ack(PUBCOMP, p.pid)
    c.close()
    return got


@conf(*PERSIST)
def test_qos2_publish_cut_mid_record_group_is_all_or_nothing(b):
    """issue 13: a QoS 2 PUBLISH writes its queue entries and its packet id (receive state)
    as one group. A journal that ends inside the group (here: cut right before the packet
    id record, as a crash between two writes would) must replay none of it: the client,
    which got no PUBREC, sends the PUBLISH again and it is routed exactly once. Replayed
    half, the queue entry would survive without the packet id, and the re-sent PUBLISH
    would be routed a second time."""
    persistent_subscriber(b, "sub", "g/t")
    p = Client(b.port)
    p.connect("pub", clean=False, properties=[EXPIRY])
    p.publish("g/t", b"once", qos=2, pid=7)
    assert p.expect(PUBREC).pid == 7
    b.stop(signal.SIGKILL)
    seg = segments(b)[-1]
    ins = [f for f in frames(seg) if f[1] & ~GROUPED == R_IN_PUT]
    assert ins, "no packet id record in the journal"
    with open(seg, "r+b") as f:
        f.truncate(ins[-1][0])
    b.start()
    p = Client(b.port)
    assert p.connect("pub", clean=False, properties=[EXPIRY]).session_present
    p.publish("g/t", b"once", qos=2, pid=7, dup=True)  # no PUBREC came: send again
    assert p.expect(PUBREC).pid == 7
    p.ack(PUBREL, 7)
    assert p.expect(PUBCOMP).pid == 7
    p.close()
    assert drain(b, "sub") == [b"once"]


@conf(*PERSIST)
def test_torn_tail_is_cut_and_everything_acknowledged_survives(b):
    """issue 13: garbage after the last whole record (a torn write) is cut off with a log
    line; every acknowledged message is still there."""
    persistent_subscriber(b, "sub", "t/#")
    p = Client(b.port)
    p.connect("pub")
    for i in range(1, 6):
        p.publish("t/x", b"m%d" % i, qos=1, pid=i)
        p.expect(4)
    p.close()
    b.stop(signal.SIGKILL)
    with open(segments(b)[-1], "ab") as f:
        f.write(struct.pack("<IIBQ", 40, 0xDEADBEEF, 8, 999) + b"half a record")
    b.start()
    assert b.wait_log("torn") or b.wait_log("cut"), b.output()[-2000:]
    assert drain(b, "sub") == [b"m%d" % i for i in range(1, 6)]


@conf(*PERSIST, "autosave_interval 0")
def test_corrupt_record_mid_journal_keeps_the_valid_prefix(b):
    """issue 13: a bad record before the end of the journal (a flipped byte in the first of
    two segments) is logged with its file and offset; the broker starts with the records
    before it, writes a snapshot at once, and the next start is clean."""
    persistent_subscriber(b, "sub", "t/#")
    p = Client(b.port)
    p.connect("pub")
    for i in range(1, 4):
        p.publish("t/x", b"early%d" % i, qos=1, pid=i)
        p.expect(4)
    p.close()
    b.stop()  # a graceful stop: the next run appends to a new segment
    b.start()
    p = Client(b.port)
    p.connect("pub")
    for i in range(1, 4):
        p.publish("t/x", b"late%d" % i, qos=1, pid=i)
        p.expect(4)
    p.close()
    b.stop(signal.SIGKILL)
    segs = segments(b)
    assert len(segs) >= 2, segs
    first = segs[0]
    fr = frames(first)
    victim = fr[-1]  # the last record of the first segment: flip a payload byte
    with open(first, "r+b") as f:
        f.seek(victim[0] + 17)
        byte = f.read(1)
        f.seek(victim[0] + 17)
        f.write(bytes([byte[0] ^ 0xFF]))
    b.start()
    out = b.output()
    name = os.path.basename(first)
    assert name in out and str(victim[0]) in out, out[-3000:]
    got = drain(b, "sub")
    assert got[:2] == [b"early1", b"early2"], got  # the records before the bad one
    assert b"late1" not in got, got  # nothing after the break is replayed
    b.stop()
    assert glob.glob(os.path.join(b.dir, "data", "snapshot-*.snap")), os.listdir(
        os.path.join(b.dir, "data"))
    b.start()  # clean now: starts from the snapshot
    assert "CORRUPT" not in b.output().split("starting")[-1]


@conf(*PERSIST, "sys_interval 1", "metrics_listener {tls_port}")
def test_persistence_figures_in_sys_and_metrics(b):
    """issue 13: $SYS and /metrics carry the journal's figures, not only lunamq-ctl stats."""
    import subprocess
    import time
    p = Client(b.port)
    p.connect("pub")
    p.publish("r/1", b"kept", qos=1, retain=True, pid=1)
    p.expect(4)
    p.close()
    time.sleep(1.3)
    r = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(b.port), "-t",
                        "$SYS/broker/persistence/#", "-v", "-W", "2"], capture_output=True,
                       text=True)
    sys = dict(line.partition(" ")[::2] for line in r.stdout.splitlines())
    assert int(sys["$SYS/broker/persistence/journal_records"]) >= 2, sys
    assert sys["$SYS/broker/persistence/failing"] == "0", sys
    assert "$SYS/broker/persistence/fsync_p99_us" in sys, sys
    url = "http://127.0.0.1:%d/metrics" % b.tls_port
    body = subprocess.run(["curl", "-s", url], capture_output=True, text=True, timeout=10).stdout
    values = {l.rpartition(" ")[0]: float(l.rpartition(" ")[2]) for l in body.splitlines()
              if l and not l.startswith("#")}
    assert values["lunamq_persistence"] == 1, body
    assert values["lunamq_persistence_journal_records"] >= 2, body
    assert values["lunamq_persistence_errors_total"] == 0, body


@conf(*PERSIST)
def test_snapshot_leaves_out_queued_qos0(b):
    """issue 13: QoS 0 messages are never written, also not by a snapshot taken while an
    online persistent subscriber that does not read has some queued."""
    import subprocess
    import time
    sub = Client(b.port)
    sub.connect("deaf", clean=False, properties=[EXPIRY])
    sub.subscribe(1, [("z/#", 0)])  # and never reads again
    p = Client(b.port)
    p.connect("pub")
    for i in range(4000):
        p.publish("z/x", b"y" * 4000)
    p.ping(timeout=10)
    stats = lambda: __import__("json").loads(subprocess.run(
        [lqtest.CTL, "-s", b.admin, "--json", "stats"], capture_output=True, text=True).stdout)
    assert stats()["queued"] > 0, "nothing queued: the test proves nothing"
    r = subprocess.run([lqtest.CTL, "-s", b.admin, "persistence", "snapshot"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert lqtest.wait_for(lambda: stats()["persistence_last_snapshot_at"] > 0, timeout=10)
    sub.close()
    p.close()
    b.stop()
    b.start()
    assert b.wait_log("persistence: recovered")
    time.sleep(0.2)
    assert "could not be read" not in b.output(), b.output()[-2000:]


@conf(*PERSIST)
def test_journal_amends_the_snapshot_queue(b):
    """issue 13: queue entries written by a snapshot and then acknowledged, sent or
    advanced in the journal after it: after SIGKILL the acknowledged ones do not come
    back, the ones in flight come back with their packet ids (QoS 1: PUBLISH again with
    DUP; QoS 2 past PUBREC: PUBREL, not the PUBLISH), the rest in order."""
    import subprocess
    import time
    c = Client(b.port)
    c.connect("sub", clean=False, properties=[EXPIRY])
    c.subscribe(1, [("q/1", 1), ("q/2", 2)])
    c.disconnect()
    c.close()
    p = Client(b.port)
    p.connect("pub")
    for i in range(6):
        p.publish("q/1", b"one%d" % i, qos=1, pid=i + 1)
        p.expect(4)
    p.publish("q/2", b"two", qos=2, pid=50)
    p.expect(PUBREC)
    p.ack(PUBREL, 50)
    p.expect(PUBCOMP)
    p.close()
    stats = lambda: __import__("json").loads(subprocess.run(
        [lqtest.CTL, "-s", b.admin, "--json", "stats"], capture_output=True, text=True).stdout)
    r = subprocess.run([lqtest.CTL, "-s", b.admin, "persistence", "snapshot"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert lqtest.wait_for(lambda: stats()["persistence_last_snapshot_at"] > 0, timeout=10)
    c = Client(b.port)  # now the journal: two acked, one QoS 2 to PUBREC, the rest in flight
    c.connect("sub", clean=False, properties=[EXPIRY])
    got = {}
    end = time.time() + 3
    while len(got) < 7 and time.time() < end:
        m = c.recv(1)
        if m is not None and m.type == PUBLISH:
            got[m.payload] = m
    assert len(got) == 7, sorted(got)
    c.ack(4, got[b"one0"].pid)
    c.ack(4, got[b"one1"].pid)
    c.ack(PUBREC, got[b"two"].pid)
    assert c.expect(PUBREL).pid == got[b"two"].pid
    c.ping()  # the acks are handled
    time.sleep(0.3)  # and their records durable (nothing acknowledges a PUBACK)
    b.stop(signal.SIGKILL)
    c.close()
    b.start()
    c = Client(b.port)
    assert c.connect("sub", clean=False, properties=[EXPIRY]).session_present
    again, rel = [], []
    while True:
        m = c.recv(1)
        if m is None:
            break
        if m.type == PUBLISH:
            again.append((m.payload, m.pid, m.dup))
        elif m.type == PUBREL:
            rel.append(m.pid)
    assert rel == [got[b"two"].pid], (rel, again)
    assert [x[0] for x in again] == [b"one%d" % i for i in range(2, 6)], again
    for payload, pid, dup in again:
        assert pid == got[payload].pid and dup, (payload, pid, dup)

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


def qos2_cut_before_packet_id(b, payload):
    """A persistent "pub" sends payload to g/t at QoS 2 (packet id 7) and gets its
    PUBREC; the broker is killed and its last segment cut right before the packet id
    record, as a crash between two writes would leave it."""
    p = Client(b.port)
    p.connect("pub", clean=False, properties=[EXPIRY])
    p.publish("g/t", payload, qos=2, pid=7)
    assert p.expect(PUBREC).pid == 7
    b.stop(signal.SIGKILL)
    seg = segments(b)[-1]
    ins = [f for f in frames(seg) if f[1] & ~GROUPED == R_IN_PUT]
    assert ins, "no packet id record in the journal"
    with open(seg, "r+b") as f:
        f.truncate(ins[-1][0])


def qos2_flow(b, cid, payload, pid, clean=True, dup=False):
    """cid publishes payload to g/t at QoS 2 (clean=False: its persistent session, which
    must have survived) and completes the flow: PUBREC, PUBREL, PUBCOMP."""
    c = Client(b.port)
    ack = c.connect(cid, clean=clean, properties=[] if clean else [EXPIRY])
    assert clean or ack.session_present
    c.publish("g/t", payload, qos=2, pid=pid, dup=dup)
    assert c.expect(PUBREC).pid == pid
    c.ack(PUBREL, pid)
    assert c.expect(PUBCOMP).pid == pid
    c.close()


@conf(*PERSIST)
def test_qos2_publish_cut_mid_record_group_is_all_or_nothing(b):
    """issue 13: a QoS 2 PUBLISH writes its queue entries and its packet id (receive state)
    as one group. A journal that ends inside the group (here: cut right before the packet
    id record, as a crash between two writes would) must replay none of it: the client,
    which got no PUBREC, sends the PUBLISH again and it is routed exactly once. Replayed
    half, the queue entry would survive without the packet id, and the re-sent PUBLISH
    would be routed a second time."""
    persistent_subscriber(b, "sub", "g/t")
    qos2_cut_before_packet_id(b, b"once")
    b.start()
    qos2_flow(b, "pub", b"once", 7, clean=False, dup=True)  # no PUBREC came: send again
    assert drain(b, "sub") == [b"once"]


@conf(*PERSIST)
def test_torn_group_stays_out_after_the_next_run_writes_behind_it(b):
    """issue 13 (a loss the crash loop found): a journal that ends inside a QoS 2 group
    is continued by the next run in a new segment, so at the restart after that the torn
    group is no longer at the end. It must still be left out, and not be completed by
    the next run's records: applied, its queue entry (message id K, never acknowledged)
    took in the entry of the next message given id K (another client's, acknowledged),
    which was lost, and the torn one was delivered next to its re-sent copy."""
    persistent_subscriber(b, "sub", "g/t")
    qos2_cut_before_packet_id(b, b"torn")  # the crash left the message and its queue entry
    b.start()
    # a clean session: its QoS 2 group is this run's first record
    qos2_flow(b, "other", b"other", 1)
    qos2_flow(b, "pub", b"torn", 7, clean=False, dup=True)  # no PUBREC came: send again
    b.stop(signal.SIGKILL)
    assert len(segments(b)) >= 2, "the second run wrote to the first run's segment"
    b.start()
    got = sorted(drain(b, "sub"))
    assert got == [b"other", b"torn"], got


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


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def frame(t, seq, payload):
    body = struct.pack("<BQ", t, seq) + payload
    return struct.pack("<II", len(payload), crc32c(body)) + body


@conf(*PERSIST)
def test_session_written_twice_at_the_snapshot_end_keeps_its_journal(b):
    """issue 13: a snapshot writes a session twice when the session table grows under it
    (a session moved above the cursor); replay skips the second copy. When that copy is
    the snapshot's last session, the skipping must end with the snapshot: carried into
    the journal, it dropped the session's packet id records, and a QoS 2 id released
    after the snapshot came back, so the next message with that id was taken for a
    duplicate, acknowledged and never delivered. The snapshot is doubled by hand."""
    import subprocess
    import time
    persistent_subscriber(b, "sub", "d/t")
    p = Client(b.port)
    p.connect("pub", clean=False, properties=[EXPIRY])
    p.publish("d/t", b"first", qos=2, pid=9)
    assert p.expect(PUBREC).pid == 9  # packet id 9 awaits PUBREL: in the snapshot
    r = subprocess.run([lqtest.CTL, "-s", b.admin, "persistence", "snapshot"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    snaps = lambda: glob.glob(os.path.join(b.dir, "data", "snapshot-*.snap"))
    assert lqtest.wait_for(lambda: snaps(), timeout=10)
    p.ack(PUBREL, 9)  # released in the journal, after the snapshot
    assert p.expect(PUBCOMP).pid == 9
    p.ping()  # handled, and (power) durable before the PUBCOMP
    p.close()
    time.sleep(0.2)
    b.stop(signal.SIGKILL)
    [snap] = snaps()
    with open(snap, "rb") as f:
        data = f.read()
    out, at, recs, sid = [], 0, [], None
    while at + 17 <= len(data):
        n, _crc, t, seq = struct.unpack_from("<IIBQ", data, at)
        out.append((t, seq, data[at + 17:at + 17 + n]))
        at += 17 + n
    for t, seq, pl in out:  # the publisher's session: its id, then its records
        if t == 4 and pl[8:12] == struct.pack("<I", 3) and pl[12:15] == b"pub":
            sid = pl[:8]
        if sid and t in (4, 6, 10) and pl[:8] == sid:
            recs.append((t, pl))
    assert sid and any(t == 10 for t, _ in recs), "packet id 9 not in the snapshot"
    body, footer = out[:-1], out[-1]
    n = len(body) - 1  # records after the header
    rebuilt = b"".join(frame(t, seq, pl) for t, seq, pl in body)
    for t, pl in recs:  # the session again, last: as a growing table would write it
        n += 1
        rebuilt += frame(t, n, pl)
    rebuilt += frame(0, n + 1, footer[2][:1] + struct.pack("<Q", n))
    with open(snap, "wb") as f:
        f.write(rebuilt)
    b.start()
    assert not b.wait_log("incomplete or damaged", timeout=0.5), b.output()[-2000:]
    p = Client(b.port)
    assert p.connect("pub", clean=False, properties=[EXPIRY]).session_present
    p.publish("d/t", b"second", qos=2, pid=9)  # a new message with the released id
    assert p.expect(PUBREC).pid == 9
    p.ack(PUBREL, 9)
    assert p.expect(PUBCOMP).pid == 9
    p.close()
    got = sorted(drain(b, "sub"))
    assert got == [b"first", b"second"], got

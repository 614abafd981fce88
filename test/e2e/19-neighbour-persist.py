# SPDX-License-Identifier: MIT
"""Issue 13 with a neighbour: the journal's work must not hold the event loop. Each test
runs the heavy part next to a Probe (mqttraw.Probe: a clean client timing its own QoS 1
round trips) and bounds its worst round trip."""

import json
import subprocess
import time

import lqtest
from lqtest import conf
from mqttraw import Client, Probe, publish_bytes

PERSIST = ("persistence true", "persistence_location {dir}/data")


def stats(b):
    r = subprocess.run([lqtest.CTL, "-s", b.admin, "--json", "stats"], capture_output=True,
                       text=True, timeout=10)
    return json.loads(r.stdout)


def fill_retained(b, n, chunk=5000):
    """n retained messages on distinct topics, pipelined; returns once all are in."""
    c = Client(b.port)
    c.connect("filler")
    for start in range(0, n, chunk):
        c.send(b"".join(publish_bytes("r/%d/%d" % (i // 1000, i), b"v%d" % i, retain=True)
                        for i in range(start, min(n, start + chunk))))
    c.ping(timeout=60)  # the connection's packets are handled in order: all are in
    c.close()


@conf(*PERSIST)
def test_snapshot_in_slices_does_not_stall_neighbours(b):
    """issue 13: a compaction of 200 000 retained messages is written in slices of at
    most a few milliseconds of the loop: a neighbour's round trips stay fast while it
    runs, though the whole snapshot takes far longer."""
    n = 200000
    fill_retained(b, n)
    assert stats(b)["retained"] >= n
    with Probe(b.port, interval=0.005) as p:
        time.sleep(0.2)
        t0 = time.time()
        r = subprocess.run([lqtest.CTL, "-s", b.admin, "persistence", "snapshot"],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r.stderr
        assert lqtest.wait_for(lambda: stats(b)["persistence_last_snapshot_at"] > 0, timeout=60)
        took = time.time() - t0
        time.sleep(0.2)
    s = stats(b)
    print("  snapshot of %d retained: %.2f s (broker: %.2f s); probe: %d round trips, "
          "worst %.1f ms" % (n, took, s["persistence_last_snapshot_seconds"], p.count,
                            p.worst * 1000))
    assert took > 0.1, "the snapshot was too quick to tell anything (%.3f s)" % took
    p.check(0.05)
    b.stop()
    b.start()  # and it is complete: everything comes back from it
    assert lqtest.wait_for(lambda: stats(b)["retained"] >= n, timeout=30)

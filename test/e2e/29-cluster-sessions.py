"""Issue 16, sessions across nodes (cluster_sessions jetstream): a client id has one
owner, recorded in a JetStream key-value bucket; a client that connects to another
node takes its session along (subscriptions, queued and in-flight messages); a dead
owner's sessions start clean elsewhere. Each test starts, on loopback and free ports,
nats-server -js and lunamq nodes (26-cluster.py's Cluster)."""
import importlib.util
import os
import signal
import time

import lqtest
from mqttraw import (DISCONNECT, PUBACK, PUBLISH, SESSION_EXPIRY, Client, connected)

_spec = importlib.util.spec_from_file_location(
    "cluster26", os.path.join(os.path.dirname(os.path.abspath(__file__)), "26-cluster.py"))
cluster26 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cluster26)
Cluster, stats, drain = cluster26.Cluster, cluster26.stats, cluster26.drain

KEEP = [(SESSION_EXPIRY, 3600)]


def connect(port, cid, clean, props=KEEP):
    c = Client(port)
    ca = c.connect(cid, clean=clean, properties=props)
    return c, ca


def test_offline_session_moves_with_its_queue_in_order(_b):
    """issue 16 test 5 (first part): a persistent QoS 1 session on node 1, offline; 100
    QoS 1 messages published on node 3 meanwhile; the client connects to node 2: CONNACK
    session present 1, and it gets all 100, in order; its subscription now lives on node
    2 (a message published after reaches it there); node 1 no longer has the session."""
    cl = Cluster(3, js=True)
    try:
        n1, n2, n3 = cl.nodes
        c, ca = connect(n1.port, "dev1", True)
        assert ca.rc == 0 and not ca.session_present
        assert c.subscribe(1, [("dev/#", 1)]).codes == [1]
        c.disconnect()
        c.close()
        pub = connected(n3.port, "pub")
        for i in range(100):
            pub.publish("dev/x", b"%d" % i, qos=1, pid=i + 1)
            assert pub.expect(PUBACK).pid == i + 1
        time.sleep(0.3)  # the last ones reached node 1
        c, ca = connect(n2.port, "dev1", False)
        assert ca.rc == 0 and ca.session_present, (ca.rc, ca.session_present)
        got = [p for (_t, p, _i) in drain(c, 1.0)]
        assert got == [b"%d" % i for i in range(100)], (len(got), got[:3], got[-3:])
        pub.publish("dev/after", b"after", qos=1, pid=500)
        pub.expect(PUBACK)
        assert [p for (_t, p, _i) in drain(c, 1.0)] == [b"after"]
        s1, s2 = stats(n1), stats(n2)
        assert s2["cluster_takeovers_in"] == 1 and s1["cluster_takeovers_out"] == 1, (s1, s2)
        assert s1["clients_total"] == 0, s1  # node 1 let it go
    finally:
        cl.stop()


def test_live_takeover_and_back(_b):
    """issue 16 test 5 (live takeover): a client connected to node 1 connects again to
    node 2: the old connection gets DISCONNECT 0x8E, the new one session present 1 with
    the subscription working; then back to node 1 the same way; a clean start takes
    nothing (session present 0) and ends the session on the node that had it."""
    cl = Cluster(2, js=True)
    try:
        n1, n2 = cl.nodes
        old, ca = connect(n1.port, "car", True)
        assert old.subscribe(1, [("car/cmd", 1)]).codes == [1]
        new, ca = connect(n2.port, "car", False)
        assert ca.rc == 0 and ca.session_present
        p = old.recv(3.0)
        assert p is not None and p.type == DISCONNECT and p.rc == 0x8E, p
        pub = connected(n1.port, "pub")
        pub.publish("car/cmd", b"go", qos=1, pid=1)
        pub.expect(PUBACK)
        assert [x for (_t, x, _i) in drain(new, 1.0)] == [b"go"]
        back, ca = connect(n1.port, "car", False)
        assert ca.rc == 0 and ca.session_present
        p = new.recv(3.0)
        assert p is not None and p.type == DISCONNECT and p.rc == 0x8E, p
        pub.publish("car/cmd", b"again", qos=1, pid=2)
        pub.expect(PUBACK)
        assert [x for (_t, x, _i) in drain(back, 1.0)] == [b"again"]
        fresh, ca = connect(n2.port, "car", True)
        assert ca.rc == 0 and not ca.session_present
        assert lqtest.wait_for(lambda: stats(n1)["clients_total"] <= 1, 5)  # pub only
    finally:
        cl.stop()


def test_dead_owner_session_starts_clean_elsewhere(_b):
    """issue 16 test 5 (kill -9 of the owner): the node with the session is killed; the
    client connects to node 2 and gets a clean session (session present 0) at once, not
    after cluster_takeover_timeout (the dead node has no subscriber on its request
    subject: NATS says so), counted in cluster_takeovers_clean."""
    cl = Cluster(2, js=True, extra=["cluster_takeover_timeout 10"])
    try:
        n1, n2 = cl.nodes
        c, ca = connect(n1.port, "meter", True)
        assert c.subscribe(1, [("m/#", 1)]).codes == [1]
        os.kill(n1.proc.pid, signal.SIGKILL)
        n1.proc.wait(5)
        t0 = time.time()
        c2, ca = connect(n2.port, "meter", False)
        took = time.time() - t0
        assert ca.rc == 0 and not ca.session_present, (ca.rc, ca.session_present)
        assert took < 5, took
        assert stats(n2)["cluster_takeovers_clean"] == 1
    finally:
        cl.nodes = cl.nodes[1:]  # node 1 is gone (a kill's exit status is no report)
        cl.stop()


def test_no_jetstream_sessions_stay_local_and_partition_refuses(_b):
    """Without JetStream (nats-server without -js) sessions stay each node's own and a
    warning says so; with cluster_partition refuse and NATS down, a CONNECT is refused
    with 0x88 (server unavailable); with accept (the default) it is let in."""
    cl = Cluster(2)
    try:
        n1, n2 = cl.nodes
        c, ca = connect(n1.port, "x", True)
        c2, ca2 = connect(n2.port, "x", False)
        assert ca2.rc == 0 and not ca2.session_present
        assert c.ping() is None  # the first connection stays: two sessions
        assert lqtest.wait_for(lambda: "no JetStream on the NATS server" in n1.output(), 5)
    finally:
        cl.stop()
    cl = Cluster(2, js=True, extra=["cluster_partition refuse"])
    try:
        n1, n2 = cl.nodes
        cl.nats.terminate()
        cl.nats.wait(5)
        assert lqtest.wait_for(lambda: stats(n1)["cluster_connected"] == 0, 10)
        c, ca = connect(n1.port, "y", False)
        assert ca.rc == 0x88, ca.rc
        assert stats(n1)["cluster_partitions"] >= 1
    finally:
        cl.stop()


def test_no_message_lost_while_the_session_moves(_b):
    """issue 16 ("No message may be lost in the hand-over"): a publisher on node 3 sends
    400 QoS 1 messages, one a millisecond, while the persistent session's client, offline
    on node 1, connects to node 2 in the middle of them: every message reaches it (one may
    come twice: QoS 1), what came before the move first."""
    import threading
    cl = Cluster(3, js=True)
    try:
        n1, n2, n3 = cl.nodes
        c, ca = connect(n1.port, "mover", True)
        assert c.subscribe(1, [("flow/#", 1)]).codes == [1]
        c.disconnect()
        c.close()
        pub = connected(n3.port, "pub")
        n = 400
        half = threading.Event()

        def publish():
            for i in range(n):
                pub.publish("flow/x", b"%d" % i, qos=1, pid=i % 60000 + 1)
                if i == n // 4:
                    half.set()
                time.sleep(0.001)

        t = threading.Thread(target=publish)
        t.start()
        assert half.wait(10)
        c, ca = connect(n2.port, "mover", False)
        assert ca.rc == 0 and ca.session_present
        got = []
        end = time.time() + 15
        while time.time() < end and len(set(got)) < n:
            got += [int(p) for (_t, p, _i) in drain(c, 0.5)]
        t.join(10)
        missing = sorted(set(range(n)) - set(got))
        assert not missing, (len(missing), missing[:10])
        assert len(got) - len(set(got)) <= n // 10, len(got) - len(set(got))
    finally:
        cl.stop()


def test_session_flapping_between_nodes_leaves_neighbours_served(_b):
    """A hostile or broken client (two devices with one client id, say) moves its session
    back and forth between two nodes 60 times, as fast as it can, with 50 messages queued
    for it: every move takes the session over (session present 1, the queue along), and a
    neighbour on node 1 (mqttraw.Probe, its topic node-local) stays served meanwhile: the
    event loop never waits for the round trips, the sessions threads do."""
    from mqttraw import Probe
    cl = Cluster(2, js=True, extra=["cluster_topic_local probe/#"])
    try:
        n1, n2 = cl.nodes
        c, ca = connect(n1.port, "flapper", True)
        assert c.subscribe(1, [("flap/#", 1)]).codes == [1]
        c.close()
        pub = connected(n1.port, "pub")
        for i in range(50):
            pub.publish("flap/x", b"%d" % i, qos=1, pid=i + 1)
            pub.expect(PUBACK)
        with Probe(n1.port, interval=0.005) as probe:
            for i in range(60):
                c, ca = connect((n2 if i % 2 == 0 else n1).port, "flapper", False)
                assert ca.rc == 0 and ca.session_present, (i, ca.rc)
                c.close()  # no DISCONNECT, no PUBACK: the 50 stay queued
        probe.check(0.05)
        c, ca = connect(n2.port, "flapper", False)
        assert ca.session_present
        got = sorted(int(p) for (_t, p, _i) in drain(c, 1.0))
        assert got[:1] == [0] and set(range(50)) <= set(got), (len(got), got[:5])
        moved = stats(n1)["cluster_takeovers_in"] + stats(n2)["cluster_takeovers_in"]
        assert moved == 61, moved
    finally:
        cl.stop()

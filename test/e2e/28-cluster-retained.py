# SPDX-License-Identifier: MIT
"""Issue 16, retained messages across nodes: a JetStream stream keeps the last retained
message of each topic; every node loads it at start and applies its updates in stream
order (cluster_retained jetstream, the default). Each test starts, on loopback and free
ports, its own nats-server (Debian's, with JetStream in a temporary directory unless
the test says otherwise) and lunamq nodes, and stops them by PID at the end.

A retained message set on one node reaches the others' stores shortly after its
PUBACK (through the stream), so the tests that look for it on another node ask again
until it is there (bounded); a node that starts later has it before its first SUBACK."""

import importlib.util
import json
import os
import subprocess
import threading
import time

import lqtest
from mqttraw import MESSAGE_EXPIRY, PUBACK, PUBLISH, USER_PROPERTY, connected

_spec = importlib.util.spec_from_file_location(
    "cluster26", os.path.join(os.path.dirname(os.path.abspath(__file__)), "26-cluster.py"))
cluster26 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cluster26)
stats = cluster26.stats


def Cluster(n=3, extra=(), js=True):
    """26-cluster.py's, with JetStream unless told otherwise."""
    return cluster26.Cluster(n, extra, js)


_ids = [0]


def retained(node, topic, quiet=0.3):
    """[(payload, props)] of the retained messages a new subscriber to topic gets on node."""
    _ids[0] += 1
    c = connected(node.port, "look%d" % _ids[0])
    try:
        c.subscribe(1, [(topic, 1)])
        out = []
        while True:
            p = c.recv(quiet)
            if p is None:
                return out
            if p.type == PUBLISH:
                if p.retain:  # else a live copy of a message still crossing: not stored
                    out.append((p.payload, p.props))
                if p.qos:
                    c.ack(PUBACK, p.pid)
    finally:
        c.close()


def payloads(node, topic):
    return [x[0] for x in retained(node, topic)]


def wait_retained(node, topic, want, timeout=10):
    """Asks node until a new subscriber to topic gets the payloads want."""
    end = time.time() + timeout
    got = None
    while time.time() < end:
        got = payloads(node, topic)
        if got == want:
            return
        time.sleep(0.1)
    raise AssertionError("%s on %s: %r, not %r\n%s" % (topic, node.port, got, want,
                                                         node.output()[-1500:]))


def set_retained(node, topic, payload, cid="setter", properties=()):
    c = connected(node.port, cid)
    c.publish(topic, payload, qos=1, pid=1, retain=True, properties=properties)
    assert c.expect(PUBACK).pid == 1
    c.close()


def test_retained_set_on_one_node_seen_everywhere_and_cleared_from_another(_b):
    """issue 16 test 4: a retained message set on node 1 is seen by a new subscriber on
    node 2, by a fourth node started later (at its first SUBSCRIBE: it loads the stream
    before answering), with its properties and the expiry left, counted from when it
    was set; cleared from node 3, no node delivers it any more, the fourth one either."""
    cl = Cluster(3)
    try:
        n1, n2, n3 = cl.nodes
        props = [(USER_PROPERTY, ("k", "v")), (MESSAGE_EXPIRY, 600)]
        set_retained(n1, "r/a", b"v1", properties=props)
        set_retained(n1, "r/b", b"other")
        wait_retained(n2, "r/a", [b"v1"])
        set_retained(n1, "r/e", b"short", properties=[(MESSAGE_EXPIRY, 4)])
        wait_retained(n3, "r/a", [b"v1"])
        time.sleep(1.5)
        n4 = cl.add()
        got = retained(n4, "r/#")  # no retry: loaded before its SUBACK
        assert sorted(g[0] for g in got) == [b"other", b"short", b"v1"], \
            (got, n4.output()[-1500:])
        short = [g for g in got if g[0] == b"short"][0][1]
        assert 1 <= short.get(MESSAGE_EXPIRY, 0) <= 3, short  # counted from when it was set
        v1 = [g for g in got if g[0] == b"v1"][0][1]
        assert v1.get(USER_PROPERTY) == [("k", "v")], v1
        assert 550 <= v1.get(MESSAGE_EXPIRY, 0) <= 600, v1
        set_retained(n3, "r/a", b"")  # clears
        for n in (n1, n2, n3, n4):
            wait_retained(n, "r/a", [])
        assert payloads(n4, "r/b") == [b"other"]
        assert lqtest.wait_for(lambda: payloads(n4, "r/e") == [], 5)  # expired there too
        s4 = stats(n4)
        assert s4["cluster_retained_stream"] == 1 and s4["cluster_retained_in"] >= 3, s4
        assert sum(stats(n)["cluster_retained_failed"] for n in cl.nodes) == 0
        r = subprocess.run([lqtest.CTL, "-s", n2.admin, "--json", "cluster"],
                           capture_output=True, text=True, timeout=10)
        view = json.loads(r.stdout)
        assert view["retained_stream"] and view["retained_in"] >= 2, view
    finally:
        cl.stop()


def test_concurrent_sets_of_one_topic_converge(_b):
    """Nodes 1 and 2 set one topic at the same time, many times: in the end every node
    gives the same retained message (the stream's last), the one of the last set."""
    cl = Cluster(3)
    try:
        n1, n2, n3 = cl.nodes
        pubs = [connected(n.port, "w%d" % i) for i, n in enumerate((n1, n2))]

        def writer(i):
            c = pubs[i]
            for k in range(1, 101):
                c.publish("c/x", b"n%d-%d" % (i + 1, k), qos=1, pid=k, retain=True)
                assert c.expect(PUBACK).pid == k

        ts = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        assert not any(t.is_alive() for t in ts)
        end = time.time() + 10
        while time.time() < end:
            seen = [tuple(payloads(n, "c/x")) for n in cl.nodes]
            if len(set(seen)) == 1 and len(seen[0]) == 1:
                break
            time.sleep(0.2)
        assert len(set(seen)) == 1 and len(seen[0]) == 1, seen
        assert seen[0][0] in (b"n1-100", b"n2-100"), seen  # a last one of either writer
    finally:
        cl.stop()


def test_retained_flood_ends_with_the_last_one_everywhere(_b):
    """A publisher floods retained messages on a few topics faster than JetStream
    acknowledges them: what waits for the stream is the latest of each topic (none
    dropped, none failed), so every node ends with the last message of each topic
    (MQTT-3.3.1-5: the new one replaces the one before)."""
    from mqttraw import publish_bytes
    cl = Cluster(2)
    try:
        n1, n2 = cl.nodes
        pub = connected(n1.port, "flood")
        n, topics = 20000, ["f/%d" % k for k in range(5)]
        batch = b""
        for i in range(n):
            batch += publish_bytes(topics[i % 5], b"%d" % i, retain=True)
            if len(batch) > 65536 or i == n - 1:
                pub.send(batch)
                batch = b""
        pub.publish("f/end", b"end", qos=1, pid=1)  # all read by node 1 before its PUBACK
        assert pub.expect(PUBACK, 20).pid == 1
        want = sorted(b"%d" % (n - 5 + k) for k in range(5))
        for node in (n1, n2):
            end = time.time() + 20
            got = None
            while time.time() < end:
                got = sorted(payloads(node, "f/+"))
                if got == want:
                    break
                time.sleep(0.2)
            assert got == want, (got, want)
        assert stats(n1)["cluster_retained_failed"] == 0, stats(n1)
    finally:
        cl.stop()


def test_retained_set_while_nats_is_down_is_shared_once_it_is_back(_b):
    """Retained messages set while nats-server is down are kept on their node (the
    latest of each topic, out of libnats' reconnect buffer) and reach the stream and
    every node once NATS is back; the stream, read again after the reconnection, does
    not leave the older message on the node that set them. None is counted as failed."""
    cl = Cluster(2)
    try:
        n1, n2 = cl.nodes
        set_retained(n1, "d/a", b"before")
        wait_retained(n2, "d/a", [b"before"])
        cl.stop_nats()
        assert lqtest.wait_for(lambda: stats(n1)["cluster_connected"] == 0, 10)
        for i in range(3):
            set_retained(n1, "d/a", b"down%d" % i)
        set_retained(n1, "d/b", b"new")
        assert sorted(payloads(n1, "d/+")) == [b"down2", b"new"]
        cl.start_nats()
        for n in (n1, n2):
            assert lqtest.wait_for(lambda: stats(n)["cluster_connected"] == 1, 10)
        for n in (n2, n1):
            wait_retained(n, "d/a", [b"down2"], timeout=15)
            wait_retained(n, "d/b", [b"new"], timeout=15)
        assert stats(n1)["cluster_retained_failed"] == 0, stats(n1)
    finally:
        cl.stop()


def test_cluster_retained_local_keeps_it_on_its_node(_b):
    """cluster_retained local: no stream; a retained message stays on the node it was
    set on (the live message still crosses). A bad cluster_retained or cluster_replicas
    stops the start."""
    cl = Cluster(2, extra=["cluster_retained local"])
    try:
        n1, n2 = cl.nodes
        live = connected(n2.port, "live")
        live.subscribe(1, [("l/#", 1)])
        set_retained(n1, "l/x", b"here")
        p = live.recv(5)
        assert p is not None and p.type == PUBLISH and p.payload == b"here", p
        time.sleep(0.5)
        assert payloads(n2, "l/x") == []
        assert payloads(n1, "l/x") == [b"here"]
        s = stats(n2)
        assert s["cluster_retained_stream"] == 0 and s["cluster_retained_in"] == 0, s
    finally:
        cl.stop()
    for line, why in (("cluster_retained disk", "cluster_retained: 'disk' is not jetstream or local"),
                      ("cluster_replicas 0", "cluster_replicas: '0' out of range 1..5")):
        b = lqtest.Broker(["cluster_name t", line])
        assert not b.start_or_exit(timeout=10), "started with " + line
        assert why in b.output(), b.output()[-1000:]
        b.stop(timeout=5)


def test_nats_without_jetstream_warns_once_and_stays_local(_b):
    """A NATS server without JetStream: each node says so once in its log and keeps its
    retained messages to itself, as with cluster_retained local."""
    cl = Cluster(2, js=False)
    try:
        n1, n2 = cl.nodes
        for n in (n1, n2):
            assert lqtest.wait_for(lambda: "has no JetStream" in n.output(), 5), n.output()
        for i in range(3):
            set_retained(n1, "nj/x", b"v%d" % i)
        time.sleep(0.3)
        assert payloads(n2, "nj/x") == []
        assert payloads(n1, "nj/x") == [b"v2"]
        for n in (n1, n2):
            assert n.output().count("has no JetStream") == 1, n.output()[-2000:]
            s = stats(n)
            assert s["cluster_retained_stream"] == 0 and s["cluster_retained_failed"] == 0, s
    finally:
        cl.stop()


def test_retained_from_other_nodes_persist_and_stream_wins_at_restart(_b):
    """With persistence on, a retained message another node set is written here too: a
    restart of this node while NATS is down still has it (and answers at once). Started
    again with NATS up, what changed meanwhile in the stream (a clear) is applied."""
    cl = Cluster(2)
    try:
        n1 = cl.nodes[0]
        n2 = cl.add(["persistence true", "persistence_location {dir}/data"])
        set_retained(n1, "p/a", b"kept")
        set_retained(n1, "p/b", b"to clear")
        wait_retained(n2, "p/a", [b"kept"])
        wait_retained(n2, "p/b", [b"to clear"])
        n2.stop(timeout=5)
        cl.stop_nats()
        n2.start()
        t0 = time.time()
        assert payloads(n2, "p/a") == [b"kept"], n2.output()[-1500:]
        assert time.time() - t0 < 1.5  # NATS down: no waiting for the stream
        n2.stop(timeout=5)
        cl.start_nats()
        assert lqtest.wait_for(lambda: stats(n1)["cluster_connected"] == 1, 10)
        set_retained(n1, "p/b", b"")
        n2.start()
        assert lqtest.wait_for(lambda: stats(n2)["cluster_connected"] == 1, 10)
        wait_retained(n2, "p/b", [])
        assert payloads(n2, "p/a") == [b"kept"]
        # node 1's consumer outlived the NATS restart (started again by libnats)
        set_retained(n2, "p/c", b"from n2")
        wait_retained(n1, "p/c", [b"from n2"], timeout=20)
    finally:
        cl.stop()

# SPDX-License-Identifier: MIT
"""Issue 16: lunamq nodes that form one broker through NATS. Each test starts, on
loopback and free ports, its own nats-server (Debian's) and three lunamq nodes with the
same cluster_name, and stops them by PID at the end.

A SUBACK leaves once its subscription is nats-server's, so the tests publish right
after it. Only after NATS itself restarted (the nodes subscribe again on their own,
with no SUBACK to wait for) does a test wait for a probe to get through (wait_route)."""

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

import lqtest
from mqttraw import PUBACK, PUBLISH, SUBACK, SUBSCRIPTION_ID, connected

NATS = shutil.which("nats-server") or "/usr/sbin/nats-server"
SAN = bool(os.environ.get("LUNAMQ_SAN"))


class Cluster:
    """nats-server (with JetStream when js, its store in the test's directory) and n
    lunamq nodes (cluster_name t, node ids n1..nN); add() starts one more."""

    def __init__(self, n=3, extra=(), js=False):
        self.nats_port = lqtest.free_port()
        self.dir = tempfile.mkdtemp(prefix="lunamq-nats-")
        self.nats_args = [NATS, "-a", "127.0.0.1", "-p", str(self.nats_port), "-l",
                          os.path.join(self.dir, "nats.log")]
        if js:
            self.nats_args += ["-js", "-sd", os.path.join(self.dir, "js")]
        self.extra = list(extra)
        self.nodes = []
        self.nats = None
        try:
            self.start_nats()
            for _ in range(n):  # all started, then all waited for
                self.add(wait_connected=False)
            for b in self.nodes:
                self.wait_connected(b)
        except BaseException:
            self.stop()
            raise

    def start_nats(self):
        self.nats = subprocess.Popen(self.nats_args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        assert lqtest.wait_port(self.nats_port, proc=self.nats), "nats-server did not start"

    def stop_nats(self):
        if self.nats and self.nats.poll() is None:
            self.nats.terminate()
            try:
                self.nats.wait(5)
            except subprocess.TimeoutExpired:
                self.nats.kill()
                self.nats.wait()

    def wait_connected(self, b):
        assert lqtest.wait_for(lambda: stats(b)["cluster_connected"] == 1, 10), \
            "node not connected to NATS:\n" + b.output()[-2000:]

    def add(self, extra=(), wait_connected=True):
        b = lqtest.Broker(["cluster_name t", "cluster_node_id n%d" % (len(self.nodes) + 1),
                           "cluster_nats_url nats://127.0.0.1:%d" % self.nats_port]
                          + self.extra + list(extra))
        self.nodes.append(b)
        b.start()
        if wait_connected:
            self.wait_connected(b)
        return b

    def stop(self):
        bad = []
        for b in self.nodes:
            rc = b.stop(timeout=5)
            if rc not in (0, None):  # a sanitizer's report (a leak at exit) is an exit code
                bad.append("node exited %s:\n%s" % (rc, b.output()[-3000:]))
        self.stop_nats()
        shutil.rmtree(self.dir, True)
        assert not bad, "\n".join(bad)


def stats(b):
    r = subprocess.run([lqtest.CTL, "-s", b.admin, "--json", "stats"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def drain(c, timeout=0.5):
    """[(topic, payload, subscription ids)] of what arrives until timeout passes quiet."""
    out = []
    while True:
        p = c.recv(timeout)
        if p is None:
            return out
        if p.type == PUBLISH:
            out.append((p.topic, p.payload, sorted(p.props.get(SUBSCRIPTION_ID, []))))
            if p.qos == 1:
                c.ack(PUBACK, p.pid)


def wait_route(pub, sub, topic, timeout=10):
    """Probes on topic from pub until one reaches sub (the interest is in NATS); then
    nothing of them is left to receive."""
    end = time.time() + timeout
    while time.time() < end:
        pub.publish(topic, b"probe")
        p = sub.recv(0.2)
        if p is not None and p.type == PUBLISH and p.payload == b"probe":
            drain(sub, 0.3)
            return
    raise AssertionError("no route for %s after %d s" % (topic, timeout))


def test_messages_cross_nodes_once_per_subscription(_b):
    """issue 16 test 1: publish on node 1; subscribers on nodes 2 and 3 with '#', '+/x',
    an exact topic and 'a/#' (which matches 'a' too): each message is delivered once per
    subscription; two overlapping filters of one session on one node give one copy with
    both subscription identifiers (MQTT-3.3.4-3, MQTT-3.3.4-5)."""
    cl = Cluster()
    try:
        n1, n2, n3 = cl.nodes
        pub = connected(n1.port, "pub")
        s2 = connected(n2.port, "s2")
        s2.subscribe(1, [("#", 1)], properties=[(SUBSCRIPTION_ID, 1)])
        s2.subscribe(2, [("+/x", 1)], properties=[(SUBSCRIPTION_ID, 2)])
        s3 = connected(n3.port, "s3")
        s3.subscribe(1, [("a/#", 1)])
        s3b = connected(n3.port, "s3b")
        s3b.subscribe(1, [("k/x", 1)])
        for i, t in enumerate(["a", "a/x", "k/x", "b/c/d"]):
            pub.publish(t, b"m%d" % i, qos=1, pid=i + 1)
            assert pub.expect(PUBACK).pid == i + 1
        got2, got3, got3b = drain(s2), drain(s3), drain(s3b)
        assert sorted(got2) == sorted([("a", b"m0", [1]), ("a/x", b"m1", [1, 2]),
                                       ("k/x", b"m2", [1, 2]), ("b/c/d", b"m3", [1])]), got2
        assert sorted(got3) == [("a", b"m0", []), ("a/x", b"m1", [])], got3
        assert got3b == [("k/x", b"m2", [])], got3b
        assert drain(connected(n1.port, "late"), 0.2) == []
        s1 = stats(n1)
        assert s1["cluster_received"] == 0, s1  # no echo
        r = subprocess.run([lqtest.CTL, "-s", n2.admin, "--json", "cluster"],
                           capture_output=True, text=True, timeout=10)
        view = json.loads(r.stdout)
        assert view["node"] == "n2" and view["connected"] and view["subjects"] == 2, view
        assert [p["node"] for p in view["peers"]] == ["n1"], view
        assert view["peers"][0]["received"] == view["received"] > 0, view
        r = subprocess.run([lqtest.CTL, "-s", n1.admin, "cluster"], capture_output=True,
                           text=True, timeout=10)
        assert r.returncode == 0 and "n1" in r.stdout, r.stdout + r.stderr
    finally:
        cl.stop()


def test_topics_byte_exact_and_dollar_topics(_b):
    """issue 16 test 2: topics with dots, spaces, '*', '>', '%', empty levels and a
    leading '$' cross byte-exact; '#' on another node never matches a '$' topic
    (MQTT-4.7.2-1) while a filter that names it does."""
    cl = Cluster(2)
    try:
        n1, n2 = cl.nodes
        pub = connected(n1.port, "pub")
        wild = connected(n2.port, "wild")
        wild.subscribe(1, [("#", 0)])
        dollar = connected(n2.port, "dollar")
        dollar.subscribe(1, [("$app/#", 0)])
        topics = ["a.b/c d", "*/>", "100%/x", "a//b", "/", "/lead", "trail/", "ü/ñ/猫",
                  "x/$y", "$app/one.two"]
        for t in topics:
            pub.publish(t, t.encode())
        got = drain(wild, 1.0)
        want = [(t, t.encode(), []) for t in topics if not t.startswith("$")]
        assert sorted(got) == sorted(want), got
        assert drain(dollar, 0.5) == [("$app/one.two", b"$app/one.two", [])]
    finally:
        cl.stop()


def test_no_loops_counters_exact(_b):
    """issue 16 test 3: three nodes, 10 000 messages published on node 1 and subscribed
    on nodes 2 and 3: each of those received exactly 10 000 from the cluster, node 1
    none, and nodes 2 and 3 forwarded nothing (no message goes round)."""
    n = 2000 if SAN else 10000
    cl = Cluster()
    try:
        n1, n2, n3 = cl.nodes
        pub = connected(n1.port, "pub")
        subs = []
        for b in (n2, n3):
            s = connected(b.port, "s-%d" % b.port)
            s.subscribe(1, [("load/#", 1)])
            subs.append(s)
        base = [stats(b) for b in cl.nodes]
        counts = [0] * len(subs)

        def read(k):  # the subscribers read while the messages come (queues are bounded)
            s = subs[k]
            end = time.time() + 60
            while counts[k] < n and time.time() < end:
                p = s.recv(1)
                if p is not None and p.type == PUBLISH:
                    counts[k] += 1
                    s.ack(PUBACK, p.pid)

        readers = [threading.Thread(target=read, args=(k,)) for k in range(len(subs))]
        for t in readers:
            t.start()
        for i in range(n):
            pub.publish("load/x", b"%d" % i, qos=1, pid=i % 65535 + 1)
            assert pub.expect(PUBACK) is not None
        for t in readers:
            t.join(70)
        assert counts == [n] * len(subs), counts
        for s in subs:
            assert drain(s, 0.3) == []
        after = [stats(b) for b in cl.nodes]
        d = [{k: a[k] - b0[k] for k in ("cluster_received", "cluster_forwarded")}
             for a, b0 in zip(after, base)]
        assert d[0] == {"cluster_received": 0, "cluster_forwarded": n}, d
        assert d[1] == {"cluster_received": n, "cluster_forwarded": 0}, d
        assert d[2] == {"cluster_received": n, "cluster_forwarded": 0}, d
    finally:
        cl.stop()


def test_nats_down_at_start_connects_later_and_local_traffic_goes_on(_b):
    """A node whose NATS server is not up yet starts anyway and serves its own clients;
    it connects by itself when the server comes."""
    port = lqtest.free_port()
    b = lqtest.Broker(["cluster_name t", "cluster_node_id solo",
                       "cluster_nats_url nats://127.0.0.1:%d" % port])
    nats = None
    try:
        b.start()
        lqtest_roundtrip(b)
        assert stats(b)["cluster_connected"] == 0
        nats = subprocess.Popen([NATS, "-a", "127.0.0.1", "-p", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert lqtest.wait_for(lambda: stats(b)["cluster_connected"] == 1, 15)
        lqtest_roundtrip(b)
    finally:
        b.stop(timeout=5)
        if nats is not None:
            nats.terminate()
            nats.wait(5)


def lqtest_roundtrip(b):
    from mqttraw import roundtrip
    roundtrip(b.port, "rt%d" % int(time.time() * 1000))


def test_properties_expiry_and_retain_flag_cross(_b):
    """What a message carries crosses with it: its MQTT 5 properties (user properties in
    order, content type, correlation data, response topic, payload format), its
    expiry (the time left, MQTT-3.3.2-6) and its RETAIN flag for a subscriber with
    Retain As Published (MQTT-3.3.1-13), 0 for one without (MQTT-3.3.1-12); a node
    stores no retained message of another node (cluster_retained local)."""
    from mqttraw import (CONTENT_TYPE, CORRELATION_DATA, MESSAGE_EXPIRY, PAYLOAD_FORMAT,
                         RESPONSE_TOPIC, USER_PROPERTY)
    cl = Cluster(2)
    try:
        n1, n2 = cl.nodes
        pub = connected(n1.port, "pub")
        rap = connected(n2.port, "rap")
        rap.subscribe(1, [("p/#", 0x08 | 1)])  # retain as published
        plain = connected(n2.port, "plain")
        plain.subscribe(1, [("p/#", 1)])
        props = [(USER_PROPERTY, ("k1", "v1")), (USER_PROPERTY, ("k0", "v0")),
                 (CONTENT_TYPE, "text/x"), (CORRELATION_DATA, b"\x00\x01"),
                 (RESPONSE_TOPIC, "r/t"), (PAYLOAD_FORMAT, 1), (MESSAGE_EXPIRY, 300)]
        pub.publish("p/x", b"body", qos=1, pid=5, retain=True, properties=props)
        assert pub.expect(PUBACK).pid == 5
        for c, want_retain in ((rap, True), (plain, False)):
            p = c.recv(5)
            assert p is not None and p.type == PUBLISH, p
            assert p.payload == b"body" and p.retain == want_retain, (p.payload, p.retain)
            assert p.props.get(USER_PROPERTY) == [("k1", "v1"), ("k0", "v0")], p.props
            assert p.props.get(CONTENT_TYPE) == "text/x"
            assert p.props.get(CORRELATION_DATA) == b"\x00\x01"
            assert p.props.get(RESPONSE_TOPIC) == "r/t"
            assert p.props.get(PAYLOAD_FORMAT) == 1
            assert 290 <= p.props.get(MESSAGE_EXPIRY, 0) <= 300, p.props
            c.ack(PUBACK, p.pid)
        late = connected(n2.port, "late")
        late.subscribe(1, [("p/x", 1)])
        assert drain(late, 0.5) == []  # node 2 keeps no retained copy
        late1 = connected(n1.port, "late1")
        late1.subscribe(1, [("p/x", 1)])
        assert [x[1] for x in drain(late1, 0.5)] == [b"body"]  # node 1 does
    finally:
        cl.stop()


def nats_publish(port, subject, headers, payload):
    """A raw NATS client (the text protocol): CONNECT, one HPUB (or PUB without
    headers), PING; returns once the server answered PONG."""
    import socket
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.recv(4096)  # INFO
        s.sendall(b'CONNECT {"verbose":false,"headers":true}\r\n')
        if headers is None:
            s.sendall(b"PUB %s %d\r\n%s\r\n" % (subject, len(payload), payload))
        else:
            h = b"NATS/1.0\r\n" + b"".join(b"%s: %s\r\n" % kv for kv in headers) + b"\r\n"
            s.sendall(b"HPUB %s %d %d\r\n%s%s\r\n" % (subject, len(h), len(h) + len(payload),
                                                      h, payload))
        s.sendall(b"PING\r\n")
        buf = b""
        while b"PONG" not in buf:
            d = s.recv(4096)
            assert d, "nats-server closed: %r" % buf
            buf += d
    finally:
        s.close()


def test_foreign_messages_on_nats_are_counted_and_dropped(_b):
    """Anything else on the cluster's subjects (no header, a bad header, a subject no
    topic maps to, a wildcard or a NUL in the decoded topic) is dropped with a log line
    and counted in cluster_bad_in; the node goes on serving, and a well-formed message
    from a foreign publisher is routed."""
    cl = Cluster(1)
    try:
        (n1,) = cl.nodes
        sub = connected(n1.port, "sub")
        sub.subscribe(1, [("#", 0)])
        assert lqtest.wait_for(lambda: stats(n1)["cluster_subjects"] >= 1, 5)
        time.sleep(0.3)  # the subscription reached nats-server
        bad = [(b"lq.t.m.x", None, b"no header"),
               (b"lq.t.m.x", [(b"Lq-Msg", b"n9 run 1 7 - -")], b"qos 7"),
               (b"lq.t.m.x", [(b"Lq-Msg", b"n9 run x 1 - -")], b"bad seq"),
               (b"lq.t.m.x", [(b"Lq-Msg", b"n9 run 1 1 - - abc")], b"odd hex"),
               (b"lq.t.m.%41", [(b"Lq-Msg", b"n9 run 2 0 - -")], b"needless escape"),
               (b"lq.t.m.a%2B", [(b"Lq-Msg", b"n9 run 3 0 - -")], b"wildcard"),
               (b"lq.t.m.a%00", [(b"Lq-Msg", b"n9 run 4 0 - -")], b"NUL")]
        for subject, headers, payload in bad:
            nats_publish(cl.nats_port, subject, headers, payload)
        nats_publish(cl.nats_port, b"lq.t.m.ok.%2Etopic", [(b"Lq-Msg", b"n9 run 5 0 - -")],
                     b"fine")
        got = drain(sub, 1.0)
        assert got == [("ok/.topic", b"fine", [])], got
        st = stats(n1)
        assert st["cluster_bad_in"] == len(bad), st["cluster_bad_in"]
        assert n1.wait_log("from NATS"), n1.output()[-2000:]
        from mqttraw import roundtrip
        roundtrip(n1.port, "after-bad")
    finally:
        cl.stop()


def test_nats_restarted_local_goes_on_cross_node_resumes(_b):
    """issue 16 test 7 (first half): nats-server stopped mid-traffic: each node keeps
    serving its own clients meanwhile; started again on its port, the nodes reconnect by
    themselves (cluster_reconnects) and messages cross again, without a new SUBSCRIBE."""
    cl = Cluster(2)
    try:
        n1, n2 = cl.nodes
        pub = connected(n1.port, "pub")
        sub = connected(n2.port, "sub")
        sub.subscribe(1, [("r/#", 1)])
        cl.nats.terminate()
        cl.nats.wait(5)
        assert lqtest.wait_for(lambda: stats(n1)["cluster_connected"] == 0, 10)
        from mqttraw import roundtrip
        roundtrip(n1.port, "n1-alone")
        roundtrip(n2.port, "n2-alone")
        cl.nats = subprocess.Popen([NATS, "-a", "127.0.0.1", "-p", str(cl.nats_port)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for b in (n1, n2):
            assert lqtest.wait_for(lambda b=b: stats(b)["cluster_connected"] == 1, 15), \
                b.output()[-2000:]
            assert stats(b)["cluster_reconnects"] >= 1
        wait_route(pub, sub, "r/probe")
        pub.publish("r/after", b"again", qos=1, pid=9)
        assert pub.expect(PUBACK).pid == 9
        assert ("r/after", b"again", []) in drain(sub, 1.0)
    finally:
        cl.stop()


def test_cluster_topic_and_cluster_topic_local(_b):
    """cluster_topic lines say what goes to other nodes (default: every topic but $SYS),
    cluster_topic_local lines what never does, even if cluster_topic matches it; local
    subscribers get every message either way. A filter that is not one stops the start
    with a message that names the option."""
    cl = Cluster(2, extra=["cluster_topic shared/#", "cluster_topic_local shared/private/#"])
    try:
        n1, n2 = cl.nodes
        pub = connected(n1.port, "pub")
        here = connected(n1.port, "here")
        here.subscribe(1, [("#", 0)])
        there = connected(n2.port, "there")
        there.subscribe(1, [("#", 0)])
        for t in ("shared/a", "shared/private/x", "other/x"):
            pub.publish(t, t.encode())
        assert sorted(x[0] for x in drain(here)) == ["other/x", "shared/a", "shared/private/x"]
        assert [x[0] for x in drain(there)] == ["shared/a"]
    finally:
        cl.stop()
    b = lqtest.Broker(["cluster_name t", "cluster_topic a/#/b"])
    assert not b.start_or_exit(timeout=10), "started with a bad cluster_topic"
    assert "cluster_topic 'a/#/b': not a topic filter" in b.output(), b.output()[-1000:]
    b.stop(timeout=5)


def test_burst_from_nats_is_routed_in_slices(_b):
    """A burst from another node that takes the receiving loop far more than its 2 ms
    slice to route (50 000 messages to 20 subscribers): it is routed a slice at a time,
    with the loop's other events between two slices, so a neighbour on that node that
    times its own round trips meanwhile (mqttraw.Probe) stays fast; and what came in
    meanwhile is routed too (the inbox is taken again after the last slice, not only
    when the wake-up pipe fires), so a message after the burst still arrives. (19
    subscribers do not read: the broker queues for them all the same, and the test
    process stays idle enough to time the round trips.)"""
    from mqttraw import Probe, publish_bytes
    cl = Cluster(2, extra=["max_queued_messages 0"])
    try:
        n1, n2 = cl.nodes
        pub = connected(n1.port, "pub")
        subs = [connected(n2.port, "s%d" % i) for i in range(20)]
        for s in subs:
            s.subscribe(1, [("burst/#", 0)])
        n = 10000 if SAN else 50000
        tail = []

        def read():  # the one subscriber that reads: until the message after the burst
            end = time.time() + 90
            while not tail and time.time() < end:
                p = subs[0].recv(1)
                if p is not None and p.type == PUBLISH and p.payload == b"tail":
                    tail.append(time.time())

        reader = threading.Thread(target=read)
        reader.start()
        blob = b"".join(publish_bytes("burst/x", b"%d" % i) for i in range(n))
        with Probe(n2.port, interval=0.005) as probe:
            time.sleep(0.2)
            t0 = time.time()
            pub.sock.sendall(blob)
            end = time.time() + (90 if SAN else 30)
            while not tail and time.time() < end:
                pub.publish("burst/x", b"tail")
                time.sleep(0.3)
            took = time.time() - t0
        reader.join(5)
        received = stats(n2)["cluster_received"]
        print("  burst of %d: %.2f s to the message after it, %d routed on node 2; probe: %d "
              "round trips, worst %.1f ms" % (n, took, received, probe.count,
                                              probe.worst * 1000))
        assert tail, "no message after the burst arrived (%d routed)" % received
        assert received >= n // 2, received
        probe.check(0.05)
    finally:
        cl.stop()


def proc_state(pid):
    """The state letter of /proc/PID/stat (R, S, T stopped...)."""
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_suback_means_messages_from_other_nodes_arrive(_b):
    """A SUBACK leaves once the NATS subscription it needs is the server's (a flush
    round trip from the cluster thread): a message published on another node right
    after the SUBACK reaches the subscriber, 20 times over on fresh topics, also for a
    second session that asks for a subject another one asked for a moment before; while
    nats-server is stopped (SIGSTOP) no SUBACK comes, after SIGCONT it does and a
    message published then arrives; with NATS down the SUBACK does not wait
    (MQTT-3.8.4-1)."""
    cl = Cluster(2)
    try:
        n1, n2 = cl.nodes
        pub = connected(n1.port, "pub")
        sub = connected(n2.port, "sub")
        other = connected(n2.port, "other")
        for i in range(20):
            other.subscribe(1, [("fresh/%d" % i, 1)], expect=False)  # the subject's first ask
            assert sub.subscribe(1, [("fresh/%d" % i, 1)]).codes == [1]
            pub.publish("fresh/%d" % i, b"m%d" % i, qos=1, pid=i + 1)
            assert pub.expect(PUBACK).pid == i + 1
            p = sub.recv(2.0)
            assert p is not None and p.type == PUBLISH, "message %d lost (%r)" % (i, p)
            assert (p.topic, p.payload) == ("fresh/%d" % i, b"m%d" % i), (i, p.topic, p.payload)
            sub.ack(PUBACK, p.pid)
        drain(other, 0.2)
        import signal
        os.kill(cl.nats.pid, signal.SIGSTOP)  # NATS cannot answer: the SUBACK waits
        try:
            # stopped for sure (a signal is delivered when the process next runs)
            assert lqtest.wait_for(lambda: proc_state(cl.nats.pid) == "T", 2), \
                proc_state(cl.nats.pid)
            sub.subscribe(3, [("held/x", 1)], expect=False)
            p = sub.recv(0.6)
            assert p is None, "SUBACK while NATS could not have the subscription: %r" % (p,)
        finally:
            os.kill(cl.nats.pid, signal.SIGCONT)
        assert sub.expect(SUBACK, 3.0).pid == 3
        pub.publish("held/x", b"after", qos=1, pid=77)
        assert pub.expect(PUBACK).pid == 77
        p = sub.recv(3.0)
        assert p is not None and p.payload == b"after", p
        sub.ack(PUBACK, p.pid)
        cl.nats.terminate()
        cl.nats.wait(5)
        assert lqtest.wait_for(lambda: stats(n2)["cluster_connected"] == 0, 10)
        t0 = time.time()
        assert sub.subscribe(2, [("while/down", 1)]).codes == [1]
        assert time.time() - t0 < 1.0, "SUBACK waited %.1f s with NATS down" % (time.time() - t0)
    finally:
        cl.stop()


def test_pipelined_subscribes_while_nats_is_stuck(_b):
    """A client that pipelines 300 SUBSCRIBEs of new filters while nats-server does not
    answer (SIGSTOP): each SUBACK waits for its subscription, and the client's next
    packets are not read meanwhile, so the broker keeps one waiting SUBACK for it, not
    300; a neighbour on the node stays served (mqttraw.Probe); once NATS answers again,
    all 300 SUBACKs come, in order (MQTT-3.8.4-1, MQTT-3.8.4-2)."""
    import signal
    from mqttraw import Probe, packet, s as mqtt_str
    cl = Cluster(1)
    try:
        (n1,) = cl.nodes
        c = connected(n1.port, "piper")
        n = 300
        blob = b"".join(packet(0x82, bytes([pid >> 8, pid & 255, 0]) + mqtt_str("pipe/%d" % pid)
                               + b"\x01") for pid in range(1, n + 1))
        with Probe(n1.port, interval=0.005) as probe:
            base = stats(n1)["cluster_subjects"]  # the probe's own
            os.kill(cl.nats.pid, signal.SIGSTOP)
            try:
                c.sock.sendall(blob)
                time.sleep(1.0)
                assert c.recv(0.1) is None, "a SUBACK while NATS could not answer"
                # one SUBSCRIBE read, the rest wait in the socket
                assert stats(n1)["cluster_subjects"] == base + 1, stats(n1)["cluster_subjects"]
            finally:
                os.kill(cl.nats.pid, signal.SIGCONT)
            pids = []
            end = time.time() + 60
            while len(pids) < n and time.time() < end:
                p = c.recv(5)
                assert p is not None, "only %d SUBACKs" % len(pids)
                assert p.type == SUBACK and p.codes == [1], p
                pids.append(p.pid)
        assert pids == list(range(1, n + 1)), pids[:10]
        assert stats(n1)["cluster_subjects"] == n  # the probe has gone with its own
        probe.check(0.05)
    finally:
        cl.stop()


def test_flood_while_nats_is_stuck_stays_bounded(_b):
    """A publisher floods (20 MB of QoS 0 to a topic another node wants) while
    nats-server does not read (SIGSTOP): what waits for NATS stays within
    cluster_max_pending_bytes (1 MiB here), the rest is not forwarded and is counted
    (cluster_dropped_out), and a neighbour on that node stays served (mqttraw.Probe,
    its topic local: a QoS 1 one to other nodes would be held with the link);
    once NATS answers again, messages cross again."""
    import signal
    from mqttraw import Probe, publish_bytes
    cl = Cluster(2, extra=["cluster_max_pending_bytes 1048576", "cluster_topic_local probe/#"])
    try:
        n1, n2 = cl.nodes
        sub = connected(n2.port, "sub")
        sub.subscribe(1, [("flood/#", 0)])
        pub = connected(n1.port, "flooder")
        chunk = b"".join(publish_bytes("flood/x", b"x" * 1000) for _ in range(1000))
        with Probe(n1.port, interval=0.005) as probe:
            os.kill(cl.nats.pid, signal.SIGSTOP)
            try:
                for _ in range(20):
                    pub.sock.sendall(chunk)
                pub.ping(30)  # all of it handled
                st = stats(n1)
                assert st["cluster_pending_out_bytes"] <= 1048576, st["cluster_pending_out_bytes"]
                assert st["cluster_dropped_out"] > 0, st
            finally:
                os.kill(cl.nats.pid, signal.SIGCONT)
        probe.check(0.05)
        drain(sub, 1.0)
        pub.publish("flood/after", b"again", qos=1, pid=5)
        assert pub.expect(PUBACK).pid == 5
        got = drain(sub, 2.0)
        assert ("flood/after", b"again", []) in got, got[-3:]
    finally:
        cl.stop()


def test_qos1_publisher_held_not_dropped_while_nats_is_stuck(_b):
    """issue 16 (cluster_max_pending_bytes: "publishers are held: never acknowledge
    then drop"): while nats-server does not read (SIGSTOP), a QoS 1 publisher on a
    topic another node wants goes on until cluster_max_pending_bytes (1 MiB here) wait
    for NATS; then its PUBACKs are withheld (cluster_held counts), nothing it sent is
    dropped (cluster_dropped_out 0), what waits stays bounded by the bound plus its
    window, and a neighbour on the node whose topic stays on it (cluster_topic_local)
    is served meanwhile (mqttraw.Probe; QoS 1 publishers to other nodes share the held
    link, as publishers to one slow subscriber share its queue). NATS that reads
    nothing for 5 s is given up: the publisher goes on (what goes over is counted as
    not forwarded, NATS being down), and after SIGCONT messages cross again."""
    import signal
    from mqttraw import Probe
    cl = Cluster(2, extra=["cluster_max_pending_bytes 1048576", "cluster_topic_local probe/#"])
    try:
        n1, n2 = cl.nodes
        sub = connected(n2.port, "sub")
        sub.subscribe(1, [("hold/#", 1)])
        pub = connected(n1.port, "holder")
        body = b"h" * 16384
        window, sent, acked = 8, 0, set()
        with Probe(n1.port, interval=0.005) as probe:
            os.kill(cl.nats.pid, signal.SIGSTOP)
            try:
                held = False
                deadline = time.time() + 30
                while not held and time.time() < deadline and sent < 3000:
                    while sent - len(acked) < window:
                        sent += 1
                        pub.publish("hold/x", body, qos=1, pid=sent)
                    try:
                        p = pub.expect(PUBACK, timeout=1.0)
                        acked.add(p.pid)
                    except AssertionError:
                        held = True  # no PUBACK for a second with a full window
                st = stats(n1)
                assert held and st["cluster_held"] > 0, (sent, len(acked), st)
                assert st["cluster_dropped_out"] == 0, st
                assert st["cluster_pending_out_bytes"] <= 1048576 + window * 20000, st
                assert st["publishers_held"] > 0, st
                # the write deadline gives the stuck server up: PUBACKs come again
                pub.publish("hold/x", b"", qos=0)
                got = set()
                end = time.time() + 20
                while len(got) < sent - len(acked) and time.time() < end:
                    try:
                        got.add(pub.expect(PUBACK, timeout=1.0).pid)
                    except AssertionError:
                        pass
                assert got | acked == set(range(1, sent + 1)), (sent, len(acked), len(got))
                assert stats(n1)["cluster_connected"] == 0
            finally:
                os.kill(cl.nats.pid, signal.SIGCONT)
        probe.check(0.05)
        assert lqtest.wait_for(lambda: stats(n1)["cluster_connected"] == 1, 15)
        drain(sub, 1.0)
        wait_route(pub, sub, "hold/after")
    finally:
        cl.stop()


def test_shared_subscription_one_member_across_nodes(_b):
    """issue 16 test 6: $share/g/t with members on two nodes (two on node 1, one on
    node 2), messages published on node 1 (which has members) and node 3 (which has
    none): each message reaches exactly one member of the group, every member gets
    some (NATS queue groups across nodes, round robin within a node), and a plain
    subscriber on node 3 gets every message once. Another group on the same filter
    gets its own copy of each. While NATS is down, node 1's groups are served on node 1."""
    cl = Cluster(3)
    try:
        n1, n2, n3 = cl.nodes
        members = [connected(n1.port, "m1a"), connected(n1.port, "m1b"), connected(n2.port, "m2")]
        for m in members:
            assert m.subscribe(1, [("$share/g/job/+", 1)]).codes == [1]
        other = connected(n2.port, "h")
        assert other.subscribe(1, [("$share/h/job/+", 1)]).codes == [1]
        plain = connected(n3.port, "plain")
        assert plain.subscribe(1, [("job/#", 1)]).codes == [1]
        p1, p3 = connected(n1.port, "p1"), connected(n3.port, "p3")
        n = 60
        for i in range(n):
            (p1 if i % 2 else p3).publish("job/%d" % i, b"%d" % i, qos=1, pid=i + 1)
            (p1 if i % 2 else p3).expect(PUBACK)
        got = [drain(m, 1.0) for m in members]
        payloads = [p for g in got for (_t, p, _i) in g]
        assert sorted(payloads, key=int) == [b"%d" % i for i in range(n)], \
            (len(payloads), [len(g) for g in got])
        assert all(len(g) > 0 for g in got), [len(g) for g in got]
        assert sorted(p for (_t, p, _i) in drain(other, 1.0)) == sorted(b"%d" % i for i in range(n))
        assert sorted(p for (_t, p, _i) in drain(plain, 1.0)) == sorted(b"%d" % i for i in range(n))
        assert stats(n1)["cluster_received_shared"] > 0
        # NATS down: node 1's group members are served by node 1, once
        cl.nats.terminate()
        cl.nats.wait(5)
        assert lqtest.wait_for(lambda: stats(n1)["cluster_connected"] == 0, 10)
        for i in range(10):
            p1.publish("job/down", b"d%d" % i, qos=1, pid=100 + i)
            p1.expect(PUBACK)
        got = [drain(m, 0.5) for m in members[:2]]
        assert sorted(p for g in got for (_t, p, _i) in g) == sorted(b"d%d" % i for i in range(10)), got
    finally:
        cl.stop()


def test_cluster_options_change_on_restart_only(_b):
    """The cluster is opened with its options at start: a reload that changes them says
    `cluster` needs a restart, and the node goes on as it runs (lunamq-ctl cluster still
    names the running cluster; messages still cross)."""
    cl = Cluster(2)
    try:
        n1, n2 = cl.nodes
        with open(n1.conf_path) as f:
            text = f.read()
        with open(n1.conf_path, "w") as f:
            f.write(text.replace("cluster_name t\n", "cluster_name other\n")
                    + "cluster_topic only/#\n")
        r = subprocess.run([lqtest.CTL, "-s", n1.admin, "--json", "reload"], capture_output=True,
                           text=True, timeout=10)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["needs_restart"] == "cluster", r.stdout
        assert "reload: cluster changed: not applied until restart" in n1.output()
        info = subprocess.run([lqtest.CTL, "-s", n1.admin, "--json", "cluster"],
                              capture_output=True, text=True, timeout=10)
        assert json.loads(info.stdout)["cluster"] == "t", info.stdout
        there = connected(n2.port, "there")
        assert there.subscribe(1, [("any/x", 0)]).codes == [0]
        pub = connected(n1.port, "pub")
        pub.publish("any/x", b"still crosses")
        p = there.expect(PUBLISH)
        assert p.payload == b"still crosses"
    finally:
        cl.stop()

# SPDX-License-Identifier: MIT
"""Interoperability with real clients from Debian: mosquitto_pub/mosquitto_sub
(MQTT 5, 3.1.1, 3.1) and paho-mqtt with MQTT 5 (properties, topic aliases, shared
subscriptions, will delay, session resume, message expiry, retained handling)."""

import os
import queue
import signal
import subprocess
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

HOST = "127.0.0.1"


# ---- mosquitto_pub / mosquitto_sub ----

def sub_proc(b, version, topic, count, qos=0, extra=()):
    return subprocess.Popen(["mosquitto_sub", "-h", HOST, "-p", str(b.port), "-V", version,
                             "-t", topic, "-q", str(qos), "-C", str(count), "-W", "10", "-v",
                             *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_subscribed(b, client_id_hint=None, timeout=5):
    # the broker logs every subscription (-v logs everything)
    assert b.wait_log("subscribe", timeout), b.output()


def pub(b, version, topic, msg, qos=0, extra=()):
    subprocess.run(["mosquitto_pub", "-h", HOST, "-p", str(b.port), "-V", version, "-t", topic,
                    "-m", msg, "-q", str(qos), *extra], check=True, timeout=10)


def run_versions(b, sub_v, pub_v):
    s = sub_proc(b, sub_v, "tools/#", 3, qos=2)
    wait_subscribed(b)
    for q in (0, 1, 2):
        pub(b, pub_v, "tools/q%d" % q, "m%d" % q, qos=q)
    out, err = s.communicate(timeout=15)
    assert s.returncode == 0, err
    assert out.decode().splitlines() == ["tools/q0 m0", "tools/q1 m1", "tools/q2 m2"]


def test_mosquitto_clients_v5(b):
    run_versions(b, "mqttv5", "mqttv5")


def test_mosquitto_clients_v311(b):
    run_versions(b, "mqttv311", "mqttv311")


def test_mosquitto_clients_v31_and_mixed(b):
    run_versions(b, "mqttv31", "mqttv5")


def test_mosquitto_retained_and_properties(b):
    pub(b, "mqttv5", "tools/ret", "kept", qos=1,
        extra=["-r", "-D", "publish", "user-property", "k", "v",
               "-D", "publish", "content-type", "text/plain"])
    s = sub_proc(b, "mqttv5", "tools/ret", 1, qos=1, extra=["-F", "%t %p %r %P"])
    out, _ = s.communicate(timeout=15)
    line = out.decode().strip()
    assert line.startswith("tools/ret kept 1"), line
    assert "k:v" in line, line


def test_mosquitto_sub_will(b):
    # a client killed without DISCONNECT: its will is published
    watch = sub_proc(b, "mqttv5", "tools/will", 1)
    wait_subscribed(b)
    victim = subprocess.Popen(["mosquitto_sub", "-h", HOST, "-p", str(b.port), "-V", "mqttv5",
                               "-t", "never", "-i", "victim", "--will-topic", "tools/will",
                               "--will-payload", "victim died"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert b.wait_log('client "victim"')
    time.sleep(0.2)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    out, _ = watch.communicate(timeout=15)
    assert out.decode().strip() == "tools/will victim died"


# ---- paho-mqtt, MQTT 5 ----

class Paho:
    def __init__(self, b, client_id, clean_start=True, properties=None, will=None, protocol=mqtt.MQTTv5):
        self.msgs = queue.Queue()
        self.c = mqtt.Client(client_id=client_id, protocol=protocol)
        self.connack = queue.Queue()
        self.subacks = queue.Queue()
        self.disconnects = queue.Queue()
        self.c.on_message = lambda c, u, m: self.msgs.put(m)
        if protocol == mqtt.MQTTv5:
            self.c.on_connect = lambda c, u, f, rc, p=None: self.connack.put((f, rc, p))
            self.c.on_subscribe = lambda c, u, mid, rcs, p=None: self.subacks.put(rcs)
            self.c.on_disconnect = lambda c, u, rc, p=None: self.disconnects.put(rc)
        else:
            self.c.on_connect = lambda c, u, f, rc: self.connack.put((f, rc, None))
            self.c.on_subscribe = lambda c, u, mid, rcs: self.subacks.put(rcs)
        if will:
            self.c.will_set(**will)
        kw = {}
        if protocol == mqtt.MQTTv5:
            kw = {"clean_start": clean_start, "properties": properties}
        self.c.connect(HOST, b.port, keepalive=30, **kw)
        self.c.loop_start()
        self.flags, self.rc, self.props = self.connack.get(timeout=5)

    def subscribe(self, topic, qos=1, **opts):
        if opts:
            self.c.subscribe(topic, options=SubscribeOptions(qos=qos, **opts))
        else:
            self.c.subscribe(topic, qos)
        return self.subacks.get(timeout=5)

    def publish(self, topic, payload, qos=1, retain=False, properties=None):
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        info.wait_for_publish(5)
        assert info.is_published()

    def get(self, timeout=3):
        return self.msgs.get(timeout=timeout)

    def none(self, timeout=0.5):
        try:
            m = self.msgs.get(timeout=timeout)
        except queue.Empty:
            return
        raise AssertionError("unexpected message on %s" % m.topic)

    def stop(self, disconnect=True):
        if disconnect:
            self.c.disconnect()
        self.c.loop_stop()


def props(**kw):
    p = Properties(PacketTypes.PUBLISH)
    for k, v in kw.items():
        setattr(p, k, v)
    return p


def test_paho_properties_roundtrip(b):
    s = Paho(b, "psub")
    s.subscribe("paho/p", 1)
    p = Paho(b, "ppub")
    p.publish("paho/p", b"{}", properties=props(ContentType="application/json",
                                                ResponseTopic="paho/reply",
                                                CorrelationData=b"\x01\x02",
                                                PayloadFormatIndicator=1,
                                                UserProperty=[("x", "1"), ("y", "2"), ("x", "3")]))
    m = s.get()
    assert m.properties.ContentType == "application/json"
    assert m.properties.ResponseTopic == "paho/reply"
    assert m.properties.CorrelationData == b"\x01\x02"
    assert m.properties.UserProperty == [("x", "1"), ("y", "2"), ("x", "3")]
    s.stop()
    p.stop()


def test_no_matching_subscribers_is_success_for_real_clients(b):
    """issue 12.7: 0x10 (No matching subscribers) is a success code: mosquitto_pub and
    paho finish a QoS 1/2 publish to nobody without an error or a warning."""
    for q in (1, 2):
        r = subprocess.run(["mosquitto_pub", "-h", HOST, "-p", str(b.port), "-V", "mqttv5", "-t",
                            "nobody/%d" % q, "-m", "x", "-q", str(q), "-d"],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 0 and "failed" not in r.stderr + r.stdout, (r.stdout, r.stderr)
        if q == 1:
            assert "RC:16" in r.stdout, r.stdout  # it did get 0x10
    p = Paho(b, "to-nobody")
    for q in (1, 2):
        p.publish("nobody/paho", b"x", qos=q)  # asserts it completed
    p.stop()


def test_paho_connack_properties(b):
    c = Paho(b, "")
    assert c.rc == 0
    assert c.props.AssignedClientIdentifier.startswith("auto-")
    assert c.props.TopicAliasMaximum == 10
    assert c.props.ReceiveMaximum == 20
    c.stop()


def test_paho_topic_alias_both_ways(b):
    cp = Properties(PacketTypes.CONNECT)
    cp.TopicAliasMaximum = 5
    s = Paho(b, "alias-sub", properties=cp)
    s.subscribe("paho/alias/#", 1)
    p = Paho(b, "alias-pub")
    p.publish("paho/alias/1", b"a", properties=props(TopicAlias=1))
    p.publish("", b"b", properties=props(TopicAlias=1))
    p.publish("paho/alias/1", b"c")
    # paho 1.6 hands server-side aliases to the application unresolved: resolve here
    aliases, got = {}, []
    for m in (s.get(), s.get(), s.get()):
        alias = getattr(m.properties, "TopicAlias", None)
        if alias and m.topic:
            aliases[alias] = m.topic
        got.append((m.topic or aliases[alias], m.payload))
    assert got == [("paho/alias/1", b"a"), ("paho/alias/1", b"b"), ("paho/alias/1", b"c")]
    s.stop()
    p.stop()


def test_paho_shared_subscription(b):
    m1 = Paho(b, "w1")
    m2 = Paho(b, "w2")
    m1.subscribe("$share/grp/paho/jobs", 1)
    m2.subscribe("$share/grp/paho/jobs", 1)
    p = Paho(b, "boss")
    for i in range(10):
        p.publish("paho/jobs", str(i).encode())
    got = []
    for m in (m1, m2):
        while True:
            try:
                got.append((m is m1, m.get(0.5).payload))
            except queue.Empty:
                break
    assert sorted(x[1] for x in got) == sorted(str(i).encode() for i in range(10))
    assert {x[0] for x in got} == {True, False}
    for c in (m1, m2, p):
        c.stop()


def test_paho_will_delay(b):
    w = Paho(b, "watcher")
    w.subscribe("paho/will", 1)
    wp = Properties(PacketTypes.WILLMESSAGE)
    wp.WillDelayInterval = 1
    cp = Properties(PacketTypes.CONNECT)
    cp.SessionExpiryInterval = 30
    d = Paho(b, "doomed", properties=cp,
             will={"topic": "paho/will", "payload": b"late", "qos": 1, "properties": wp})
    d.c.loop_stop()
    d.c.socket().close()  # abnormal loss: no DISCONNECT
    w.none(0.6)
    assert w.get(3).payload == b"late"
    w.stop()


def test_paho_session_resume_with_queued(b):
    cp = Properties(PacketTypes.CONNECT)
    cp.SessionExpiryInterval = 60
    s = Paho(b, "resumer", clean_start=False, properties=cp)
    s.subscribe("paho/q", 2)
    s.stop()
    p = Paho(b, "qpub")
    p.publish("paho/q", b"one", qos=1)
    p.publish("paho/q", b"two", qos=2)
    p.publish("paho/q", b"short", qos=1, properties=props(MessageExpiryInterval=1))
    time.sleep(1.3)
    s = Paho(b, "resumer", clean_start=False, properties=cp)
    assert s.flags["session present"] == 1
    assert [s.get().payload, s.get().payload] == [b"one", b"two"]
    s.none(0.5)  # the expired one is not delivered
    s.stop()
    p.stop()


def test_paho_retain_handling(b):
    p = Paho(b, "rpub")
    p.publish("paho/r", b"kept", retain=True)
    s = Paho(b, "rsub")
    s.subscribe("paho/r", 1, retainHandling=2)
    s.none(0.4)
    s.subscribe("paho/r2/#", 1, retainHandling=0, retainAsPublished=True)
    p.publish("paho/r2/x", b"live", retain=True)
    m = s.get()
    assert m.retain and m.payload == b"live"
    s.stop()
    p.stop()


def test_paho_v311(b):
    s = Paho(b, "s311", protocol=mqtt.MQTTv311)
    assert s.subscribe("paho/311", 2) == (2,)
    p = Paho(b, "p311", protocol=mqtt.MQTTv311)
    p.publish("paho/311", b"old school", qos=2)
    assert s.get().payload == b"old school"
    s.stop()
    p.stop()


def test_paho_takeover_reason(b):
    # the reason code (0x8E) is checked with the raw client in 01-connect.py: paho 1.6
    # reports a server DISCONNECT as a lost connection
    first = Paho(b, "twin")
    second = Paho(b, "twin")
    first.disconnects.get(timeout=3)
    first.stop(disconnect=False)
    assert second.subscribe("paho/twin", 1) == [mqtt.ReasonCodes(PacketTypes.SUBACK, "Granted QoS 1")]
    second.stop()

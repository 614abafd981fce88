# SPDX-License-Identifier: MIT
"""Lua hooks: the examples of examples/hooks/, chaining, fan-out, refusals, the
sandbox and its limits (infinite loop, memory hog, errors, pcall), broker.publish,
hot reload while messages flow, and SIGHUP. Each test writes its hook files into the
broker's own scripts_dir and waits for the broker to load them (inotify)."""

import json
import os
import signal
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

from lqtest import install_hook as install, CTL, ROOT, conf, pki_dir, wait_for
from mqttraw import PUBACK, PUBLISH, SESSION_EXPIRY, USER_PROPERTY, WILL_DELAY, Client, connected

HOST = "127.0.0.1"
EXAMPLES = os.path.join(ROOT, "examples", "hooks")


def install_example(b, name, replace=()):
    with open(os.path.join(EXAMPLES, name)) as f:
        src = f.read()
    for old, new in replace:
        src = src.replace(old, new)
    install(b, name, src)


def sub(b, topic, qos=1, cid="s"):
    c = connected(b.port, cid)
    c.subscribe(1, [(topic, qos)])
    return c


def pub_ack(c, topic, payload, pid=1, qos=1, props=()):
    c.publish(topic, payload, qos=qos, pid=pid, properties=props)
    return c.expect(PUBACK).rc


def got(c, n, timeout=3.0):
    out = []
    for _ in range(n):
        p = c.expect(PUBLISH, timeout)
        if p.qos:
            c.ack(PUBACK, p.pid)
        out.append(p)
    return out


# ---- the examples ----

def test_example_temp_range(b):
    install_example(b, "temp-range.lua")
    s = sub(b, "sensors/#")
    p = connected(b.port, "p")
    assert pub_ack(p, "sensors/a/temp", json.dumps({"temp": 21.5}), 1) == 0
    assert pub_ack(p, "sensors/a/temp", json.dumps({"temp": 500}), 2) == 0  # dropped: success
    assert pub_ack(p, "sensors/a/temp", "not json", 3) == 0x99  # refused
    assert pub_ack(p, "sensors/a/hum", "50", 4) == 0  # no hook on this topic
    msgs = got(s, 2)
    assert [(m.topic, m.payload) for m in msgs] == [("sensors/a/temp", b'{"temp": 21.5}'),
                                                     ("sensors/a/hum", b"50")]
    s.expect_none(0.3)


def test_example_legacy_rewrite_with_mosquitto_clients(b):
    install_example(b, "legacy-rewrite.lua")
    s = subprocess.Popen(["mosquitto_sub", "-h", HOST, "-p", str(b.port), "-V", "5", "-t",
                          "devices/#", "-C", "1", "-W", "10", "-F", "%t %p %P"],
                         stdout=subprocess.PIPE)
    assert wait_for(lambda: "subscribe" in b.output(), 5)
    subprocess.run(["mosquitto_pub", "-h", HOST, "-p", str(b.port), "-V", "5", "-t",
                    "legacy/m17/data", "-m", "42", "-D", "publish", "user-property", "fw", "1.0"],
                   check=True, timeout=10)
    out, _ = s.communicate(timeout=15)
    assert out.decode().strip() == "devices/m17/telemetry 42 fw:1.0 source:legacy", out


@conf("listener {tls_port} 127.0.0.1", "cafile {pki}/ca.crt", "certfile {pki}/server.crt",
      "keyfile {pki}/server.key", "require_certificate true", "use_identity_as_username true")
def test_example_cert_topic_guard(b):
    install_example(b, "cert-topic-guard.lua")
    s = sub(b, "devices/#")
    d = pki_dir()
    tls = ["-h", HOST, "-p", str(b.tls_port), "--cafile", d + "/ca.crt", "--cert",
           d + "/dev1.crt", "--key", d + "/dev1.key", "-V", "5", "-q", "1"]
    ok = subprocess.run(["mosquitto_pub", *tls, "-t", "devices/dev1/t", "-m", "mine"],
                        capture_output=True, timeout=10)
    assert ok.returncode == 0, ok.stderr
    subprocess.run(["mosquitto_pub", *tls, "-t", "devices/dev2/t", "-m", "theirs"],
                   capture_output=True, timeout=10)
    # plain loopback clients have no certificate: not restricted
    p = connected(b.port, "local")
    assert pub_ack(p, "devices/any/t", "local") == 0
    msgs = got(s, 2)
    assert [m.payload for m in msgs] == [b"mine", b"local"]
    s.expect_none(0.3)
    assert "CN dev1 may not publish on devices/dev2/t" in b.output()


def test_example_transactions_aggregate(b):
    install_example(b, "transactions-aggregate.lua", [("interval = 5", "interval = 0.5")])
    p = connected(b.port, "till")
    amounts = {"north": [10, 20.5, 1], "south": [7]}
    pid = 1
    for region, values in amounts.items():
        for i, a in enumerate(values):
            assert pub_ack(p, "transactions/%s/m%d" % (region, i), json.dumps({"amount": a}),
                           pid) == 0x10  # nobody subscribes to them here (issue 12.7)
            pid += 1
    time.sleep(1.2)
    late = sub(b, "stats/transactions/+", cid="dashboard")  # retained totals
    totals = {}
    for m in got(late, 2):
        v = json.loads(m.payload)
        totals[m.topic.split("/")[-1]] = (v["count"], v["amount"])
        assert m.retain
    assert totals == {"north": (3, 31.5), "south": (1, 7)}, totals


def test_example_split_batch(b):
    install_example(b, "split-batch.lua")
    s = sub(b, "readings/+")
    p = connected(b.port, "gw")
    batch = {"readings": [{"sensor": "s1", "value": 1}, {"sensor": "s2", "value": 2},
                          {"sensor": "s3", "value": 3}]}
    assert pub_ack(p, "batch/gw1", json.dumps(batch)) == 0
    msgs = got(s, 3)
    assert [m.topic for m in msgs] == ["readings/s1", "readings/s2", "readings/s3"]
    assert json.loads(msgs[1].payload) == {"sensor": "s2", "value": 2}
    assert pub_ack(p, "batch/gw1", "garbage", 2) == 0x99


# ---- semantics ----

def test_two_hooks_chained_in_file_name_order(b):
    install(b, "20-b.lua", 'return {topics = {"c/#"}, on_publish = function(m) '
                           'm.payload = m.payload .. "b" return m end}')
    install(b, "10-a.lua", 'return {topics = {"c/#"}, on_publish = function(m) '
                           'm.payload = m.payload .. "a" m.topic = "c/moved" return m end}')
    s = sub(b, "c/#")
    p = connected(b.port, "p")
    pub_ack(p, "c/x", "x")
    m = got(s, 1)[0]
    assert (m.topic, m.payload) == ("c/moved", b"xab")


def test_rewrite_properties_and_qos(b):
    install(b, "10-props.lua", '''
return {topics = {"p/#"}, on_publish = function(m)
  local p = m.properties
  assert(p.content_type == "text/plain" and p.correlation_data == "\\0\\1")
  assert(p.user[1][1] == "a" and p.user[1][2] == "1" and p.user[2][1] == "b")
  p.content_type = "application/json"
  p.response_topic = "reply/here"
  p.user = {{"b", "2"}, {"a", "1"}, {"new", "x"}}
  m.qos = 0
  m.retain = true
  return m
end}''')
    s = sub(b, "p/#", qos=1)
    p = connected(b.port, "p")
    pub_ack(p, "p/1", "{}", props=[(0x03, "text/plain"), (0x09, b"\x00\x01"),
                                    (USER_PROPERTY, ("a", "1")), (USER_PROPERTY, ("b", "2"))])
    m = got(s, 1)[0]
    assert m.qos == 0
    assert m.props[0x03] == "application/json" and m.props[0x08] == "reply/here"
    assert m.props[0x09] == b"\x00\x01"
    assert m.props[USER_PROPERTY] == [("b", "2"), ("a", "1"), ("new", "x")]
    late = sub(b, "p/#", cid="late")
    r = got(late, 1)[0]
    assert r.retain and r.payload == b"{}"


def test_fan_out_defaults_from_original(b):
    install(b, "10-fan.lua", '''
return {topics = {"f/in"}, on_publish = function(m)
  return {{topic = "f/one", payload = "1"}, {topic = "f/two", payload = "2", qos = 0}}
end}''')
    s = sub(b, "f/#", qos=2)
    p = connected(b.port, "p")
    p.publish("f/in", b"x", qos=1, pid=1, properties=[(USER_PROPERTY, ("k", "v"))])
    assert p.expect(PUBACK).rc == 0
    msgs = got(s, 2)
    assert [(m.topic, m.payload, m.qos) for m in msgs] == [("f/one", b"1", 1), ("f/two", b"2", 0)]
    assert msgs[0].props[USER_PROPERTY] == [("k", "v")]


def test_message_fields_made_on_read(b):
    """The message table fills a field on its first read: a hook that only changes the
    payload keeps the original topic, QoS and properties; pairs() sees every field; the
    untouched message returned inside a list is the original."""
    install(b, "10-lazy.lua", '''
return {topics = {"lz/#"}, on_publish = function(m)
  if m.payload == "pairs" then
    local keys = {}
    for k in pairs(m) do keys[#keys + 1] = k end
    table.sort(keys)
    return {topic = "lz/out", payload = table.concat(keys, ",")}
  end
  if m.payload == "list" then return {m} end
  m.payload = "changed"
  return m
end}''')
    s = sub(b, "lz/#", qos=1)
    p = connected(b.port, "p")
    p.publish("lz/a", b"x", qos=1, pid=1, properties=[(USER_PROPERTY, ("k", "v"))])
    assert p.expect(PUBACK).rc == 0
    m = got(s, 1)[0]
    assert (m.topic, m.payload, m.qos) == ("lz/a", b"changed", 1)
    assert m.props[USER_PROPERTY] == [("k", "v")]
    assert pub_ack(p, "lz/b", "pairs", 2) == 0
    assert got(s, 1)[0].payload == b"client,payload,properties,qos,retain,topic"
    assert pub_ack(p, "lz/c", "list", 3) == 0
    m = got(s, 1)[0]
    assert (m.topic, m.payload) == ("lz/c", b"list")


def test_kept_message_has_the_fields_read_and_says_so_for_others(b):
    """A table kept after on_publish holds what the hook read; reading a field it never
    read is an error with a clear message (counted), not a silent nil."""
    install(b, "10-keep.lua", '''
local kept
return {topics = {"kp/#"}, on_publish = function(m)
  if m.payload == "report" then
    local ok, err = pcall(function() return kept.qos end)
    return {topic = "kp/out", payload = kept.payload .. "|" .. tostring(ok) .. "|" .. err}
  end
  local _ = m.payload
  kept = m
  return m
end}''')
    s = sub(b, "kp/out")
    p = connected(b.port, "p")
    assert pub_ack(p, "kp/1", "first", 1) == 0x10  # no subscriber on kp/1 (issue 12.7)
    assert pub_ack(p, "kp/1", "report", 2) == 0
    out = got(s, 1)[0].payload.decode()
    assert out.startswith("first|false|"), out
    assert "'qos' was not read during on_publish" in out, out


def test_will_messages_go_through_hooks(b):
    """A will is a message the client published: it goes through the hooks, with the
    client as it was at CONNECT (also after a will delay, when the connection is gone);
    a hook may rewrite or drop it."""
    install(b, "10-will.lua", '''
return {topics = {"lastwill/#"}, on_publish = function(m)
  if m.payload == "drop" then return nil end
  m.payload = m.payload .. "|" .. m.client.id .. "|" .. tostring(m.client.username) ..
    "|" .. tostring(m.client.address ~= nil) .. "|" .. m.client.protocol
  return m
end}''')
    s = sub(b, "lastwill/#")
    for cid, payload, delay in (("w-now", b"gone", 0), ("w-drop", b"drop", 0),
                                ("w-later", b"late", 1)):
        c = Client(b.port)
        props = [(SESSION_EXPIRY, 10)] if delay else []
        wp = [(WILL_DELAY, delay)] if delay else []
        assert c.connect(cid, username="u-" + cid, properties=props,
                         will={"topic": "lastwill/" + cid, "payload": payload, "qos": 1,
                               "props": wp}).rc == 0
        c.close()  # no DISCONNECT: the will is published
    msgs = got(s, 2, timeout=5)
    assert sorted((m.topic, m.payload) for m in msgs) == [
        ("lastwill/w-later", b"late|w-later|u-w-later|true|5.0"),
        ("lastwill/w-now", b"gone|w-now|u-w-now|true|5.0")]
    s.expect_none(0.3)  # the dropped one never came


def test_drop_and_refuse_codes(b):
    """A dropped message is answered 0x00, a refused one with the hook's code; one that
    went through the hooks to nobody (or was sent to nobody by a rewrite) 0x10 (issue 12.7:
    a drop is not "no matching subscribers")."""
    install(b, "10-gate.lua", '''
return {topics = {"g/#"}, on_publish = function(m)
  if m.payload == "drop" then return nil end
  if m.payload == "deny" then return false, 0x87 end
  if m.payload == "empty" then return {} end
  if m.payload == "away" then m.topic = "nobody/else" end
  return m
end}''')
    s = sub(b, "g/1")
    p = connected(b.port, "p")
    assert pub_ack(p, "g/1", "drop", 1) == 0
    assert pub_ack(p, "g/2", "drop", 5) == 0
    assert pub_ack(p, "g/1", "deny", 2) == 0x87
    assert pub_ack(p, "g/1", "empty", 3) == 0
    assert pub_ack(p, "g/2", "keep", 6) == 0x10
    assert pub_ack(p, "g/1", "away", 7) == 0x10
    assert pub_ack(p, "g/1", "keep", 4) == 0
    assert [m.payload for m in got(s, 1)] == [b"keep"]
    s.expect_none(0.3)
    # MQTT 3.1.1 publishers cannot be told: plain PUBACK
    p3 = connected(b.port, "p3", version=4)
    p3.publish("g/1", b"deny", qos=1, pid=9)
    assert p3.expect(PUBACK).pid == 9


def test_hooks_cannot_publish_sys(b):
    """issue 12.1: a hook may not write under $SYS either, by broker.publish or by
    rewriting a message's topic: an invalid message, counted as a hook error."""
    install(b, "10-sys.lua", '''
return {topics = {"h/#"}, on_publish = function(m)
  if m.payload == "publish" then broker.publish("$SYS/forged", "x", {retain = true}) end
  if m.payload == "rewrite" then m.topic = "$SYS/forged" end
  return m
end}''')
    s = connected(b.port, "s")
    assert s.subscribe(1, [("$SYS/forged", 1), ("h/#", 1)]).codes == [1, 1]
    p = connected(b.port, "p")
    assert pub_ack(p, "h/1", "publish", 1) == 0  # the error is the hook's; it passes
    assert pub_ack(p, "h/1", "rewrite", 2) == 0
    assert [(m.topic, m.payload) for m in got(s, 2)] == [("h/1", b"publish"), ("h/1", b"rewrite")]
    assert "broker.publish: 'topic' is under $SYS/, which only the broker publishes" in b.output()
    r = subprocess.run([CTL, "-s", b.admin, "--json", "hooks"], capture_output=True, text=True,
                       timeout=10)
    h = [x for x in json.loads(r.stdout) if x["name"] == "10-sys.lua"][0]
    assert (h["calls"], h["errors"], h["passed"]) == (2, 2, 0), h
    late = connected(b.port, "late")
    assert late.subscribe(1, [("$SYS/forged", 1), ("h/#", 1)]).codes == [1, 1]
    assert pub_ack(p, "h/1", "plain", 3) == 0
    assert got(late, 1)[0].topic == "h/1"  # nothing retained under $SYS/forged


@conf("hook_memory_limit 268435456")
def test_hook_made_message_keeps_65536_user_properties(b):
    """issue 12.5: [MQTT-3.3.2-17] a message a hook rewrites keeps every user property,
    also 65 536 of them (a 16-bit count wrapped to 0 and dropped them all)."""
    install(b, "10-tag.lua", '''
return {topics = {"u/#"}, on_publish = function(m)
  local u = m.properties.user
  u[#u + 1] = {"by", "hook"}
  return m
end}''')
    s = sub(b, "u/#")
    p = connected(b.port, "p")
    users = [("", "%x" % i) for i in range(65535)]
    assert pub_ack(p, "u/1", "x", props=[(USER_PROPERTY, u) for u in users]) == 0
    m = got(s, 1)[0]
    assert m.props.get(USER_PROPERTY) == users + [("by", "hook")]


def test_client_table(b):
    install(b, "10-who.lua", '''
return {topics = {"who"}, on_publish = function(m)
  m.payload = json.encode({id = m.client.id, user = m.client.username,
    addr = m.client.address, proto = m.client.protocol, cert = m.client.cert ~= nil})
  return m
end}''')
    s = sub(b, "who")
    p = connected(b.port, "me-1", username="alice")
    pub_ack(p, "who", "")
    v = json.loads(got(s, 1)[0].payload)
    assert v["id"] == "me-1" and v["user"] == "alice" and v["proto"] == "5.0"
    assert v["addr"].startswith("127.0.0.1:") and v["cert"] is False


def test_publish_from_hook_does_not_reenter(b):
    install(b, "10-echo.lua", '''
local n = 0
return {topics = {"echo/#"}, on_publish = function(m)
  n = n + 1
  broker.publish("echo/copy", m.payload .. "#" .. n, {qos = 1})
  return m
end}''')
    s = sub(b, "echo/#")
    p = connected(b.port, "p")
    pub_ack(p, "echo/x", "hi")
    msgs = got(s, 2)
    assert sorted(m.payload for m in msgs) == [b"hi", b"hi#1"]
    s.expect_none(0.4)  # echo/copy did not go through 10-echo.lua again


def test_hooks_publishing_down_a_long_chain_stop_at_depth_and_log_once_a_second(b):
    """Nine hooks, each publishing into the next one's topic on every message (a hook
    never re-enters itself, so a loop needs distinct hooks): nesting stops at 8, the
    last message is routed without hooks, and the warning about it is logged at most
    once a second, not once per message."""
    for i in range(1, 10):
        install(b, "%02d-next.lua" % i,
                'return {topics = {"d/%d"}, on_publish = function(m) '
                'broker.publish("d/%d", m.payload) return m end}' % (i, i + 1))
    s = sub(b, "d/#")
    p = connected(b.port, "p")
    for i in range(1, 51):
        assert pub_ack(p, "d/1", "m%d" % i, pid=i) == 0
    msgs = got(s, 50 * 9)  # d/1 .. d/9: d/9 went through no hook, so no d/10
    assert sorted({m.topic for m in msgs}) == ["d/%d" % i for i in range(1, 10)]
    s.expect_none(0.3)
    assert 1 <= b.output().count("broker.publish nested 8 deep") <= 2, b.output()


def test_paho_v5_through_hook(b):
    install(b, "10-tag.lua", 'return {topics = {"paho/#"}, on_publish = function(m) '
                             'm.properties.content_type = "tagged" return m end}')
    got_msgs = []
    done = threading.Event()

    def on_message(c, u, msg):
        got_msgs.append(msg)
        done.set()

    sc = mqtt.Client(client_id="paho-sub", protocol=mqtt.MQTTv5)
    sc.on_message = on_message
    sc.connect(HOST, b.port)
    sc.loop_start()
    sc.subscribe("paho/#", qos=1)
    time.sleep(0.3)
    pc = mqtt.Client(client_id="paho-pub", protocol=mqtt.MQTTv5)
    pc.connect(HOST, b.port)
    pc.loop_start()
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("k", "v")]
    pc.publish("paho/t", b"data", qos=1, properties=props).wait_for_publish(5)
    assert done.wait(5)
    m = got_msgs[0]
    assert m.payload == b"data" and m.properties.ContentType == "tagged"
    assert m.properties.UserProperty == [("k", "v")]
    for c in (sc, pc):
        c.loop_stop()
        c.disconnect()


# ---- safety ----

def test_sandbox_has_no_dangerous_globals(b):
    install(b, "10-probe.lua", '''
local function chunk() return 1 end
return {topics = {"probe"}, on_publish = function(m)
  local r = {}
  for _, k in ipairs({"io", "require", "debug", "dofile", "loadfile", "package",
                      "collectgarbage", "coroutine"}) do r[#r + 1] = k .. "=" .. type(_G[k]) end
  r[#r + 1] = "execute=" .. type(os.execute)
  r[#r + 1] = "getenv=" .. type(os.getenv)
  r[#r + 1] = "time=" .. type(os.time)
  local f, err = load(string.dump(chunk))
  r[#r + 1] = "binary=" .. tostring(f)
  r[#r + 1] = "text=" .. tostring(load("return 7")())
  m.payload = table.concat(r, " ")
  return m
end}''')
    s = sub(b, "probe")
    p = connected(b.port, "p")
    pub_ack(p, "probe", "")
    out = got(s, 1)[0].payload.decode()
    assert out == ("io=nil require=nil debug=nil dofile=nil loadfile=nil package=nil "
                   "collectgarbage=nil coroutine=nil execute=nil getenv=nil time=function "
                   "binary=nil text=7"), out


@conf("hook_instruction_limit 100000")
def test_infinite_loop_cut_and_pcall_cannot_catch_it(b):
    install(b, "10-loop.lua", '''
return {topics = {"loop/#"}, on_publish = function(m)
  if m.topic == "loop/caught" then
    local ok = pcall(function() while true do end end)
    m.payload = "escaped the budget"   -- must never run
    return m
  end
  while true do end
end}''')
    s = sub(b, "loop/#")
    p = connected(b.port, "p")
    t0 = time.time()
    assert pub_ack(p, "loop/a", "one", 1) == 0
    assert pub_ack(p, "loop/caught", "two", 2) == 0
    assert time.time() - t0 < 2
    msgs = got(s, 2)  # hook_on_error pass: the originals go on
    assert [m.payload for m in msgs] == [b"one", b"two"]
    log = b.output()
    assert "hook 10-loop.lua: on_publish: instruction budget: 10-loop.lua:" in log, log
    assert "instruction budget of 100000 exceeded" in log
    s2 = sub(b, "other", cid="s2")  # the broker keeps serving
    pub_ack(p, "other", "fine", 3)
    assert got(s2, 1)[0].payload == b"fine"


@conf("hook_memory_limit 1048576", "hook_on_error drop")
def test_memory_hog_cut_and_message_dropped(b):
    install(b, "10-hog.lua", '''
local keep = {}
return {topics = {"hog/#"}, on_publish = function(m)
  local ok = pcall(function()
    local t = {}
    for i = 1, 1e8 do t[i] = string.rep("x", 100) .. i end
  end)
  m.payload = "escaped the cap"
  return m
end}''')
    install(b, "20-after.lua", 'return {topics = {"ok"}, on_publish = function(m) return m end}')
    s = sub(b, "#")
    p = connected(b.port, "p")
    assert pub_ack(p, "hog/1", "x", 1) == 0
    assert pub_ack(p, "ok", "still here", 2) == 0
    assert [m.payload for m in got(s, 1)] == [b"still here"]  # hog/1 dropped (hook_on_error drop)
    s.expect_none(0.3)
    assert "hook 10-hog.lua: on_publish: memory limit" in b.output()
    # again: the state recovered and is cut again, the broker's memory is fine
    assert pub_ack(p, "hog/2", "x", 3) == 0
    s.expect_none(0.3)


def test_runtime_error_logged_with_line_and_message_passes(b):
    install(b, "30-err.lua", 'return {topics = {"e"}, on_publish = function(m)\n'
                             '  local t = nil\n  return t.field\nend}')
    s = sub(b, "e")
    p = connected(b.port, "p")
    pub_ack(p, "e", "through")
    assert got(s, 1)[0].payload == b"through"
    assert wait_for(lambda: "hook 30-err.lua: on_publish: error: 30-err.lua:3:" in b.output(), 3)


def test_invalid_output_counts_as_error(b):
    install(b, "10-bad.lua", 'return {topics = {"bad"}, on_publish = function(m) '
                             'm.topic = "has/+/wildcard" return m end}')
    s = sub(b, "bad")
    p = connected(b.port, "p")
    pub_ack(p, "bad", "orig")
    assert got(s, 1)[0].payload == b"orig"
    assert "'topic' is not a valid topic name" in b.output()


def test_bad_output_on_every_message_logs_once_a_second(b):
    """A hook that returns something other than a message on every message, or an
    invalid one, is counted each time but logged at most once a second, like a hook
    that raises errors: a busy topic must not flood the log."""
    install(b, "10-bool.lua", 'return {topics = {"flood/bool"}, on_publish = function(m) '
                              'return true end}')
    install(b, "10-wild.lua", 'return {topics = {"flood/wild"}, on_publish = function(m) '
                              'm.topic = "a/#" return m end}')
    s = sub(b, "flood/#")
    p = connected(b.port, "p")
    for i in range(1, 201):
        p.publish("flood/bool" if i % 2 else "flood/wild", "x", qos=1, pid=i)
        assert p.expect(PUBACK).pid == i
    assert len(got(s, 200)) == 200  # hook_on_error pass: all routed unchanged
    log = b.output()
    assert 1 <= log.count("hook 10-bool.lua: on_publish returned a boolean, not a message") <= 2
    assert 1 <= log.count("hook 10-wild.lua: on_publish returned an invalid message") <= 2
    time.sleep(1.1)
    p.publish("flood/bool", "x", qos=1, pid=1)
    p.expect(PUBACK)
    got(s, 1)
    assert wait_for(lambda: "similar lines left out since the last one: 99)" in b.output(), 3)


# ---- reloading ----

def test_bad_file_keeps_previous_version(b):
    install(b, "10-v.lua", 'return {topics = {"v"}, on_publish = function(m) '
                           'm.payload = "v1" return m end}')
    install(b, "10-v.lua", "return {topics = {\"v\"}, on_publish = function(m) syntax error",
            expect="not loaded (the previous version keeps running)")
    install(b, "20-w.lua", 'return {topics = "not a list"}', expect="not loaded")
    s = sub(b, "v")
    p = connected(b.port, "p")
    pub_ack(p, "v", "x")
    assert got(s, 1)[0].payload == b"v1"
    assert "'topics' must be a non-empty list of topic filters" in b.output()


def test_removed_file_unloads(b):
    install(b, "10-gone.lua", 'return {topics = {"r"}, on_publish = function(m) return nil end}')
    s = sub(b, "r")
    p = connected(b.port, "p")
    pub_ack(p, "r", "dropped", 1)
    s.expect_none(0.3)
    os.unlink(os.path.join(b.scripts, "10-gone.lua"))
    assert wait_for(lambda: "hook 10-gone.lua: file removed" in b.output(), 5)
    pub_ack(p, "r", "through", 2)
    assert got(s, 1)[0].payload == b"through"


def test_reload_while_messages_flow(b):
    src = 'return {topics = {"flow"}, on_publish = function(m) m.payload = m.payload .. "-%d" ' \
          'return m end}'
    install(b, "10-flow.lua", src % 0)
    s = sub(b, "flow", cid="flow-sub")
    total = 600
    acked = []

    def publish():
        p = connected(b.port, "flow-pub")
        for i in range(total):
            p.publish("flow", b"%d" % i, qos=1, pid=i % 60000 + 1)
            assert p.expect(PUBACK).rc == 0
            acked.append(i)
            time.sleep(0.001)  # spread over the reloads
        p.close()

    t = threading.Thread(target=publish)
    t.start()
    for version in range(1, 6):  # five reloads while the publisher runs
        time.sleep(0.15)
        with open(os.path.join(b.scripts, ".tmp"), "w") as f:
            f.write(src % version)
        os.rename(os.path.join(b.scripts, ".tmp"), os.path.join(b.scripts, "10-flow.lua"))
    seen = [m.payload.decode() for m in got(s, total, timeout=10)]
    t.join(10)
    assert len(acked) == total
    assert [int(x.split("-")[0]) for x in seen] == list(range(total))  # none lost, in order
    versions = [int(x.split("-")[1]) for x in seen]
    assert versions == sorted(versions) and len(set(versions)) >= 3, set(versions)
    assert b.output().count("hook 10-flow.lua: loaded") >= 3


def test_sighup_picks_up_new_scripts_dir(b):
    other = os.path.join(b.dir, "other-scripts")
    os.makedirs(other)
    with open(os.path.join(other, "10-x.lua"), "w") as f:
        f.write('return {topics = {"h"}, on_publish = function(m) m.payload = "from other" '
                'return m end}')
    with open(b.conf_path) as f:
        text = f.read()
    with open(b.conf_path, "w") as f:
        f.write(text.replace("scripts_dir %s" % b.scripts, "scripts_dir %s" % other))
    b.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "hook 10-x.lua: loaded" in b.output(), 5), b.output()
    s = sub(b, "h")
    p = connected(b.port, "p")
    pub_ack(p, "h", "x")
    assert got(s, 1)[0].payload == b"from other"


def test_on_load_unload_and_timer_publish(b):
    install(b, "10-life.lua", '''
local ticks = 0
return {topics = {"life/#"}, interval = 0.2,
  on_load = function() broker.publish("life/event", "loaded", {retain = true}) end,
  on_unload = function() broker.log("notice", "unloading after", ticks, "ticks") end,
  on_timer = function() ticks = ticks + 1 if ticks == 3 then broker.publish("life/tick", "3") end end,
  on_publish = function(m) return m end}''')
    s = sub(b, "life/#")
    msgs = got(s, 2)
    assert [(m.topic, m.payload) for m in msgs] == [("life/event", b"loaded"), ("life/tick", b"3")]
    os.unlink(os.path.join(b.scripts, "10-life.lua"))
    assert wait_for(lambda: "hook 10-life.lua: unloading after" in b.output(), 5)


def test_log_and_print_lines_are_exactly_their_arguments(b):
    """issue 12.8: broker.log() and print() write their arguments joined by spaces and
    nothing else (a stray "userdata: 0x..." was appended: the buffer's own stack slot)."""
    install(b, "talk.lua", 'return {topics = {"talk"}, on_publish = function(msg)\n'
                           '  broker.log("notice", "seen", msg.topic, 42)\n'
                           '  print("printed", true, nil)\n'
                           '  return msg\n'
                           'end}\n')
    c = connected(b.port, "talker")
    pub_ack(c, "talk", b"x")
    assert wait_for(lambda: "hook talk.lua: printed" in b.output(), 3)
    lines = [l.split(": ", 1)[1] for l in b.output().splitlines() if "hook talk.lua: " in l
             and "loaded" not in l]
    assert lines == ["hook talk.lua: seen talk 42", "hook talk.lua: printed true nil"], lines
